// `fleetcache run` over SSH: the ssh and adhoc backends reach a real sshd (Debian's openssh-server)
// on a loopback port; the agent goes over SFTP, pulls the project through the embedded
// cache and the tasks run through ssh2.
import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import type { MachineRecord } from '../../src/backends/backend.js';
import { RunLog } from '../../src/run/report.js';
import { REUSE_FILE } from '../../src/run/reuse.js';
import { discardKeptMachines } from '../../src/run/discard.js';
import { freePort } from '../../src/http/free-port.js';
import { runProject, type RunResult } from '../../src/run/runner.js';
import { cliArgs, descendantsOf, isAlive, REPO_ROOT, stopWithTest } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { commandSessions, keygenFingerprint, publicKeyOf, startSshd, writeRebootScript, type Sshd } from '../ssh/sshd.js';
import { leavingScript, leftPids } from '../ssh/leaving-script.js';
import { run } from './project.js';
import { halfOpenRelay, type HalfOpenRelay } from '../helpers/half-open-relay.js';

/** A real sshd and a copy of the example project; the project path on the "machine" is removed in teardown. */
async function sshProject(t: Test): Promise<{ base: string; sshd: Sshd; dir: string; remote: string }> {
  const base = t.testdir();
  const sshd = await startSshd(t, join(base, 'sshd'));
  const dir = join(base, 'project');
  await cp(join(REPO_ROOT, 'examples/fleet-demo'), dir, { recursive: true });
  const remote = join(base, 'remote-project');
  t.teardown(() => rm(remote, { recursive: true, force: true }));
  return { base, sshd, dir, remote };
}

