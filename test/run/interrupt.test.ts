// `fleetcache run` stopped from outside: SIGINT/SIGTERM end the running scripts and
// discard the machines, a second signal exits at once, and the machines of a runner
// killed outright (SIGKILL) are on record for `run --discard`. What the process does with a
// signal (its exit status, a second signal, SIGKILL) is tested on the binary; what the run
// does at each step it can be cut at, on a run in this process that the test signals (the
// command's exit status for a run whose jobs had all passed too: `fleetcache run` in this process).
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { FleetError } from '../../src/errors.js';
import { RunLog } from '../../src/run/report.js';
import { discardKeptMachines } from '../../src/run/discard.js';
import type { RunResult } from '../../src/run/runner.js';
import { runCli, runHere as runCliHere } from '../helpers/cli.js';
import { cliArgs, isAlive, rememberProcess, stopWithTest } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { endedWithin, runHere } from './run-here.js';

/** A one-system local project whose task s/a starts a long sleep and writes its PID to `pidFile`. */
async function sleepingProject(t: Test, pidFile: string, extra: string[] = []): Promise<string> {
  const dir = join(t.testdir(), 'project');
  const spread = ['project: intr', 'path: /home/intr', ...extra, 'backends:', '  local:', '    type: local', '    systems: [alpha-1]', 'suites:', '  s/:', '    summary: s', ''];
  await mkdir(join(dir, 's/a'), { recursive: true });
  await mkdir(join(dir, 's/b'), { recursive: true });
  await writeFile(join(dir, 'spread.yaml'), spread.join('\n'));
  await writeFile(join(dir, 's/a/task.yaml'), `summary: a\nexecute: |\n  sleep 300 &\n  echo $! > ${pidFile}\n  wait\nrestore: echo restoring-a\n`);
  await writeFile(join(dir, 's/b/task.yaml'), 'summary: b\nexecute: echo b\n');
  return dir;
}

