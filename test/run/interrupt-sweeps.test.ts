// `fleetcache run` interrupted while it sweeps what a script whose connection was lost left on
// its ssh machine, where the machine takes the sweep and never ends it: the run's SIGINT cuts
// the sweep short, before the machine is kept (--reuse) as before it is discarded, and as a
// --reuse run takes back a machine whose record lists lost scripts; and so does an --abend
// failure on another machine, before a machine is kept. The runs run in the test's process
// (run-here.ts), which the test signals.
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineRecord } from '../../src/backends/backend.js';
import { REUSE_FILE, ReusePool } from '../../src/run/reuse.js';
import { isAlive } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { halfOpenRelay, type HalfOpenRelay } from '../helpers/half-open-relay.js';
import { startSshd } from '../ssh/sshd.js';
import { leavingScript, leftPids, wroteLines } from '../ssh/leaving-script.js';
import { endedWithin, runHere } from './run-here.js';

/**
 * How soon after the SIGINT the run must have ended: a killed command's channel may take the
 * client's kill grace (5 s) to close. Far under the 30 s a sweep runs when nothing cuts it
 * (SWEEP_TIMEOUT_MS, src/ssh/client.ts), which a sweep deaf to the interrupt takes.
 */
const STOPPED_WITHIN_MS = 15_000;

/**
 * A one-job project on an ssh host (a real sshd) reached through a HalfOpenRelay, whose every
 * command hangs once the file `hang` exists (its shell's PID appended to `hung`); the execute
 * leaves sleeps (their PIDs in `pids`) and sleeps on.
 */
async function hangingHost(t: Test): Promise<{ dir: string; hang: string; hung: string; pids: string; relay: HalfOpenRelay }> {
  const base = t.testdir();
  const hang = join(base, 'hang');
  const hung = join(base, 'hung');
  // files go through a shell: the forced command stands for every command, sftp's too
  const sshd = await startSshd(t, join(base, 'sshd'), { sftp: false, config: [`ForceCommand if [ -e ${hang} ]; then echo $$ >> ${hung}; exec sleep 300; fi; eval "$SSH_ORIGINAL_COMMAND"`] });
  const relay = await halfOpenRelay(t, sshd.port);
  const dir = join(base, 'project');
  const pids = join(base, 'execute.pids');
  await mkdir(join(dir, 'tests', 'one'), { recursive: true });
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: |\n  ${leavingScript(pids)}\n  sleep 300\n`);
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: sweeps\npath: ${join(base, 'remote-project')}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${relay.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12]\nsuites:\n  tests/:\n    summary: one\n`,
  );
  return { dir, hang, hung, pids, relay };
}

/** SIGINT to `run` once the hanging host took a command (`hung`); resolves when the run ended (or gave up waiting), with how long after the SIGINT and the signal that stopped it. */
async function interrupt(t: Test, run: ReturnType<typeof runHere>, hung: string): Promise<{ took: number; stopped: NodeJS.Signals | undefined | 'waiting'; out: string }> {
  await eventually('the sweep reached the machine', () => wroteLines(hung), 30_000);
  leftPids(t, hung);
  run.interrupt();
  const interrupted = Date.now();
  const ended = await endedWithin(run.ended, 45_000);
  return { took: Date.now() - interrupted, stopped: ended === 'waiting' ? ended : ended.result?.interrupted, out: run.out() };
}

/**
 * A run (`args`) of the hanging host's job, whose execute loses its connection while every
 * command the machine is given from then on (the sweep's) hangs; SIGINT once the sweep reached
 * the machine. Returns when the run ended (or gave up waiting) with how long after the SIGINT,
 * what it printed, and the sleeps left.
 */
async function interruptedSweep(t: Test, reuse: boolean): Promise<{ dir: string; took: number; stopped: NodeJS.Signals | undefined | 'waiting'; out: string; left: number[] }> {
  const { dir, hang, hung, pids, relay } = await hangingHost(t);
  const run = runHere(t, dir, { reuse });
  await eventually('the execute started both sleeps', () => wroteLines(pids, 2), 60_000);
  const left = leftPids(t, pids);
  await writeFile(hang, '');
  relay.cut(); // the machine never sees the connection drop: the execute and its sleeps run on
  return { dir, left, ...(await interrupt(t, run, hung)) };
}

t.test('--reuse: SIGINT cuts the sweep before a machine is kept; the machine is kept with its lost script on record', async (t) => {
  const { dir, took, stopped, out, left } = await interruptedSweep(t, true);
  t.ok(took < STOPPED_WITHIN_MS, `the run ended ${took} ms after the interrupt`);
  t.equal(stopped, 'SIGINT', 'an interrupted run fails');
  t.match(out, /Keeping lab:debian-12 at 127\.0\.0\.1:\d+\n/, 'the machine is kept');
  t.match(out, /WARNING: .* may still run the processes of a script whose connection was lost: they could not be stopped: the run was interrupted\n/);
  t.ok(left.every(isAlive), 'the cut sweep killed nothing');
  const [record] = (JSON.parse(await readFile(join(dir, REUSE_FILE), 'utf8')) as { machines: MachineRecord[] }).machines;
  t.equal(record?.lostScripts?.length, 1, 'the lost execute is on record, for the next --reuse run to stop');
});