t.test('the example project over the ssh backend', async (t) => {
  // One host: the project path lives on it, so one worker per system, one system.
  const { base, sshd, dir, remote } = await sshProject(t);
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: fleet-demo\npath: ${remote}\nenvironment:\n  GREETING: hello\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems:\n      - debian-12:\n          region: region-a\nsuites:\n  tests/:\n    summary: over ssh\n`,
  );
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'every job succeeded over ssh');
  t.equal(result.tally.successful, 4);
  t.equal(result.pulls.length, 1);
  t.match(result.pulls[0]!.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.match(out, /Executing lab:debian-12:tests\/hello \(lab:debian-12\)/);
});

t.test('the example project over the adhoc backend (allocate prints ADDRESS, discard runs at the end)', async (t) => {
  const { base, sshd, dir, remote } = await sshProject(t);
  const discarded = join(base, 'discarded');
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: fleet-demo',
      `path: ${remote}`,
      'environment:',
      '  GREETING: hello',
      'backends:',
      '  cloud:',
      '    type: adhoc',
      // spread's idiom: the key's text from a host command, evaluated before the machine is reached
      `    key: "$(HOST: cat ${sshd.keyPath})"`,
      '    allocate: |',
      `      ADDRESS 127.0.0.1:${sshd.port}`,
      '    discard: |',
      `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`,
      '    systems:',
      '      - debian-12',
      'suites:',
      '  tests/:',
      '    summary: over adhoc',
      '',
    ].join('\n'),
  );
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'every job succeeded on the adhoc machine');
  t.equal(result.tally.successful, 4);
  t.equal((await readFile(discarded, 'utf8')).trim(), `127.0.0.1:${sshd.port}`, 'the discard script ran with the address');
});

/** `fleetcache run --data <base>/cache <args>` in `dir` as a child process, stopped by its PID when the test ends. */
function startRun(t: Test, base: string, dir: string, args: string[]): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, cliArgs(['run', '--data', join(base, 'cache'), ...args]), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  stopWithTest(t, child, 'SIGKILL');
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, exited };
}

/**
 * How long the discard script of the next test sleeps: far longer than the test waits for it
 * to be killed, so that a script left running is seen alive, not taken for one that ended.
 */
const DISCARD_SECONDS = 60;

t.test('a second signal during a discard kills the discard script: the machine stays on record, discarded once by run --discard', async (t) => {
  const { base, sshd, dir, remote } = await sshProject(t);
  const started = join(base, 'discard.pid');
  const ended = join(base, 'discard.ended');
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: fleet-demo', `path: ${remote}`, 'backends:', '  cloud:', '    type: adhoc', `    key: "$(HOST: cat ${sshd.keyPath})"`,
      '    allocate: |', `      ADDRESS 127.0.0.1:${sshd.port}`,
      // the first discard (the run's) is cut by the second signal; the second (run --discard) ends
      '    discard: |', `      if [ -e ${started} ]; then echo second >> ${ended}; exit 0; fi`, `      echo $$ > ${started}`, `      sleep ${DISCARD_SECONDS}`, `      echo first >> ${ended}`,
      '    systems:', '      - debian-12', 'suites:', '  tests/:', '    summary: over adhoc', '',
    ].join('\n'),
  );
  await mkdir(join(dir, 'tests', 'slow'), { recursive: true });
  await writeFile(join(dir, 'tests', 'slow', 'task.yaml'), 'summary: slow\nexecute: sleep 300\n');
  const { child, out, exited } = startRun(t, base, dir, ['tests/slow']);
  await eventually('the slow task runs', () => /Executing cloud:debian-12:tests\/slow/.test(out()), 60_000);
  child.kill('SIGINT');
  await eventually('the discard script started', async () => /^\d+\n$/.test(await readFile(started, 'utf8').catch(() => '')), 30_000);
  const pid = Number(await readFile(started, 'utf8'));
  // a script left running (a broken runner) is stopped with the test: it leads its group
  let seenDead = false;
  t.teardown(() => {
    for (const target of seenDead ? [] : [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
  child.kill('SIGINT');
  t.equal(await exited, 130);
  // dead well before its sleep could end: the shell that would write `first` is gone
  await eventually('the discard script is killed', () => !isAlive(pid), 3000);
  seenDead = true;
  t.equal(await readFile(ended, 'utf8').catch(() => ''), '', 'the cut discard never ended');
  t.equal((await readdir(join(base, 'cache', 'running'))).length, 1, 'the machine is on record');
  const discard = spawnSync(process.execPath, cliArgs(['run', '--discard', '--data', join(base, 'cache')]), { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  t.equal(discard.status, 0, discard.stdout + discard.stderr);
  t.equal(await readFile(ended, 'utf8'), 'second\n', 'run --discard ran the discard once');
});

t.test('REBOOT over the ssh backend: the machine goes away, comes back, the task runs again', async (t) => {
  // The sshd shares this host's kernel, so no real reboot: the reboot-command kills the
  // sshd and its connections and starts a new one after 0.5 s, and the boot identity is a
  // file it rewrites (see writeRebootScript and test/backends/reboot.test.ts).
  const { base, sshd, dir, remote } = await sshProject(t);
  const { rebootCommand, bootIdCommand } = writeRebootScript(sshd, base, 0.5);
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: fleet-demo',
      `path: ${remote}`,
      'backends:',
      '  lab:',
      '    type: ssh',
      `    reboot-command: ${JSON.stringify(rebootCommand)}`,
      `    boot-id-command: ${JSON.stringify(bootIdCommand)}`,
      '    hosts:',
      `      - address: 127.0.0.1:${sshd.port}`,
      `        key: ${sshd.keyPath}`,
      '    systems:',
      '      - debian-12',
      'suites:',
      '  tests/:',
      '    summary: over ssh',
      '',
    ].join('\n'),
  );
  await mkdir(join(dir, 'tests/reboot'));
  await writeFile(
    join(dir, 'tests/reboot/task.yaml'),
    [
      'summary: reboots once with a key',
      'execute: |',
      '  if [ "$SPREAD_REBOOT" = 0 ]; then',
      `    ${bootIdCommand} > boot-before`,
      '    REBOOT mykey',
      '  fi',
      '  test "$SPREAD_REBOOT" = mykey',
      `  test "$(${bootIdCommand})" != "$(cat boot-before)"`,
      '',
    ].join('\n'),
  );
  const sshdBefore = Number(await readFile(sshd.pidFile, 'utf8'));
  const { result, out } = await run(dir, ['tests/reboot'], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'the task passed after its reboot');
  t.equal(result.tally.successful, 1);
  t.match(out, /Rebooting on lab:debian-12 \(lab:debian-12:tests\/reboot\) as requested\.\.\.\n.*Connected after reboot to lab:debian-12 \(lab:debian-12:tests\/reboot\)\n/);
  t.not(Number(await readFile(sshd.pidFile, 'utf8')), sshdBefore, 'the machine came back with a new sshd');
});

t.test('SIGINT while a rebooted machine is waited for and its address takes connections but never answers SSH: the run stops at once', async (t) => {
  const { base, sshd, dir, remote } = await sshProject(t);
  // the "reboot" takes sshd away for good; the test then holds its port, silent, as a machine
  // whose network is up before its sshd (or whose packets are dropped)
  const { rebootCommand, bootIdCommand } = writeRebootScript(sshd, base, 'forever');
  await writeFile(
    join(dir, 'spread.yaml'),
    ['project: fleet-demo', `path: ${remote}`, 'backends:', '  lab:', '    type: ssh', `    reboot-command: ${JSON.stringify(rebootCommand)}`, `    boot-id-command: ${JSON.stringify(bootIdCommand)}`, '    hosts:', `      - address: 127.0.0.1:${sshd.port}`, `        key: ${sshd.keyPath}`, '    systems:', '      - debian-12', 'suites:', '  tests/:', '    summary: over ssh', ''].join('\n'),
  );
  await mkdir(join(dir, 'tests/reboot'));
  await writeFile(join(dir, 'tests/reboot/task.yaml'), 'summary: reboots\nkill-timeout: 5m\nexecute: |\n  if [ "$SPREAD_REBOOT" = 0 ]; then REBOOT; fi\n');
  const { child, out, exited } = startRun(t, base, dir, ['tests/reboot']);
  await eventually('the machine reboots', () => /Rebooting on lab:debian-12/.test(out()), 60_000);
  await eventually('its sshd is gone', () => !isAlive(sshd.pid), 30_000);
  const silent: Socket[] = [];
  const host = createServer((socket) => silent.push(socket));
  t.teardown(() => {
    for (const socket of silent) socket.destroy();
    host.close();
  });
  await eventually('the port is taken again', () => new Promise<boolean>((resolve) => {
    host.once('error', () => resolve(false));
    host.listen(sshd.port, '127.0.0.1', () => resolve(true));
  }), 10_000);
  await eventually('the run tries to reconnect', () => silent.length > 0, 30_000);
  const sent = Date.now();
  child.kill('SIGINT');
  const code = await Promise.race([exited, sleep(15_000).then(() => 'waiting' as const)]);
  t.ok(Date.now() - sent < 5000, `the run ended ${Date.now() - sent} ms after the signal, not when the connect attempt (10 s) timed out`);
  t.equal(code, 1, 'unsuccessful run');
  t.match(out(), /Aborted tasks: 1/);
});

/** A one-task project on the ssh backend (one host: the test sshd). */
async function oneHostProject(t: Test, task: string): Promise<{ base: string; sshd: Sshd; dir: string; remote: string }> {
  const setup = await sshProject(t);
  const { dir, sshd, remote } = setup;
  await rm(join(dir, 'tests'), { recursive: true, force: true });
  await mkdir(join(dir, 'tests', 'one'), { recursive: true });
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), task);
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: onehost\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12]\nsuites:\n  tests/:\n    summary: one\n`,
  );
  return setup;
}

