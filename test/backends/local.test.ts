import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createProvider } from '../../src/backends/registry.js';
import type { BackendContext } from '../../src/backends/backend.js';
import { lateWarning } from '../../src/backends/script.js';
import { LocalExecutor } from '../../src/backends/local.js';
import { killLiveGroups, trackGroup } from '../../src/backends/process-group.js';
import { isAlive, rememberProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

function ctx(dir: string): BackendContext {
  return { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'cache') };
}

t.test('machines are private directories holding the project path', async (t) => {
  const dir = t.testdir();
  const p = await createProvider('local', 'local', {}, ctx(dir));
  const [a, b] = await Promise.all([p.allocate({ name: 'ubuntu' }), p.allocate({ name: 'ubuntu' })]);
  t.not(a!.projectPath, b!.projectPath, 'two machines never share a directory');
  t.ok(a!.projectPath.endsWith('/home/test'));
  t.ok(a!.projectPath.startsWith(join(dir, 'cache', 'machines')));
  t.equal(a!.name, 'local:ubuntu');
  const r = await a!.exec('echo "$SPREAD_PATH"; pwd; touch here', { env: [['SPREAD_PATH', a!.projectPath]], trace: false });
  t.equal(r.exitCode, 0);
  t.equal(r.output, `${a!.projectPath}\n${a!.projectPath}\n`);
  t.ok(existsSync(join(a!.projectPath, 'here')));
  t.notOk(existsSync(join(b!.projectPath, 'here')));
  await a!.discard();
  t.notOk(existsSync(a!.address), 'discard removes the directory');
  await b!.discard();
});

t.test('environment order, quoting, helpers and exit codes', async (t) => {
  const p = await createProvider('local', 'local', {}, ctx(t.testdir()));
  const m = await p.allocate({ name: 's' });
  const env = [
    ['A', 'one'],
    ['B', '$A-two'],
    ['C', "'$A literal'"],
    ['E', ''],
  ] as const;
  let r = await m.exec('echo "$B|$C|$E|$DEBIAN_FRONTEND"', { env, trace: false });
  t.equal(r.output, 'one-two|$A literal||noninteractive\n');
  r = await m.exec('echo hello', {});
  t.match(r.output, /\+ echo hello\nhello/, 'traced with set -x');
  r = await m.exec('false; echo not reached', { trace: false });
  t.equal(r.exitCode, 1, 'set -e stops at the first failure');
  t.equal(r.output, '');
  r = await m.exec('ERROR something broke', { trace: false });
  t.equal(r.exitCode, 213);
  t.equal(r.output, '<ERROR something broke>\n');
  r = await m.exec('echo "a b c" | MATCH "b c"; echo ok', { trace: false });
  t.equal(r.output, 'ok\n');
  r = await m.exec('echo "abc" | MATCH xyz', { trace: false });
  t.equal(r.exitCode, 1);
  t.match(r.output, /grep error: pattern not found, got:\nabc/);
  r = await m.exec('echo "abc" | NOMATCH b', { trace: false });
  t.equal(r.exitCode, 1);
  r = await m.exec('read x || echo stdin is empty', { trace: false });
  t.equal(r.output, 'stdin is empty\n');
  r = await m.exec('pwd', { trace: false, cwd: 'suite/task' });
  t.equal(r.exitCode, 1, 'a missing cwd fails the script');
  await m.discard();
});

t.test("the runner's write token ($FLEETCACHE_TOKEN) is not in the machines' environment", async (t) => {
  const before = process.env.FLEETCACHE_TOKEN;
  process.env.FLEETCACHE_TOKEN = 'the-runners-write-token-0123';
  t.teardown(() => {
    if (before === undefined) delete process.env.FLEETCACHE_TOKEN;
    else process.env.FLEETCACHE_TOKEN = before;
  });
  const m = await (await createProvider('local', 'local', {}, ctx(t.testdir()))).allocate({ name: 's' });
  t.teardown(() => m.discard());
  const r = await m.exec('echo "token=[${FLEETCACHE_TOKEN:-}] home=[${HOME:+set}]"', { trace: false });
  t.equal(r.output, 'token=[] home=[set]\n', 'gone, the rest of the environment kept');
});

t.test('stdout and stderr are combined in the order they were written', async (t) => {
  const m = await (await createProvider('local', 'local', {}, ctx(t.testdir()))).allocate({ name: 's' });
  const r = await m.exec('for i in $(seq 200); do echo out$i; echo err$i >&2; done', { trace: false });
  const expected = Array.from({ length: 200 }, (_, i) => `out${i + 1}\nerr${i + 1}\n`).join('');
  t.equal(r.output, expected);
  await m.discard();
});

t.test('UTF-8 output split between two pipe reads stays whole', async (t) => {
  const m = await (await createProvider('local', 'local', {}, ctx(t.testdir()))).allocate({ name: 's' });
  // 3-byte characters written by cat in large blocks: the pipe's reads end inside one
  const text = '日本語テキスト'.repeat(20_000);
  const r = await m.exec(`for i in $(seq 20000); do printf '%s' '日本語テキスト'; done > big.txt; cat big.txt`, { trace: false });
  t.notOk(r.output.includes('\uFFFD'), 'no replacement character');
  t.equal(r.output, text);
  await m.discard();
});