interface Runner {
  child: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `fleetcache run <args>` in `dir` as a child process, stopped by its PID when the test ends;
 * its user is in `dir` (npx, which runs the tests, names where it started INIT_CWD).
 */
function startRun(t: Test, dir: string, args: string[] = [], env: NodeJS.ProcessEnv = process.env): Runner {
  const child = spawn(process.execPath, cliArgs(['run', '--seed', '1', '--data', join(dir, 'cache'), ...args]), { cwd: dir, env: { ...env, INIT_CWD: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  stopWithTest(t, child, 'SIGKILL');
  return { child, out: () => out, exited };
}

/** The PID the task wrote, once it is there; killed by the test's teardown if still alive. */
async function taskPid(t: Test, pidFile: string): Promise<number> {
  await eventually('the task started its sleep', async () => /^\d+\n$/.test(await readFile(pidFile, 'utf8').catch(() => '')), 60_000);
  const pid = Number(await readFile(pidFile, 'utf8'));
  const task = rememberProcess(pid);
  t.teardown(() => task.kill('SIGKILL'));
  return pid;
}

/** What a runner of startRun tells its user to type to discard its machines: its entry point (outside `dir`) run by node, its --data relative to `dir`. */
const DISCARD_COMMAND = `node ${cliArgs([]).at(-1)} run --discard --data cache`;

const machinesOf = (dir: string) => readdir(join(dir, 'cache', 'machines')).catch(() => []);

/** The summary lines the binary prints after the run. */
const summaryOf = (ended: { result?: RunResult } | 'waiting') => (ended === 'waiting' ? '' : ended.result?.tally.summaryLines().join('\n') ?? '');

t.test('SIGINT while a machine measures the caches (region: auto): the measure is killed and the run stops at once', async (t) => {
  const curlPid = join(t.testdirName, 'curl.pid');
  const dir = await sleepingProject(t, join(t.testdirName, 'sleep.pid'));
  const spread = await readFile(join(dir, 'spread.yaml'), 'utf8');
  await writeFile(join(dir, 'spread.yaml'), spread.replace('    systems: [alpha-1]\n', '    systems:\n      - alpha-1:\n          region: auto\n'));
  // the machine's curl (a local machine's scripts find it on the runner's PATH) never answers
  const bin = join(t.testdirName, 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'curl'), `#!/bin/sh\necho $$ > ${curlPid}\nexec sleep 300\n`);
  await chmod(join(bin, 'curl'), 0o755);
  const run = runHere(t, dir, { filters: ['s/b'] }, bin);
  await eventually('the machine measures the caches', async () => /^\d+\n$/.test(await readFile(curlPid, 'utf8').catch(() => '')), 60_000);
  const pid = Number(await readFile(curlPid, 'utf8'));
  const curl = rememberProcess(pid);
  t.teardown(() => curl.kill('SIGKILL'));
  run.interrupt();
  const started = Date.now();
  const ended = await endedWithin(run.ended, 30_000);
  t.not(ended, 'waiting', `the run ended (${Date.now() - started} ms after the signal), not when the measure would have`);
  t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGINT', 'an interrupted run (unsuccessful)');
  await eventually('the measuring curl was killed', () => !isAlive(pid), 10_000);
  t.match(run.out(), /Discarding local:alpha-1\.\.\./);
  t.same(await machinesOf(dir), [], 'the machine directory is removed');
});

/**
 * What a run cut by `signal` while s/a ran (its sleep `pid`) printed (`out`) and left: no
 * restore, the machine discarded, the report marked interrupted with both jobs aborted.
 */
async function checkInterrupted(t: Test, dir: string, pid: number, signal: NodeJS.Signals, out: string): Promise<void> {
  t.match(out, new RegExp(`Received ${signal}`));
  t.match(out, /Discarding local:alpha-1\.\.\./);
  t.notMatch(out, /Restoring|restoring-a/, 'no restore ran');
  await eventually("the task's sleep was killed (and reaped)", () => !isAlive(pid));
  t.same(await machinesOf(dir), [], 'the machine directory is removed');
  t.same(await readdir(join(dir, 'cache', 'running')).catch(() => []), [], 'no machine left on record');
  // the run's transfer report says it was cut short
  const [report] = await readdir(join(dir, 'cache', 'reports'));
  const ledger = JSON.parse(await readFile(join(dir, 'cache', 'reports', report!), 'utf8')) as { interrupted?: unknown };
  t.same(ledger.interrupted, { signal, abortedJobs: 2 }, 'the report is marked as interrupted');
  const shown = await runCli(['report', '--data', join(dir, 'cache')]);
  t.match(shown.stdout, `interrupted by ${signal}, 2 jobs aborted: the figures are those of the jobs that ran before it`, 'and fleetcache report says so');
}

t.test('SIGINT to the binary: the running script is killed, no restore runs, the machine is discarded, the summary is printed, exit 1', async (t) => {
  const pidFile = join(t.testdirName, 'sleep.pid');
  const dir = await sleepingProject(t, pidFile);
  const run = startRun(t, dir, ['s/a', 's/b']);
  const pid = await taskPid(t, pidFile);
  t.equal((await machinesOf(dir)).length, 1, 'one machine allocated');
  run.child.kill('SIGINT');
  const { code } = await run.exited;
  t.equal(code, 1, 'unsuccessful run');
  t.match(run.out(), /Successful tasks: 0\n\S+ \S+ Aborted tasks: 2\n/, 'the running job and the pending one are aborted, in the summary printed');
  t.match(run.out(), /error: unsuccessful run/);
  await checkInterrupted(t, dir, pid, 'SIGINT', run.out());
});

// The binary's exit status after a SIGTERM is the SIGINT's above (the CLI maps an interrupted
// run to exit 1 whatever the signal), and its SIGTERM handler is proved on the binary by the
// second-signal test below: the run it cuts is this process's, signalled as the binary is.
t.test('SIGTERM: the running script is killed, no restore runs, the machine is discarded, the run is interrupted', async (t) => {
  const pidFile = join(t.testdirName, 'sleep.pid');
  const dir = await sleepingProject(t, pidFile);
  const run = runHere(t, dir, { filters: ['s/a', 's/b'] });
  const pid = await taskPid(t, pidFile);
  t.equal((await machinesOf(dir)).length, 1, 'one machine allocated');
  run.interrupt('SIGTERM');
  const ended = await endedWithin(run.ended, 60_000);
  t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGTERM', 'an interrupted run (unsuccessful)');
  t.match(summaryOf(ended), /^Successful tasks: 0\nAborted tasks: 2$/, 'the running job and the pending one are aborted');
  await checkInterrupted(t, dir, pid, 'SIGTERM', run.out());
});

t.test('a signal during the last restore, every job passed: the restore is killed and the run is unsuccessful (exit 1)', async (t) => {
  const pidFile = join(t.testdirName, 'restore.pid');
  const dir = await sleepingProject(t, join(t.testdirName, 'unused.pid'), ['restore: |', '  sleep 300 &', `  echo $! > ${pidFile}`, '  wait']);
  // the command's own mapping of the run to its exit status (src/cli/run.ts), in this process
  const run = runCliHere(['run', '--seed', '1', '--data', join(dir, 'cache'), 's/b'], dir);
  const pid = await taskPid(t, pidFile);
  process.kill(process.pid, 'SIGTERM');
  const { code, stdout, stderr } = await run;
  t.match(stdout, /Successful tasks: 1\n\S+ \S+ Aborted tasks: 0\n/, 'the job had passed');
  t.equal(code, 1, 'the project restore was killed: the run did not succeed');
  t.match(stderr, /error: unsuccessful run/);
  await eventually("the restore's sleep was killed", () => !isAlive(pid));
  t.same(await machinesOf(dir), [], 'the machine is discarded');
});

t.test('SIGINT while a machine\'s load is read (loadThreshold) and the read hangs: the read is killed and the run stops at once', async (t) => {
  const dir = join(t.testdir(), 'project');
  const bin = join(dir, '..', 'bin');
  const started = join(dir, '..', 'started');
  const pidFile = join(dir, '..', 'probe.pid');
  await mkdir(bin, { recursive: true });
  // a machine too busy to answer: once a job has run, reading its load never ends
  await writeFile(join(bin, 'cat'), `#!/bin/sh\nif [ "$1" = /proc/loadavg ] && [ -e ${started} ]; then echo $$ > ${pidFile}; exec sleep 300; fi\nexec /bin/cat "$@"\n`);
  await chmod(join(bin, 'cat'), 0o755);
  const spread = ['project: probe', 'path: /home/probe', 'fleetcache:', '  loadThreshold: 100000', ...['backends:', '  local:', '    type: local', '    systems: [alpha-1]'], 'suites:', '  s/:', '    summary: s', ''];
  await mkdir(join(dir, 's/a'), { recursive: true });
  await mkdir(join(dir, 's/b'), { recursive: true });
  await writeFile(join(dir, 'spread.yaml'), spread.join('\n'));
  // the first job outlasts its load reading (a low one admits the jobs of the next second
  // unread, driver.ts): the second job's admission reads the load again, and hangs
  for (const task of ['a', 'b']) await writeFile(join(dir, `s/${task}/task.yaml`), `summary: ${task}\nexecute: sleep 1.5; touch ${started}\n`);
  const run = runHere(t, dir, {}, bin);
  const pid = await taskPid(t, pidFile);
  const sent = Date.now();
  run.interrupt();
  const ended = await endedWithin(run.ended, 15_000);
  t.not(ended, 'waiting', `the run ended ${Date.now() - sent} ms after the signal, not after the hung read`);
  t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGINT', 'an interrupted run (unsuccessful)');
  t.match(summaryOf(ended), /Successful tasks: 1\nAborted tasks: 1(\n|$)/, 'the job waiting for the load is aborted');
  await eventually('the load read is killed', () => !isAlive(pid), 10_000);
  t.same(await machinesOf(dir), [], 'the machine is discarded');
});

t.test('a kept machine (--reuse) whose shell hangs on a step of taking it back', async (t) => {
  // one kept machine for both steps: a run the interrupt cut leaves it kept, as it was
  const dir = join(t.testdir(), 'project');
  await mkdir(join(dir, 's/a'), { recursive: true });
  await writeFile(join(dir, 'spread.yaml'), ['project: keptset', 'path: /home/keptset', 'backends:', '  local:', '    type: local', '    systems: [alpha-1]', 'suites:', '  s/:', '    summary: s', ''].join('\n'));
  await writeFile(join(dir, 's/a/task.yaml'), 'summary: a\nexecute: echo a\n');
  const first = await runHere(t, dir, { reuse: true }).ended;
  t.ok(first.result?.tally.ok, 'a first run keeps its machine');
  const [kept] = (JSON.parse(await readFile(join(dir, '.fleetcache-reuse.json'), 'utf8')) as { machines: unknown[] }).machines;
  t.ok(kept, 'the machine is on record');
  for (const [step, resend, tool, hangsOn] of [
    ['checking that a kept machine has the project', false, 'grep', '-qxF'],
    ['emptying a kept machine\'s project path (--resend)', true, 'cut', '-d:'],
  ] as const) {
    await t.test(`SIGINT while ${step} and the machine's shell hangs: the command is killed, the run stops at once, the machine stays kept`, async (t) => {
      const bin = join(dir, '..', `bin-${tool}`);
      const pidFile = join(dir, '..', `${tool}.pid`);
      // the kept machine's shell hangs on this step's command (a local machine's scripts find it on the runner's PATH)
      await mkdir(bin);
      await writeFile(join(bin, tool), `#!/bin/sh\nif [ "$1" = ${hangsOn} ]; then echo $$ > ${pidFile}; exec sleep 300; fi\nexec /usr/bin/${tool} "$@"\n`);
      await chmod(join(bin, tool), 0o755);
      const run = runHere(t, dir, { reuse: true, ...(resend ? { resend } : {}) }, bin);
      const pid = await taskPid(t, pidFile);
      const sent = Date.now();
      run.interrupt();
      const ended = await endedWithin(run.ended, 15_000);
      t.not(ended, 'waiting', `the run ended ${Date.now() - sent} ms after the signal, not when the hung command would have`);
      t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGINT', 'an interrupted run (unsuccessful)');
      t.notMatch(run.out(), /Cannot reuse local:alpha-1|Error preparing local:alpha-1/, 'a step the interrupt cut short is no failure of the machine');
      t.match(summaryOf(ended), /Aborted tasks: 1/);
      await eventually(`the hung ${tool} is killed`, () => !isAlive(pid), 10_000);
      t.same((JSON.parse(await readFile(join(dir, '.fleetcache-reuse.json'), 'utf8')) as { machines: unknown[] }).machines, [kept], 'the machine stays kept');
    });
  }
});

t.test('a signal while the project is uploaded stops it at once: the repack script is killed, no machine is allocated, exit 1', async (t) => {
  const pidFile = join(t.testdirName, 'repack.pid');
  const dir = await sleepingProject(t, join(t.testdirName, 'unused.pid'), ['repack: |', `  echo $$ > ${pidFile}`, '  exec sleep 300']);
  const run = runHere(t, dir);
  const pid = await taskPid(t, pidFile);
  const t0 = Date.now();
  run.interrupt();
  const ended = await endedWithin(run.ended, 30_000);
  t.ok(Date.now() - t0 < 10_000, `stopped at once (${Date.now() - t0} ms), not after the repack`);
  const error = ended === 'waiting' ? undefined : ended.error;
  t.ok(error instanceof FleetError && error.code === 'FC_ERR_TASK_FAILED', 'unsuccessful run, as after any first signal (FC_ERR_TASK_FAILED: exit 1)');
  t.match(run.out(), /Received SIGINT/);
  t.match(error instanceof Error ? error.message : '', /interrupted by SIGINT while the project was uploaded: no job ran \(2 aborted\), no machine was allocated/);
  await eventually('the repack script was killed', () => !isAlive(pid));
  t.same(await machinesOf(dir), [], 'no machine');
});

t.test('a second signal exits at once, the machines left on record for run --discard', async (t) => {
  const pidFile = join(t.testdirName, 'sleep.pid');
  const dir = await sleepingProject(t, pidFile);
  const run = startRun(t, dir, ['s/a']);
  const pid = await taskPid(t, pidFile);
  // Two kinds of signal, sent at once (the first one's stop is quick on a local machine): two
  // SIGINTs may reach the process as one, and these two may reach it in either order.
  run.child.kill('SIGINT');
  run.child.kill('SIGTERM');
  const { code } = await run.exited;
  const first = /Received (SIGINT|SIGTERM), stopping/.exec(run.out())?.[1];
  t.ok(first, 'the first signal stops the run');
  const second = first === 'SIGINT' ? 'SIGTERM' : 'SIGINT';
  t.equal(code, second === 'SIGTERM' ? 143 : 130, `128 + the second signal's number (${second})`);
  t.match(run.out(), `Received ${second} again, exiting at once; discard the machines left with: ${DISCARD_COMMAND}\n`);
  t.notMatch(run.out(), /Successful tasks/, 'no summary: it did not wait');
  t.equal((await readdir(join(dir, 'cache', 'running'))).length, 1, 'the machine is on record');
  await discardKeptMachines({ cwd: dir, dataRoot: join(dir, 'cache'), log: new RunLog(() => undefined) });
  t.same(await machinesOf(dir), [], 'run --discard removed it');
  await eventually("the task's sleep is gone", () => !isAlive(pid));
});

t.test('the machines of a runner killed with SIGKILL are on record: run --discard discards them', async (t) => {
  const pidFile = join(t.testdirName, 'sleep.pid');
  const dir = await sleepingProject(t, pidFile);
  const run = startRun(t, dir, ['s/a']);
  const pid = await taskPid(t, pidFile);
  run.child.kill('SIGKILL');
  await run.exited;
  t.equal((await machinesOf(dir)).length, 1, 'the machine is left');
  t.equal(isAlive(pid), true, 'its task process is left');
  t.match(run.out(), `If killed, discard machines with: ${DISCARD_COMMAND}\n`);

  let out = '';
  const dataRoot = join(dir, 'cache');
  const discarded = await discardKeptMachines({ cwd: dir, dataRoot, log: new RunLog((s) => (out += s)) });
  t.equal(discarded, 1, out);
  t.same(await machinesOf(dir), [], 'the machine directory is removed');
  await eventually("the task's sleep ends with its machine", () => !isAlive(pid));
  t.same(await readdir(join(dir, 'cache', 'running')), [], 'the record is gone');
  t.equal(await discardKeptMachines({ cwd: dir, dataRoot, log: new RunLog(() => undefined) }), 0, 'nothing left to discard');
});

t.test('SIGINT while a machine is being allocated: the allocate script is killed, the address it gave discarded, nothing more is started', async (t) => {
  const dir = join(t.testdir(), 'project');
  const pidFile = join(dir, '..', 'allocate.pid');
  const discarded = join(dir, '..', 'discarded');
  await mkdir(join(dir, 's/a'), { recursive: true });
  // The address first, then a wait for the machine to finish booting (a cloud VM made, not ready).
  const spread = [
    'project: slowalloc', 'path: /home/slowalloc', 'backends:', '  cloud:', '    type: adhoc',
    '    allocate: |', '      ADDRESS 127.0.0.1:1', `      sleep 60 & echo $! > ${pidFile}; wait`,
    `    discard: echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`, '    systems: [ubuntu-1]', 'suites:', '  s/:', '    summary: s', '',
  ];
  await writeFile(join(dir, 'spread.yaml'), spread.join('\n'));
  await writeFile(join(dir, 's/a/task.yaml'), 'summary: a\nexecute: echo a\n');
  const run = runHere(t, dir);
  const pid = await taskPid(t, pidFile);
  const sent = Date.now();
  run.interrupt();
  const ended = await endedWithin(run.ended, 30_000);
  t.ok(Date.now() - sent < 15_000, `the run ended ${Date.now() - sent} ms after the signal, not after the allocate script's minute`);
  t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGINT', 'an interrupted run (unsuccessful)');
  await eventually('the allocate script is gone', () => !isAlive(pid), 10_000);
  t.notMatch(run.out(), /Waiting for cloud:ubuntu-1 to make SSH available/, 'nothing after the allocation');
  t.notMatch(run.out(), /Error preparing cloud:ubuntu-1: This operation was aborted/, 'no error line for a start the interrupt cut short');
  t.match(summaryOf(ended), /Aborted tasks: 1/);
  t.equal(await readFile(discarded, 'utf8'), '127.0.0.1:1\n', 'the machine it announced is discarded, once');
});

t.test('a signal while a job\'s assets are fetched: the fetch is killed, the job aborted, no failure of its own', async (t) => {
  const dir = join(t.testdir(), 'project');
  const pidFile = join(dir, '..', 'assets.pid');
  await mkdir(join(dir, 's/a'), { recursive: true });
  await writeFile(join(dir, 'spread.yaml'), ['project: slowassets', 'path: /home/slowassets', 'backends:', '  local:', '    type: local', '    systems: [alpha-1]', 'suites:', '  s/:', '    summary: s', ''].join('\n'));
  await writeFile(join(dir, 's/a/task.yaml'), 'summary: a\nassets: manifest.tt\nexecute: echo a\n');
  await writeFile(join(dir, 's/a/manifest.tt'), '[]\n');
  // the machine's `node` (first on its scripts' PATH): the agent as it is, but an assets fetch that hangs
  const bin = join(dir, '..', 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'node'), `#!/bin/sh\ncase "$2" in assets) echo $$ > ${pidFile}; exec sleep 300;; esac\nexec ${process.execPath} "$@"\n`);
  await chmod(join(bin, 'node'), 0o755);
  const run = runHere(t, dir, {}, bin);
  const pid = await taskPid(t, pidFile);
  run.interrupt();
  const ended = await endedWithin(run.ended, 30_000);
  t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGINT', 'an interrupted run (unsuccessful)');
  t.match(run.out(), /Received SIGINT/);
  t.notMatch(run.out(), /Error fetching assets/, 'a fetch the interrupt killed is no error of its own');
  t.notMatch(summaryOf(ended), /Failed task prepare/);
  t.match(summaryOf(ended), /^Successful tasks: 0\nAborted tasks: 1$/);
  await eventually('the fetch was killed', () => !isAlive(pid));
});

t.test('SIGINT while the run waits for an adhoc machine\'s SSH port: the machine is discarded, and the cut wait is no error of its own', async (t) => {
  const dir = join(t.testdir(), 'project');
  const discarded = join(dir, '..', 'discarded');
  await mkdir(join(dir, 's/a'), { recursive: true });
  // nothing listens at the address: the run waits for the port (allocate-timeout, 5 minutes)
  const spread = [
    'project: slowport', 'path: /home/slowport', 'backends:', '  cloud:', '    type: adhoc', '    allocate: ADDRESS 127.0.0.1:1',
    `    discard: echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`, '    systems: [ubuntu-1]', 'suites:', '  s/:', '    summary: s', '',
  ];
  await writeFile(join(dir, 'spread.yaml'), spread.join('\n'));
  await writeFile(join(dir, 's/a/task.yaml'), 'summary: a\nexecute: echo a\n');
  const run = runHere(t, dir);
  await eventually('the run waits for the port', () => /Waiting for cloud:ubuntu-1 to make SSH available at 127\.0\.0\.1:1/.test(run.out()), 60_000);
  run.interrupt();
  const ended = await endedWithin(run.ended, 30_000);
  t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGINT', 'an interrupted run (unsuccessful)');
  t.notMatch(run.out(), /Error preparing cloud:ubuntu-1/, 'no error line for a start the interrupt cut short');
  t.match(summaryOf(ended), /Aborted tasks: 1/);
  t.equal(await readFile(discarded, 'utf8'), '127.0.0.1:1\n', 'the machine is discarded, once');
});

t.test('SIGINT while a kept machine is taken back (--reuse) from a host that never answers SSH: the connect stops at once, the machine stays kept', async (t) => {
  // takes the TCP connection and never says a word: each SSH attempt waits out its timeout
  const silent: Socket[] = [];
  const host = createServer((socket) => silent.push(socket));
  host.listen(0, '127.0.0.1');
  await once(host, 'listening');
  t.teardown(() => {
    for (const socket of silent) socket.destroy();
    host.close();
  });
  const address = `127.0.0.1:${(host.address() as { port: number }).port}`;
  const dir = join(t.testdir(), 'project');
  await mkdir(join(dir, 's/a'), { recursive: true });
  const spread = ['project: deadhost', 'path: /home/deadhost', 'backends:', '  fleet:', '    type: ssh', '    connect-timeout: 20000', '    hosts:', `      - address: ${address}`, '    systems: [ubuntu-1]', 'suites:', '  s/:', '    summary: s', ''];
  await writeFile(join(dir, 'spread.yaml'), spread.join('\n'));
  await writeFile(join(dir, 's/a/task.yaml'), 'summary: a\nexecute: echo a\n');
  const kept = { backend: 'fleet', system: 'ubuntu-1', address };
  await writeFile(join(dir, '.fleetcache-reuse.json'), JSON.stringify({ machines: [kept] }));
  const run = runHere(t, dir, { reuse: true });
  await eventually('the reuse connect reached the host', () => silent.length > 0 && /Reusing fleet:ubuntu-1 at /.test(run.out()), 60_000);
  const sent = Date.now();
  run.interrupt();
  const ended = await endedWithin(run.ended, 15_000);
  t.not(ended, 'waiting', `the run ended ${Date.now() - sent} ms after the signal, not when the connect's 20 s timeout would have`);
  t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGINT', 'an interrupted run (unsuccessful)');
  t.notMatch(run.out(), /Cannot reuse fleet:ubuntu-1|Error preparing fleet:ubuntu-1/, 'no failure of the machine, nor of the start, for a connect the interrupt cut short');
  t.match(summaryOf(ended), /Aborted tasks: 1/);
  t.same((JSON.parse(await readFile(join(dir, '.fleetcache-reuse.json'), 'utf8')) as { machines: unknown[] }).machines, [kept], 'the machine stays kept');
});