t.test('SIGINT cuts the sweep at the discard of a machine whose lost script runs on', async (t) => {
  const { took, stopped, out, left } = await interruptedSweep(t, false);
  t.ok(took < STOPPED_WITHIN_MS, `the run ended ${took} ms after the interrupt`);
  t.equal(stopped, 'SIGINT', 'an interrupted run fails');
  t.match(out, /Discarding lab:debian-12/, 'the machine is discarded');
  t.match(out, /whose connection was lost could not be stopped: .*: the run was interrupted\n/);
  t.ok(left.every(isAlive), 'the cut sweep killed nothing');
});

t.test('--reuse: SIGINT cuts the sweep of what a kept machine\'s record says its lost scripts left, as the run takes it back; it stays kept, its record whole', async (t) => {
  const { dir, hang, hung, relay } = await hangingHost(t);
  // kept by an earlier run that could not stop its lost script: the first command the machine
  // is given is the sweep of that script's processes, and it never ends
  const record: MachineRecord = { backend: 'lab', system: 'debian-12', address: `127.0.0.1:${relay.port}`, lostScripts: ['lost-in-an-earlier-run'] };
  const pool = await ReusePool.load(dir);
  pool.keep(record);
  await pool.save();
  await writeFile(hang, '');
  const run = runHere(t, dir, { reuse: true });
  const { took, stopped, out } = await interrupt(t, run, hung);
  t.ok(took < STOPPED_WITHIN_MS, `the run ended ${took} ms after the interrupt`);
  t.equal(stopped, 'SIGINT', 'an interrupted run fails');
  t.match(out, /Reusing lab:debian-12 at 127\.0\.0\.1:\d+\.\.\./, 'the kept machine is being taken back');
  t.notMatch(out, /Cannot reuse/, 'the interrupt is no failure of the machine');
  t.same((JSON.parse(await readFile(join(dir, REUSE_FILE), 'utf8')) as { machines: MachineRecord[] }).machines, [record], 'the machine stays kept, its lost script on record for the next --reuse run to stop');
});

t.test('--reuse --abend: a failure on another machine cuts the sweep before a machine is kept, and its WARNING says the run stopped at it', async (t) => {
  const base = t.testdir();
  const at = (name: string): string => join(base, name);
  // host a: the command after the one that made `failnext` fails (the job's own kill, a command
  // of its own as the job has no restore: the job stays to be swept), and every later one (that
  // sweep, before the machine is kept) hangs; host b answers once a's sweep hangs (its project
  // path is a's too), then its job fails
  const a = await startSshd(t, at('sshd-a'), {
    sftp: false,
    config: [`ForceCommand if [ -e ${at('hang')} ]; then echo $$ >> ${at('hung')}; exec sleep 300; fi; if [ -e ${at('failnext')} ]; then rm ${at('failnext')}; touch ${at('hang')}; exit 1; fi; eval "$SSH_ORIGINAL_COMMAND"`],
  });
  const b = await startSshd(t, at('sshd-b'), { sftp: false, config: [`ForceCommand for i in $(seq 600); do [ -e ${at('hung')} ] && break; sleep 0.1; done; eval "$SSH_ORIGINAL_COMMAND"`] });
  const dir = at('project');
  await mkdir(join(dir, 'tests', 'a'), { recursive: true });
  await mkdir(join(dir, 'tests', 'b'), { recursive: true });
  await writeFile(join(dir, 'tests', 'a', 'task.yaml'), `summary: a\nbackends: [a]\nexecute: |\n  touch ${at('failnext')}\n`);
  await writeFile(join(dir, 'tests', 'b', 'task.yaml'), `summary: b\nbackends: [b]\nexecute: |\n  touch ${at('failing')}\n  exit 1\n`);
  const host = (name: string, port: number, key: string) => `  ${name}:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${port}\n        key: ${key}\n    systems: [debian-12]\n`;
  await writeFile(join(dir, 'spread.yaml'), `project: sweeps\npath: ${at('remote-project')}\nbackends:\n${host('a', a.port, a.keyPath)}${host('b', b.port, b.keyPath)}suites:\n  tests/:\n    summary: two\n`);
  const run = runHere(t, dir, { reuse: true, abend: true });
  await eventually('the sweep before a is kept reached it', () => wroteLines(at('hung')), 60_000);
  leftPids(t, at('hung'));
  await eventually("b's job failed", () => existsSync(at('failing')), 60_000);
  const failed = Date.now();
  const ended = await endedWithin(run.ended, 45_000);
  const took = Date.now() - failed;
  const out = run.out();
  t.ok(took < STOPPED_WITHIN_MS, `the run ended ${took} ms after the failure`);
  t.equal(ended !== 'waiting' && ended.result?.tally.ok, false, 'the run fails');
  t.match(out, /Keeping a:debian-12 at 127\.0\.0\.1:\d+\n/, 'a is kept');
  t.match(out, /WARNING: a:debian-12 at .* may still run the processes of a script whose connection was lost: they could not be stopped: the run stopped at a failure \(-abend\)\n/);
  t.notMatch(out, /the run was interrupted/, 'no interrupt is reported');
  t.match(out, /Keeping b:debian-12 at 127\.0\.0\.1:\d+ \(-abend\)\n/, 'b is kept for inspection');
  const records = (JSON.parse(await readFile(join(dir, REUSE_FILE), 'utf8')) as { machines: MachineRecord[] }).machines;
  t.equal(records.find((r) => r.backend === 'a')?.lostJobs?.length, 1, "a's job is on record, for the next --reuse run to stop what it left");
});