t.test('streaming output, warn timeout and kill timeout kill the group', async (t) => {
  const dir = t.testdir();
  const p = await createProvider('local', 'local', {}, ctx(dir));
  const m = await p.allocate({ name: 's' });
  const chunks: string[] = [];
  const warnings: string[] = [];
  const started = Date.now();
  // A duration of this test's own: the check below looks machine-wide.
  const nap = (30 + Math.random()).toFixed(6);
  const r = await m.exec(`echo first; (sleep ${nap}; touch child-survived) & sleep ${nap}`, {
    trace: false,
    onOutput: (c) => chunks.push(c),
    warnTimeout: 150,
    onWarn: (w) => warnings.push(lateWarning('the script', w.output)),
    killTimeout: 500,
  });
  t.ok(Date.now() - started < 5000, 'killed quickly');
  t.ok(r.killed);
  t.equal(r.exitCode, 137);
  t.same(chunks, ['first\n']);
  t.equal(warnings[0], 'WARNING: the script running late. Current output:\n-----\nfirst\n-----');
  t.equal(warnings[1], 'WARNING: the script running late. Output unchanged.', "spread's one line");
  const ps = await m.exec(`pgrep -f "sleep ${nap}" || true`, { trace: false });
  t.equal(ps.output, '', 'no process of the group survives');
  await m.discard();
});

// setsid leaves the script's process group: the kill does not reach the daemon, and it holds stdout.
for (const [when, script] of [
  ['while bash runs', 'setsid sleep 27 & echo "daemon $!"; sleep 30'],
  ['after bash has ended', 'setsid sleep 27 & echo "daemon $!"'],
] as const) {
  t.test(`the kill timeout holds when a process outside the group keeps the output open ${when}`, async (t) => {
    const dir = t.testdir();
    const p = await createProvider('local', 'local', {}, ctx(dir));
    const m = await p.allocate({ name: 's' });
    const started = Date.now();
    const r = await m.exec(script, { trace: false, killTimeout: 300 });
    const daemon = Number(/daemon (\d+)/.exec(r.output)?.[1]);
    t.teardown(() => {
      try {
        process.kill(daemon, 'SIGKILL');
      } catch {
        // already gone (discard ends the machine's processes)
      }
    });
    t.ok(Date.now() - started < 5000, `returned in ${Date.now() - started} ms, not when the daemon ends`);
    t.ok(r.killed);
    t.ok(daemon > 0, 'the daemon was started');
    await m.discard();
  });
}

t.test('upload', async (t) => {
  const dir = t.testdir();
  const p = await createProvider('local', 'local', {}, ctx(dir));
  const m = await p.allocate({ name: 's' });
  await m.upload(Readable.from([Buffer.from('payload')]), 'sub/dir/file.txt', 0o600);
  const r = await m.exec('cat sub/dir/file.txt; echo; stat -c %a sub/dir/file.txt', { trace: false });
  t.equal(r.output, 'payload\n600\n');
  const reused = await p.reuse(m.record(), m.system);
  t.equal(reused.projectPath, m.projectPath, 'reuse finds the same directory');
  await m.discard();
});

t.test('registry validates backend options', async (t) => {
  await t.rejects(createProvider('x', 'nope', {}, ctx(t.testdir())), /backend x: type: unknown backend type "nope"/);
  await t.rejects(createProvider('x', 'adhoc', {}, ctx(t.testdir())), /backend x: .*allocate/);
  await t.rejects(createProvider('x', 'ssh', { hosts: [{ address: 'h', bogus: 1 }] }, ctx(t.testdir())), /hosts\.0/);
  await t.rejects(createProvider('x', 'adhoc', { allocate: 'true', 'allocate-timeout': 'soon' }, ctx(t.testdir())), /backend x: allocate-timeout: invalid duration "soon"/, 'durations are read when the provider is made');
  await t.rejects(createProvider('x', 'adhoc', { allocate: 'true', 'retry-delay': '-1' }, ctx(t.testdir())), /backend x: retry-delay: must not be negative/);
  await t.resolves(createProvider('x', 'adhoc', { allocate: 'true', 'retry-delay': '100us', 'allocate-timeout': '1m30s', 'reboot-timeout': 90 }, ctx(t.testdir())));
});

t.test('killLiveGroups ends what a script left running in the background too (its bash gone, its output held open)', async (t) => {
  const dir = t.testdir();
  const pidFile = join(dir, 'bg.pid');
  const exec = new LocalExecutor(dir).exec(`sleep 40 &\necho $! > ${pidFile}\nexit 0`, { trace: false });
  await eventually('the background sleep started', async () => /^\d+\n$/.test(await readFile(pidFile, 'utf8').catch(() => '')));
  const pid = Number(await readFile(pidFile, 'utf8'));
  const sleeping = rememberProcess(pid);
  t.teardown(() => sleeping.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 300)); // bash has exited by now; the sleep holds its pipes
  killLiveGroups();
  await eventually('the background sleep is killed', () => !isAlive(pid), 3000);
  await exec; // and the script's call ends
});

t.test("killLiveGroups spares a group whose number is another's now: the script gone, its group empty, its PID reused (after a wrap of the PIDs)", async (t) => {
  // Tracked after its bash has exited: the daemon it left outside its group (setsid) holds its output.
  const script = spawn('bash', ['-c', 'setsid sleep 30 & echo "$!"'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  trackGroup(script);
  let out = '';
  script.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await once(script, 'exit');
  await eventually('the daemon started', () => /^\d+\n$/.test(out));
  const daemon = rememberProcess(Number(out));
  t.teardown(() => daemon.kill('SIGKILL')); // its output closes: no longer tracked
  // A wrap of the PIDs cannot be had on demand: the script's number is given to a process
  // leading a group of its own, as a reused one would be.
  const other = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
  const otherPid = other.pid!;
  t.teardown(() => rememberProcess(otherPid).kill('SIGKILL'));
  Object.defineProperty(script, 'pid', { value: otherPid });
  killLiveGroups();
  await new Promise((r) => setTimeout(r, 300));
  t.ok(isAlive(otherPid), 'the group now under that number is not killed');
});