/**
 * The project's files on the machine (the task lists them in a file of the test: the
 * "machine" is this host) and in the run's base tar (the base cache's copy of what the
 * origin holds): what was shipped.
 */
async function shipped(t: Test, dir: string, base: string, backend: string[], filters: string[] = []): Promise<{ machine: string[]; tar: string[] }> {
  const listing = join(base, 'listing');
  await mkdir(join(dir, 'tests', 'one'), { recursive: true });
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: cd "$SPREAD_PATH" && find . -type f > ${listing}\n`);
  await writeFile(join(dir, 'spread.yaml'), [`project: keyed`, `path: ${join(base, 'remote-project')}`, 'backends:', ...backend, 'suites:', '  tests/:', '    summary: one', ''].join('\n'));
  const { result, out } = await run(dir, filters, { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'the job ran with the key');
  const bases = join(base, 'cache', 'bases');
  const tarFile = (await readdir(bases)).find((f) => f.endsWith('.tar'))!;
  return {
    machine: (await readFile(listing, 'utf8')).split('\n'),
    tar: spawnSync('tar', ['-tf', join(bases, tarFile)], { encoding: 'utf8' }).stdout.split('\n'),
  };
}

t.test('an SSH key file kept in the project reaches no machine and no base (ssh and adhoc backends)', async (t) => {
  for (const type of ['ssh', 'adhoc'] as const) {
    await t.test(type, async (t) => {
      const { base, sshd, dir } = await sshProject(t);
      await rm(join(dir, 'tests'), { recursive: true, force: true });
      await mkdir(join(dir, 'keys'));
      await cp(sshd.keyPath, join(dir, 'keys', 'lab'));
      const backend = type === 'ssh'
        ? ['  lab:', '    type: ssh', '    hosts:', `      - address: 127.0.0.1:${sshd.port}`, '        key: keys/lab', '    systems: [debian-12]']
        : ['  lab:', '    type: adhoc', '    key: keys/lab', '    allocate: |', `      ADDRESS 127.0.0.1:${sshd.port}`, '    systems: [debian-12]'];
      const { machine, tar } = await shipped(t, dir, base, backend);
      t.ok(machine.includes('./spread.yaml'), 'the machine has the project');
      t.notOk(machine.includes('./keys/lab'), 'not the key that logs into every host of the backend');
      t.ok(tar.includes('spread.yaml'), 'the base holds the project');
      t.notOk(tar.includes('keys/lab'), 'the base (public at the origin) does not hold the key');
    });
  }
});

t.test("the key file of a backend the run's filters leave out reaches no machine and no base either", async (t) => {
  const { base, sshd, dir } = await sshProject(t);
  await rm(join(dir, 'tests'), { recursive: true, force: true });
  await mkdir(join(dir, 'keys'));
  await cp(sshd.keyPath, join(dir, 'keys', 'lab'));
  await cp(sshd.keyPath, join(dir, 'keys', 'spare'));
  const backends = [
    '  lab:', '    type: ssh', '    hosts:', `      - address: 127.0.0.1:${sshd.port}`, '        key: keys/lab', '    systems: [debian-12]',
    // never allocated in this run: its key is a credential all the same
    '  spare:', '    type: adhoc', '    key: keys/spare', '    allocate: ADDRESS 127.0.0.1:1', '    systems: [debian-12]',
  ];
  const { machine, tar } = await shipped(t, dir, base, backends, ['lab:']);
  t.ok(machine.includes('./spread.yaml'), 'the machine has the project');
  t.notOk(machine.includes('./keys/spare'), "not the key of the backend left out");
  t.notOk(tar.includes('keys/spare'), 'nor the base (public at the origin)');
  t.notOk(machine.includes('./keys/lab') || tar.includes('keys/lab'), "nor the run's own backend's");
});

/** Two tasks on one ssh host for a system of two workers: one worker waits for the host the other holds. */
async function twoWorkersOneHost(t: Test): Promise<{ base: string; dir: string }> {
  const { base, dir, sshd, remote } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), 'summary: two\nexecute: echo two\n');
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: onehost\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems:\n      - debian-12:\n          workers: 2\nsuites:\n  tests/:\n    summary: one\n`,
  );
  return { base, dir };
}

t.test('the CLI exits after keeping its ssh machine (--reuse), and a host serves run after run', async (t) => {
  const { base, dir } = await oneHostProject(t, 'summary: one\nexecute: echo hi\n');
  const cli = (args: string[]) => spawnSync(process.execPath, cliArgs(['run', '--data', join(base, 'cache'), ...args]), { cwd: dir, encoding: 'utf8', timeout: 90_000 });
  const kept = cli(['--reuse']);
  t.equal(kept.status, 0, `run --reuse exits by itself (an open SSH client kept it alive)${kept.error ? `: ${kept.error.message}` : ''}`);
  t.match(kept.stdout + kept.stderr, /Keeping lab:debian-12 at 127\.0\.0\.1:\d+\n/);
  t.equal(cli(['--discard']).status, 0, 'its machine discarded');
  // the host has the kept run's tree at the project path (discarding an ssh machine leaves it)
  const res = cli([]);
  t.equal(res.status, 0, 'the next run on the same host: the project path is emptied before the project is sent');
  if (res.status !== 0) t.comment((res.stdout + res.stderr).slice(-2000));
});

