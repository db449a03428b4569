// `fleetcache run` interrupted while it sweeps what a script whose connection was lost left on
// its ssh machine, where the machine takes the sweep and never ends it: the run's SIGINT cuts
// the sweep short, before the machine is kept (--reuse) as before it is discarded.
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineRecord } from '../../src/backends/backend.js';
import { REUSE_FILE } from '../../src/run/reuse.js';
import { isAlive } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { halfOpenRelay } from '../helpers/half-open-relay.js';
import { startSshd } from '../ssh/sshd.js';
import { leavingScript, leftPids } from '../ssh/leaving-script.js';
import { startRun } from './ssh-project.js';

/**
 * How soon after the SIGINT the run must have ended: a killed command's channel may take the
 * client's kill grace (5 s) to close. Far under the 30 s a sweep runs when nothing cuts it
 * (SWEEP_TIMEOUT_MS, src/ssh/client.ts), which a sweep deaf to the interrupt takes.
 */
const STOPPED_WITHIN_MS = 15_000;

/**
 * A run (`args`) of one job on an ssh host reached through a HalfOpenRelay, whose execute
 * leaves sleeps and loses its connection while every command the machine is given from then on
 * (the sweep's) hangs; SIGINT once the sweep reached the machine. Returns when the run ended
 * (or gave up waiting) with how long after the SIGINT, what it printed, and the sleeps left.
 */
async function interruptedSweep(t: Test, args: string[]): Promise<{ dir: string; took: number; code: number | null | 'waiting'; out: string; left: number[] }> {
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
  const run = startRun(t, base, dir, args);
  await eventually('the execute started both sleeps', async () => (await readFile(pids, 'utf8').catch(() => '')).trim().split('\n').length === 2, 60_000);
  const left = leftPids(t, pids);
  await writeFile(hang, '');
  relay.cut(); // the machine never sees the connection drop: the execute and its sleeps run on
  await eventually('the sweep reached the machine', () => existsSync(hung), 30_000);
  leftPids(t, hung);
  run.child.kill('SIGINT');
  const interrupted = Date.now();
  const code = await Promise.race([run.exited, new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 45_000).unref())]);
  return { dir, took: Date.now() - interrupted, code, out: run.out(), left };
}

t.test('--reuse: SIGINT cuts the sweep before a machine is kept; the machine is kept with its lost script on record', async (t) => {
  const { dir, took, code, out, left } = await interruptedSweep(t, ['--reuse']);
  t.ok(took < STOPPED_WITHIN_MS, `the run ended ${took} ms after the interrupt`);
  t.equal(code, 1, 'an interrupted run fails');
  t.match(out, /Keeping lab:debian-12 at 127\.0\.0\.1:\d+\n/, 'the machine is kept');
  t.match(out, /WARNING: .* may still run the processes of a script whose connection was lost: they could not be stopped: the run was interrupted\n/);
  t.ok(left.every(isAlive), 'the cut sweep killed nothing');
  const [record] = (JSON.parse(await readFile(join(dir, REUSE_FILE), 'utf8')) as { machines: MachineRecord[] }).machines;
  t.equal(record?.lostScripts?.length, 1, 'the lost execute is on record, for the next --reuse run to stop');
});

t.test('SIGINT cuts the sweep at the discard of a machine whose lost script runs on', async (t) => {
  const { took, code, out, left } = await interruptedSweep(t, []);
  t.ok(took < STOPPED_WITHIN_MS, `the run ended ${took} ms after the interrupt`);
  t.equal(code, 1, 'an interrupted run fails');
  t.match(out, /Discarding lab:debian-12/, 'the machine is discarded');
  t.match(out, /whose connection was lost could not be stopped: .*: the run was interrupted\n/);
  t.ok(left.every(isAlive), 'the cut sweep killed nothing');
});
