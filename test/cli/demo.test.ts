// The README's first command, as a newcomer runs it: `fleetcache demo` exits 0 within
// 60 s, runs the example twice with every job passing, shows the second run's savings,
// fetches an artifact back, and works again when re-run on the same data; it shares its data
// with a run (the machines of each are their own), not with another demo.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, existsSync, openSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { cliArgs, REPO_ROOT, stopWithTest } from '../helpers/processes.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { eventually } from '../helpers/wait.js';
import { LOCAL, spreadYaml, writeProject } from '../run/project.js';
import { lockDataDir } from '../../src/store/dir-lock.js';

/** Where the user is: no npm around the command (npm names its own start directory in INIT_CWD). */
const { INIT_CWD: _npmStart, ...USER_ENV } = process.env;

/** `fleetcache demo --data DATA` where the user is (not spawnSync: a run beside it may be served from this process). */
async function demo(data: string): Promise<{ status: number | null; out: string; seconds: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, cliArgs(['demo', '--data', data]), { cwd: REPO_ROOT, env: USER_ENV, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
  const [status] = (await once(child, 'close')) as [number | null];
  return { status, out, seconds: (Date.now() - started) / 1000 };
}

// One data directory for every check of a real demo (each costs about ten seconds of CPU): the
// first demo on fresh data, as a newcomer runs it; the second, a re-run, beside a run on that data.
t.test('demo runs twice, passes, saves; re-runs on the same data beside a running run, leaving its machine alone, and the run passes', async (t) => {
  const dir = t.testdir();
  const data = join(dir, 'cache');
  const first = await demo(data);
  if (first.status !== 0) t.comment(first.out.slice(-3000));
  t.equal(first.status, 0, 'first demo exits 0');
  t.ok(first.seconds < 60, `finished in ${first.seconds.toFixed(1)} s`);
  t.equal(first.out.match(/^Successful tasks: 8$/gm)?.length, 2, 'both runs: 8 successful tasks');
  t.equal(first.out.match(/^Aborted tasks: 0$/gm)?.length, 2);
  const runs = first.out.split('== run 2');
  const egress = /origin egress: .* \(([\d.]+)% of naive\)/.exec(runs[1] ?? '');
  t.ok(egress && Number(egress[1]) < 3, `second run origin egress ${egress?.[1]}% of naive`);
  t.match(first.out, /fetched back through the region-b cache: "report of local:beta-1:tests\/artifacts"/);
  t.match(first.out, /^asset toolchain\.bin uploaded to the origin$/m);

  // A run on the same data, whose task waits until told (2 minutes at most), then finds its
  // directory on the machine as it was. Its servers are its own (--fleet): with the embedded
  // ones it would hold the demo's, and the demo beside it would start on fresh servers of its
  // own, not re-run warm (that fallback is run's, test/run/embedded-reach.test.ts).
  const origin = await startOrigin(t, { dataDir: join(dir, 'run-origin') });
  writeFileSync(join(dir, 'fleet.yaml'), `origin: ${origin.url}\n`);
  writeFileSync(join(dir, 'token'), `${TEST_TOKEN}\n`, { mode: 0o600 });
  const started = join(dir, 'started');
  // told through a FIFO its bash reads, blocked: a loop looking for a file every 0.1 s
  // started a sleep process each time, the length of the demo beside it
  const go = join(dir, 'go');
  const task = `summary: t\nexecute: |\n  mkfifo ${go}\n  touch ${started}\n  read -r -t 120 word <> ${go} || true\n  test "$word" = go\n  test -e task.yaml\n`;
  const projectDir = await writeProject(join(dir, 'project'), spreadYaml('beside', LOCAL), { 's/t': task });
  const runner = spawn(process.execPath, cliArgs(['run', '--data', data, '--fleet', join(dir, 'fleet.yaml'), '--token-file', join(dir, 'token')]), { cwd: projectDir, env: USER_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  stopWithTest(t, runner, 'SIGKILL');
  let runOut = '';
  runner.stdout.on('data', (c: Buffer) => { runOut += c.toString(); });
  runner.stderr.on('data', (c: Buffer) => { runOut += c.toString(); });
  const runEnded = once(runner, 'close') as Promise<[number | null]>;
  await eventually("the run's task started", () => existsSync(started), 60_000);
  const machines = readdirSync(join(data, 'machines'));
  t.equal(machines.length, 1, "the run's machine");

  const again = await demo(data);
  if (again.status !== 0) t.comment(again.out.slice(-3000));
  t.equal(again.status, 0, 're-run beside the run exits 0');
  t.ok(existsSync(join(data, 'machines', machines[0]!)), "the run's machine is still there");
  t.match(again.out, /^asset toolchain\.bin already on the origin$/m, 'the asset is made the same at every demo');
  t.equal(again.out.match(/^Successful tasks: 8$/gm)?.length, 2);
  // the command its last line gives, typed where the demo was run, shows the last run (the run
  // beside it has not ended: no report of its own yet)
  const told = /`([^`]+)` shows the last run again/.exec(again.out)?.[1];
  t.ok(told, 'the last line names a command');
  const shown = spawnSync('/bin/sh', ['-c', told ?? 'false'], { cwd: REPO_ROOT, env: USER_ENV, encoding: 'utf8', timeout: 60_000 });
  t.equal(shown.status, 0, `\`${told}\` exits 0 where the demo ran: ${shown.stderr}`);
  const lastRun = /Transfer report of run (\S+)/g;
  t.equal(/Transfer report of run (\S+)/.exec(shown.stdout)?.[1], [...again.out.matchAll(lastRun)].at(-1)?.[1], "and shows the demo's last run");

  // not blocking (a FIFO's open for writing waits for a reader): ENXIO if the task's read is not there
  const release = openSync(go, constants.O_WRONLY | constants.O_NONBLOCK);
  writeSync(release, 'go\n');
  closeSync(release);
  const [status] = await runEnded;
  if (status !== 0) t.comment(runOut.slice(-3000));
  t.equal(status, 0, 'the run passes');
});

t.test('a demo on data another demo runs on is refused at once (exit 3, naming it), its project left alone', async (t) => {
  const data = join(t.testdir({ cache: { demo: { project: { 'app.sh': 'the running demo\'s\n' } } } }), 'cache');
  // held as a running demo holds it: the lock of its demo/ directory
  const lock = await lockDataDir(join(data, 'demo'));
  t.teardown(() => lock.release());
  // not spawnSync (demo() is not): this process answers the second demo's question for the lock's holder
  const second = await demo(data);
  t.equal(second.status, 3, 'exit 3 (FC_ERR_DIR_IN_USE)');
  t.match(second.out, `fleetcache: error: ${data} is in use by another demo (pid ${process.pid}): wait for it to end, or give it another --data`);
  t.notMatch(second.out, /== run 1/, 'nothing run');
  t.same(readdirSync(join(data, 'demo', 'project')), ['app.sh'], "the running demo's project is not copied over");
  t.same(readdirSync(data).sort(), ['demo'], 'no servers started, no machines cleared');
});