t.test('--reuse with more workers than hosts: a worker waiting for a kept host allocates nothing, and the run exits', async (t) => {
  const { base, dir } = await twoWorkersOneHost(t);
  const cli = (args: string[]) => spawnSync(process.execPath, cliArgs(['run', '--data', join(base, 'cache'), ...args]), { cwd: dir, encoding: 'utf8', timeout: 45_000 });
  const kept = cli(['--reuse']);
  const out = kept.stdout + kept.stderr;
  t.equal(kept.status, 0, `run --reuse exits by itself${kept.error ? `: ${kept.error.message}` : ''}`);
  if (kept.status !== 0) t.comment(out.slice(-2000));
  t.match(out, /Successful tasks: 2/);
  // which reason depends on when the waiting worker wakes: the jobs already all taken, or the host kept
  t.match(out, /Not allocating lab:debian-12 #\d: (every host of backend lab serving debian-12 is kept|the jobs of lab:debian-12 were all taken by the other machines)\./);
  t.equal(cli(['--discard']).status, 0, 'its machine discarded');
});

/**
 * One host serving two systems, whose debian-12 job fails: a run of debian-12 with `option`
 * keeps its machine there, then a run of ubuntu-24.04 with it allocates nothing, the kept
 * machine's tree is left as it was, and the host is on record once. Gives the runs.
 */
async function keptHostOfTwoSystems(t: Test, option: { reuse: true } | { abend: true }, keeping: RegExp): Promise<(system: string) => Promise<string>> {
  const { base, dir, sshd, remote } = await oneHostProject(t, 'summary: one\nexecute: test "$SPREAD_SYSTEM" != debian-12\n');
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: onehost\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12, ubuntu-24.04]\nsuites:\n  tests/:\n    summary: one\n`,
  );
  const runOf = async (system: string): Promise<string> => (await run(dir, [`lab:${system}`], { ...option, dataRoot: join(base, 'cache') })).out;
  t.match(await runOf('debian-12'), keeping);
  const keptTree = join(remote, 'kept-file');
  await writeFile(keptTree, 'of the kept machine');
  const other = await runOf('ubuntu-24.04');
  t.match(other, /Not allocating lab:ubuntu-24\.04: every host of backend lab serving ubuntu-24\.04 is kept\./);
  t.ok(existsSync(keptTree), "the kept machine's project tree is left as it was");
  const records = (JSON.parse(await readFile(join(dir, REUSE_FILE), 'utf8')) as { machines: MachineRecord[] }).machines;
  t.same(records.map((r) => r.system), ['debian-12'], 'the host is on record once, for the system that kept it');
  return runOf;
}

t.test('--reuse: a host whose machine another system kept serves no worker of this run, and stays on record once', async (t) => {
  const runOf = await keptHostOfTwoSystems(t, { reuse: true }, /Keeping lab:debian-12 at /);
  t.match(await runOf('debian-12'), /Reusing project data on lab:debian-12\.\.\./, 'and its system takes it back');
});

t.test('--abend without --reuse: a host whose machine an earlier --abend run kept for inspection serves no worker, and stays on record once', async (t) => {
  await keptHostOfTwoSystems(t, { abend: true }, /Keeping lab:debian-12 at .* \(-abend\)/);
});

t.test('a worker waiting for its shared host while the others run every job allocates nothing: never connected, its project never sent', async (t) => {
  const { base, dir } = await twoWorkersOneHost(t);
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true);
  t.equal(result.tally.successful, 2);
  t.equal(result.pulls.length, 1, 'one machine pulled the project');
  t.equal(out.match(/Sending project content to /g)?.length, 1, 'sent once');
  t.match(out, /Not allocating lab:debian-12 #\d: the jobs of lab:debian-12 were all taken by the other machines\./);
  t.equal(out.match(/Connecting to /g)?.length, 1, 'the host was connected to once, by the machine that ran the jobs');
});

t.test('an adhoc machine allocated after the others ran every job, whose discard fails, is discarded once', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo\n');
  const ran = join(base, 'ran');
  const discarded = join(base, 'discarded');
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: echo one >> ${ran}\n`);
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), `summary: two\nexecute: echo two >> ${ran}\n`);
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: twice', `path: ${remote}`, 'backends:', '  cloud:', '    type: adhoc', `    key: ${sshd.keyPath}`,
      // the first allocate answers at once; the second once the first machine ran both jobs and
      // its discard began (it is held until its jobs' leftovers are killed, after their end),
      // with the host's name: the address the first one's failed discard left serves no other
      // machine of the run, and a name is not looked up
      '    allocate: |',
      `      if mkdir ${join(base, 'first-allocate')} 2>/dev/null; then ADDRESS 127.0.0.1:${sshd.port}; exit; fi`,
      `      until [ "$(cat ${ran} 2>/dev/null | wc -l)" -ge 2 ] && [ -s ${discarded} ]; do sleep 0.1; done`,
      `      ADDRESS localhost:${sshd.port}`,
      '    discard: |', `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`, '      exit 1',
      '    systems:', '      - debian-12:', '          workers: 2',
      'suites:', '  tests/:', '    summary: two tasks', '',
    ].join('\n'),
  );
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  t.equal(result.tally.successful, 2, 'one machine ran both jobs');
  t.match(out, /Discarding cloud:debian-12 #\d: the jobs of cloud:debian-12 were all taken while it was allocated\./);
  // in this order: the second allocate gave its address once the first machine's discard wrote its own
  t.same((await readFile(discarded, 'utf8')).trim().split('\n'), [`127.0.0.1:${sshd.port}`, `localhost:${sshd.port}`], 'each machine\'s discard script ran once, with its address');
  t.equal(out.match(/Error discarding cloud:debian-12 #\d: /g)?.length, 2, 'each failed discard said once');
  t.match(out, /2 machine\(s\) not discarded; discard them with: /, 'both left on record');
});

t.test('a worker whose allocate keeps failing stops retrying once the other machines took every job of its system: the run ends with them', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  const held = join(base, 'cloud-machine');
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), 'summary: two\nexecute: echo two\n');
  // a cloud with room for one machine: every allocate after the first is refused (spread's ERROR, retried)
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: full', `path: ${remote}`, 'fleetcache:', '  dispatchDelay: 50ms', 'backends:', '  cloud:', '    type: adhoc', `    key: ${sshd.keyPath}`,
      '    retry-delay: 100ms', '    allocate-timeout: 60s',
      '    allocate: |', `      mkdir ${held} 2>/dev/null || ERROR no capacity`, `      ADDRESS 127.0.0.1:${sshd.port}`,
      '    systems:', '      - debian-12:', '          workers: 2',
      'suites:', '  tests/:', '    summary: two tasks', '',
    ].join('\n'),
  );
  const started = Date.now();
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  const took = Date.now() - started;
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'one machine ran both jobs');
  t.equal(result.tally.successful, 2);
  t.ok(took < 30_000, `the run ended with its jobs, not at the allocate-timeout of the worker still retrying (${took} ms)`);
  t.match(out, /Not allocating cloud:debian-12 #\d: the jobs of cloud:debian-12 were all taken by the other machines\./);
  t.notMatch(out, /Error preparing/, 'the refused allocations are no failure of the run');
});

