// A runner's list of its machines (<data>/running/) names the runner by PID and start time:
// `run --discard` takes the list of a dead runner as an orphan even when another process
// has the PID now, and never the list of a runner still running.
import { spawn } from 'node:child_process';
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { isRunning, startTimeOf } from '../../src/pid-alive.js';
import { RUNNING_DIR, RunningMachines } from '../../src/run/reuse.js';
import { stopWithTest } from '../helpers/processes.js';

const machine = { backend: 'local', system: 'alpha-1', address: 'local:alpha-1' };

t.test('the start time of a process: stable, another process has another', async (t) => {
  const mine = startTimeOf(process.pid);
  t.match(mine, /^\d+$/, `from /proc (${mine})`);
  t.equal(startTimeOf(process.pid), mine, 'the same on every read');
  t.ok(isRunning(process.pid, mine), 'this process, with its start time');
  t.notOk(isRunning(process.pid, String(Number(mine) + 1)), 'the same PID with another start time is another process');
  t.ok(isRunning(process.pid, undefined), 'without a start time: the PID alone');
  const child = spawn('sleep', ['30']);
  stopWithTest(t, child, 'SIGKILL');
  await new Promise((resolve) => child.once('spawn', resolve));
  t.equal(startTimeOf(2 ** 22 + 7), undefined, 'no such process');
  t.ok(isRunning(child.pid!, startTimeOf(child.pid!)));
});

t.test('orphans: a dead runner, a reused PID; never a live runner', async (t) => {
  const data = t.testdir();
  const live = new RunningMachines(data);
  await live.add(machine);
  const [name] = await readdir(join(data, RUNNING_DIR));
  t.equal(name, `${process.pid}-${startTimeOf(process.pid)}.json`, 'named by PID and start time');
  t.same(await RunningMachines.orphans(data), { records: [], files: [] }, 'a live runner is no orphan');

  // This process's PID, another start time: a dead runner whose PID this process took.
  const reused = join(data, RUNNING_DIR, `${process.pid}-1.json`);
  await rename(join(data, RUNNING_DIR, name!), reused);
  t.same(await RunningMachines.orphans(data), { records: [machine], files: [reused] }, 'a reused PID does not keep a dead runner alive');

  // A file of an older version, by PID alone: this live PID keeps it.
  const legacy = join(data, RUNNING_DIR, `${process.pid}.json`);
  await rename(reused, legacy);
  t.same((await RunningMachines.orphans(data)).files, [], 'a PID-only name of a live PID is no orphan');
});