t.test('an adhoc machine whose SSH never answers and whose discard fails: the run says so, and the machine stays on record for run --discard', async (t) => {
  const base = t.testdir();
  const dir = join(base, 'project');
  const discarded = join(base, 'discarded');
  const cloudUp = join(base, 'cloud-up');
  // a port nothing listens on: the machine died as it booted
  const port = await freePort();
  await mkdir(join(dir, 'tests', 'one'), { recursive: true });
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), 'summary: one\nexecute: echo one\n');
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: deadboot', `path: ${join(base, 'remote')}`, 'backends:', '  cloud:', '    type: adhoc', '    allocate-timeout: 1s',
      '    allocate: |', `      ADDRESS 127.0.0.1:${port}`,
      // the cloud's API fails the run's discard, answers the later run --discard
      '    discard: |', `      [ -e ${cloudUp} ] || { echo "cloud API unavailable"; exit 1; }`, `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`,
      '    systems:', '      - debian-12',
      'suites:', '  tests/:', '    summary: one task', '',
    ].join('\n'),
  );
  // a runner of its own: `run --discard` takes the machines of runners that are gone
  const cli = spawnSync(process.execPath, cliArgs(['run', '--data', join(base, 'cache')]), { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  const out = cli.stdout + cli.stderr;
  t.equal(cli.status, 1, 'unsuccessful run');
  t.match(out, /Aborted tasks: 1\n/);
  t.match(out, new RegExp(`Error preparing cloud:debian-12: .*127\\.0\\.0\\.1:${port}.*cannot discard cloud:debian-12 at 127\\.0\\.0\\.1:${port}: .*cloud API unavailable`), 'the failed discard is said');
  t.match(out, /1 machine\(s\) not discarded; discard them with: /, 'the machine is on record');
  await writeFile(cloudUp, '');
  t.equal(await discardKeptMachines({ cwd: dir, dataRoot: join(base, 'cache'), log: new RunLog(() => undefined) }), 1, 'run --discard finds it');
  t.equal(await readFile(discarded, 'utf8'), `127.0.0.1:${port}\n`, 'and its discard script ran with its address');
});

t.test('an adhoc allocate script that gives the address of a machine the run holds: that allocation fails, naming it, and what it allocated is discarded', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo\n');
  const busy = join(base, 'busy');
  const discarded = join(base, 'discarded');
  // each job holds the host alone for a while: a second machine at the same address breaks it
  const task = `summary: holds the host\nexecute: |\n  mkdir ${busy}\n  sleep 2\n  rmdir ${busy}\n`;
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), task);
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), task);
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: fixed', `path: ${remote}`, 'backends:', '  cloud:', '    type: adhoc', `    key: ${sshd.keyPath}`,
      `    allocate: ADDRESS 127.0.0.1:${sshd.port}`,
      '    discard: |', `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`,
      '    systems:', '      - debian-12:', '          workers: 2',
      'suites:', '  tests/:', '    summary: two tasks', '',
    ].join('\n'),
  );
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.match(out, new RegExp(`Error preparing cloud:debian-12 #\\d: cannot allocate cloud:debian-12: the allocate script of backend cloud gave address 127\\.0\\.0\\.1:${sshd.port}, which machine cloud:debian-12 of this run holds`));
  t.equal(result.tally.successful, 2, 'the machine the run holds ran both jobs, one at a time');
  t.same((await readFile(discarded, 'utf8')).trim().split('\n'), [`127.0.0.1:${sshd.port}`], 'the machine discarded once, when the run was done with it: not for the refused allocation, while its job ran');
});

t.test('a connection that drops mid-script fails it with a reason, and the machine takes no more jobs', async (t) => {
  const { base, sshd, dir } = await oneHostProject(t, 'summary: one\nexecute: |\n  echo started\n  sleep 30\n');
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), 'summary: two\nexecute: echo two\n');
  let out = '';
  const running = runProject({ cwd: dir, filters: [], order: true, agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s), 2), dataRoot: join(base, 'cache') });
  // the script's own line, not its trace (`+ echo started`), which comes first
  await eventually('the first script runs', () => /^started$/m.test(out), 60_000);
  // the sshd processes serving the run's connection (not the listener): as a network cut
  for (const pid of descendantsOf(sshd.pid)) process.kill(pid, 'SIGKILL');
  const result = await running;
  t.match(out, /Error executing lab:debian-12:tests\/one \(lab:debian-12\) :\n-----\n(.*\n)*?started\n(.*\n)*?error: remote command exited without exit status or exit signal/, 'the output so far, then why');
  t.notMatch(out, /Executing lab:debian-12:tests\/two/, 'the broken machine took no other job');
  t.same(result.tally.failed, ['lab:debian-12:tests/one']);
  t.same(result.tally.aborted, ['lab:debian-12:tests/two']);
});

t.test('region: auto on a host that does not have the project path yet: the caches are measured there all the same', async (t) => {
  const { base, dir } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  const spread = await readFile(join(dir, 'spread.yaml'), 'utf8');
  await writeFile(join(dir, 'spread.yaml'), spread.replace('    systems: [debian-12]\n', '    systems:\n      - debian-12:\n          region: auto\n'));
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true);
  t.match(out, /pulls through http:\/\/127\.0\.0\.1:\d+ \(auto: http:\/\/127\.0\.0\.1:\d+ answered in [\d.]+ ms\)/, 'the cache answered the measure');
});

t.test('an adhoc machine that serves run after run (one address, as a device of spread\'s external backend): what the last run left at the project path goes before the project is sent', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: device\npath: ${remote}\nbackends:\n  external:\n    type: adhoc\n    key: ${sshd.keyPath}\n    allocate: ADDRESS 127.0.0.1:${sshd.port}\n    systems: [debian-12]\nsuites:\n  tests/:\n    summary: one\n`,
  );
  for (const round of ['first', 'second']) {
    const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
    if (!result.tally.ok) t.comment(out);
    t.equal(result.tally.successful, 1, `the ${round} run passes`);
  }
});

t.test('knownHosts (fleetcache: in spread.yaml): an ssh host whose key is not the listed one fails to connect, naming its fingerprint; the listed key runs', async (t) => {
  const { base, sshd, dir } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  const spread = (await readFile(join(dir, 'spread.yaml'), 'utf8')) + 'fleetcache:\n  knownHosts: known_hosts\n';
  await writeFile(join(dir, 'spread.yaml'), spread);
  const name = `[127.0.0.1]:${sshd.port}`;
  const hostKey = publicKeyOf(sshd.hostKeyFile);
  // another host's key listed for this one: as a machine in the middle would present
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(base, 'other_key')]);
  await writeFile(join(dir, 'known_hosts'), `${name} ${publicKeyOf(join(base, 'other_key.pub'))}\n`);
  const { result: refused, out: refusedOut } = await run(dir, [], { dataRoot: join(base, 'cache') });
  t.equal(refused.tally.ok, false, 'the run fails');
  t.equal(refused.tally.successful, 0);
  t.match(refusedOut, `Host 127.0.0.1:${sshd.port} of backend lab is passed over for the rest of the run: cannot connect to 127.0.0.1:${sshd.port}: host key verification failed: host ${name} presented the ssh-ed25519 key ${keygenFingerprint(sshd.hostKeyFile)}`);
  await writeFile(join(dir, 'known_hosts'), `${name} ${hostKey}\n`);
  const { result: listed, out: listedOut } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!listed.tally.ok) t.comment(listedOut);
  t.equal(listed.tally.successful, 1, 'the host with its listed key runs the job');
});

t.test('knownHosts with adhoc machines: a host the allocate script does not list is refused; one it appends to the file before ADDRESS connects', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  const knownHosts = join(base, 'known_hosts');
  await writeFile(knownHosts, '');
  const project = (allocate: string): string =>
    `project: adhoc\npath: ${remote}\nbackends:\n  cloud:\n    type: adhoc\n    key: ${sshd.keyPath}\n    allocate: |\n${allocate}    systems: [debian-12]\nsuites:\n  tests/:\n    summary: one\nfleetcache:\n  knownHosts: ${knownHosts}\n`;
  await writeFile(join(dir, 'spread.yaml'), project(`      ADDRESS 127.0.0.1:${sshd.port}\n`));
  const { result: refused, out: refusedOut } = await run(dir, [], { dataRoot: join(base, 'cache') });
  t.equal(refused.tally.successful, 0, 'an unlisted adhoc host runs nothing');
  t.match(refusedOut, `which ${knownHosts} does not list for [127.0.0.1]:${sshd.port}`);
  // what a cloud's allocate script does with the key its new machine reports
  await writeFile(join(dir, 'spread.yaml'), project(`      echo "[127.0.0.1]:${sshd.port} $(cut -d' ' -f1,2 ${sshd.hostKeyFile})" >> ${knownHosts}\n      ADDRESS 127.0.0.1:${sshd.port}\n`));
  const { result: listed, out: listedOut } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!listed.tally.ok) t.comment(listedOut);
  t.equal(listed.tally.successful, 1, 'the key the allocate script appended is read at connect');
});

t.test("what a job's scripts leave running on an ssh machine is killed when the job ends, what left their process group too; a suite prepare's daemon serves on", async (t) => {
  const { base, dir } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  const files = { prepare: join(base, 'prepare.pids'), execute: join(base, 'execute.pids'), suite: join(base, 'suite.pids') };
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nprepare: |\n  ${leavingScript(files.prepare)}\nexecute: |\n  ${leavingScript(files.execute)}\n`);
  const spread = await readFile(join(dir, 'spread.yaml'), 'utf8');
  await writeFile(join(dir, 'spread.yaml'), spread.replace('    summary: one\n', `    summary: one\n    prepare: |\n      ${leavingScript(files.suite)}\n`));
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  const [prepared, executed, suite] = [leftPids(t, files.prepare), leftPids(t, files.execute), leftPids(t, files.suite)];
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.successful, 1);
  t.notOk([...prepared, ...executed].some(isAlive), "the task's prepare and execute left nothing running, in their process group or out of it");
  t.ok(suite.every(isAlive), "the suite prepare's processes run on, as in spread");
});

/** A one-host project (oneHostProject) whose one job runs `task`; its run's tally and log. */
async function runOneJob(t: Test, task: string, options: { abend?: true } = {}): Promise<{ ok: boolean; out: string }> {
  const { base, dir } = await oneHostProject(t, task);
  let out = '';
  const result = await runProject({ ...options, cwd: dir, filters: [], agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(base, 'cache') });
  return { ok: result.tally.ok, out };
}

t.test("a job whose restore passes has what it left killed at that restore's end: one SSH command per script of the job, none for the kill", async (t) => {
  const base = t.testdir();
  const sshd = await startSshd(t, join(base, 'sshd'), { log: true });
  /** A run of `jobs` jobs on the sshd, each execute leaving sleeps, each restore passing: the SSH commands it took, and the sleeps. */
  const runJobs = async (name: string, jobs: number): Promise<{ commands: number; left: number[] }> => {
    const dir = join(base, name);
    const remote = join(base, `${name}-remote`);
    t.teardown(() => rm(remote, { recursive: true, force: true }));
    const files = Array.from({ length: jobs }, (_, i) => join(base, `${name}-${i}.pids`));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'spread.yaml'), `project: ${name}\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12]\nsuites:\n  tests/:\n    summary: jobs\n`);
    for (const [i, file] of files.entries()) {
      await mkdir(join(dir, 'tests', `t${i}`), { recursive: true });
      await writeFile(join(dir, 'tests', `t${i}`, 'task.yaml'), `summary: t\nexecute: |\n  ${leavingScript(file)}\nrestore: echo restored\n`);
    }
    const before = commandSessions(sshd);
    let out = '';
    const result = await runProject({ cwd: dir, filters: [], agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(base, `${name}-cache`) });
    if (!result.tally.ok) t.comment(out);
    t.equal(result.tally.successful, jobs, `${name}: every job passed`);
    return { commands: commandSessions(sshd) - before, left: files.flatMap((file) => leftPids(t, file)) };
  };
  const one = await runJobs('one', 1);
  const three = await runJobs('three', 3);
  // what a run costs besides its jobs is the same in both: the two more jobs make the difference
  const scriptsPerJob = ['execute', 'restore'].length;
  t.equal((three.commands - one.commands) / 2, scriptsPerJob, "a job's SSH commands are its execute and its restore: its end-of-job kill ran in the restore");
  t.notOk([...one.left, ...three.left].some(isAlive), 'what every execute left is killed, what left its process group too');
});

t.test('a job whose execute fails has what it left killed at the end of its restore', async (t) => {
  const file = join(t.testdir(), 'execute.pids');
  const { ok, out } = await runOneJob(t, `summary: one\nexecute: |\n  ${leavingScript(file)}\n  exit 1\nrestore: echo restored\n`);
  t.notOk(ok, 'the job failed');
  t.match(out, /Error executing lab:debian-12:tests\/one/);
  t.notOk(leftPids(t, file).some(isAlive), 'what the failed execute left is killed');
});

t.test("a job whose restore fails: its debug script finds what the restore left running, and it is killed after the debug script", async (t) => {
  const base = t.testdir();
  const files = { execute: join(base, 'execute.pids'), restore: join(base, 'restore.pids'), debug: join(base, 'debug.pids') };
  const { ok, out } = await runOneJob(
    t,
    [
      'summary: one', 'execute: |', `  ${leavingScript(files.execute)}`, 'restore: |', `  ${leavingScript(files.restore)}`, '  exit 1',
      // a killed process not reaped yet (a zombie) is not running: kill -0 would say it is
      'debug: |', `  ${leavingScript(files.debug)}`, `  for p in $(cat ${files.execute} ${files.restore}); do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) && [ "$s" != Z ] && echo "running $p"; done`, '',
    ].join('\n'),
  );
  t.notOk(ok, 'the job failed');
  const [executed, restored, debugged] = [leftPids(t, files.execute), leftPids(t, files.restore), leftPids(t, files.debug)];
  for (const p of [...executed, ...restored]) t.match(out, new RegExp(`^running ${p}$`, 'm'), `the debug script saw ${p} running`);
  t.notOk([...executed, ...restored, ...debugged].some(isAlive), 'what the execute, the restore and the debug script left is killed after it');
});

t.test('--abend: a job whose restore fails has nothing killed (the machine is kept as it is for inspection)', async (t) => {
  const base = t.testdir();
  const files = { execute: join(base, 'execute.pids'), restore: join(base, 'restore.pids') };
  const { ok, out } = await runOneJob(t, `summary: one\nexecute: |\n  ${leavingScript(files.execute)}\nrestore: |\n  ${leavingScript(files.restore)}\n  exit 1\n`, { abend: true });
  t.notOk(ok, 'the job failed');
  t.match(out, /\(-abend\)/, 'the machine is kept');
  t.ok([...leftPids(t, files.execute), ...leftPids(t, files.restore)].every(isAlive), 'what the execute and the failed restore left runs on');
});

t.test('an interrupt during the restore: what the job left runs on, the restore killed before it could kill it', async (t) => {
  const { base, dir } = await oneHostProject(t, 'summary: one\n');
  const files = { execute: join(base, 'execute.pids'), restoring: join(base, 'restoring') };
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: |\n  ${leavingScript(files.execute)}\nrestore: |\n  touch ${files.restoring}\n  sleep 300\n`);
  const { child, out, exited } = startRun(t, base, dir, []);
  await eventually('the restore runs', () => existsSync(files.restoring), 60_000);
  child.kill('SIGINT');
  t.equal(await exited, 1, 'unsuccessful run');
  t.match(out(), /Received SIGINT/);
  t.ok(leftPids(t, files.execute).every(isAlive), 'nothing is killed after an interrupt (docs/run.md)');
});

/**
 * A --reuse run of one job on a host reached through a HalfOpenRelay, whose execute leaves
 * sleeps and loses its connection (relay.cut, then `afterCut`): the machine never sees it drop.
 */
async function lostMidRunKept(t: Test, afterCut: (relay: HalfOpenRelay) => void = () => undefined): Promise<{ base: string; dir: string; relay: HalfOpenRelay; left: number[]; result: RunResult; out: string }> {
  const { base, dir, sshd, remote } = await oneHostProject(t, 'summary: one\n');
  const relay = await halfOpenRelay(t, sshd.port);
  const file = join(base, 'execute.pids');
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: |\n  ${leavingScript(file)}\n  sleep 300\n`);
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: onehost\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${relay.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12]\nsuites:\n  tests/:\n    summary: one\n`,
  );
  const kept = run(dir, [], { reuse: true, dataRoot: join(base, 'cache') });
  await eventually('the execute started both sleeps', async () => (await readFile(file, 'utf8').catch(() => '')).trim().split('\n').length === 2, 60_000);
  const left = leftPids(t, file);
  relay.cut(); // the machine never sees the connection drop: the execute and its sleeps run on
  afterCut(relay);
  return { base, dir, relay, left, ...(await kept) };
}

t.test('--reuse: a machine kept after its connection was lost has the lost script\'s processes killed first, what left its process group too', async (t) => {
  const { left, result, out } = await lostMidRunKept(t);
  t.notOk(result.tally.ok, 'the job whose connection was lost failed');
  t.match(out, /Keeping lab:debian-12 at 127\.0\.0\.1:\d+\n/, 'the machine is kept');
  t.notMatch(out, /may still run the processes of a script whose connection was lost/);
  // a SIGKILLed process is gone once the kernel has run its exit: awaited, not assumed at once
  await eventually('the sleeps the lost execute left are killed before the next run can take the machine back', () => !left.some(isAlive), 5000);
});

t.test('--reuse: a machine kept while the lost script\'s processes could not be stopped has them killed by the next --reuse run before its jobs', async (t) => {
  // the machine does not answer the keep's sweep
  const { base, dir, relay, left, ...first } = await lostMidRunKept(t, (r) => r.refuse());
  t.match(first.out, /Keeping lab:debian-12 at 127\.0\.0\.1:\d+\n/, 'the machine is kept');
  t.match(first.out, /WARNING: .* may still run the processes of a script whose connection was lost/);
  t.ok(left.every(isAlive), 'what the lost execute left runs on');
  const [record] = (JSON.parse(await readFile(join(dir, REUSE_FILE), 'utf8')) as { machines: MachineRecord[] }).machines;
  t.equal(record?.lostScripts?.length, 1, 'the lost execute is on record');
  t.equal(record?.lostJobs?.length, 1, 'and so is its job');
  relay.accept();
  // the next run's job tells which of them it saw running (a killed one not reaped yet is a zombie: not running)
  const seen = join(base, 'seen');
  const check = `for p in ${left.join(' ')}; do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) && [ "$s" != Z ] && echo "running $p" >> ${seen}; done; touch ${seen}`;
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: |\n  ${check}\n`);
  const second = await run(dir, [], { reuse: true, dataRoot: join(base, 'cache') });
  if (!second.result.tally.ok) t.comment(second.out);
  t.match(second.out, /Reusing lab:debian-12 at 127\.0\.0\.1:\d+\.\.\./, 'the kept machine is taken back');
  t.equal(second.result.tally.successful, 1, 'its job ran');
  t.equal(await readFile(seen, 'utf8'), '', 'none of what the lost execute left was running when the job ran');
  await eventually('what the lost execute left is killed', () => !left.some(isAlive), 5000);
});
