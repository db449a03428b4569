// Whether a process runs, for the records a process killed outright leaves behind: a zombie
// (exited, not reaped by its parent) runs no more than a process that is gone.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { isAlive, isRunning, removeLeftoversOfDeadPids, startTimeOf } from '../src/pid-alive.js';
import { stopWithTest } from './helpers/processes.js';
import { eventually } from './helpers/wait.js';

/** Whether `pid` is a zombie, as ps tells it: read apart from the code under test. */
function zombieByPs(pid: number): boolean {
  return spawnSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).stdout.trim().startsWith('Z');
}

t.test('a zombie is not alive: its PID answers signal 0, but it runs nothing', async (t) => {
  // sh starts a sleep in the background and prints its PID, then becomes a sleep (exec) that
  // never reaps a child: the first sleep, killed once the exec is done, stays a zombie
  const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 31'], { stdio: ['ignore', 'pipe', 'inherit'] });
  stopWithTest(t, parent, 'SIGKILL');
  const line = await new Promise<string>((resolve) => parent.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString())));
  const zombie = Number(line.trim());
  // the first sleep, should the test end before it is killed
  t.teardown(() => void (isAlive(zombie) && process.kill(zombie, 'SIGKILL')));
  await eventually('sh becomes the sleep', () => readFileSync(`/proc/${parent.pid}/cmdline`, 'utf8') === 'sleep\u000031\u0000');
  process.kill(zombie, 'SIGKILL');
  // a zombie (by ps): it runs no more, yet it is not reaped
  await eventually(`process ${zombie} ends unreaped`, () => zombieByPs(zombie));
  t.doesNotThrow(() => process.kill(zombie, 0), 'signal 0 still reaches its PID');
  t.notOk(isAlive(zombie), 'not alive');
  t.notOk(isRunning(zombie, startTimeOf(zombie)), 'not running, with its own start time');
  t.ok(isAlive(parent.pid!), 'its parent, asleep, is alive');

  const dir = t.testdir();
  const anHourAgo = new Date(Date.now() - 3_600_000);
  for (const pid of [zombie, parent.pid!]) {
    mkdirSync(join(dir, String(pid)));
    utimesSync(join(dir, String(pid)), anHourAgo, anHourAgo); // past LEFTOVER_IDLE_MS
  }
  removeLeftoversOfDeadPids(dir, Number);
  t.notOk(existsSync(join(dir, String(zombie))), 'what the zombie left is removed');
  t.ok(existsSync(join(dir, String(parent.pid))), 'what a live process left is kept');
});

t.test('only a positive integer names a process: 0 and -1 are groups to kill(2), which signal 0 finds alive', async (t) => {
  t.doesNotThrow(() => process.kill(0, 0), "signal 0 to 0 reaches this process's own group");
  for (const pid of [0, -0, -1, -process.pid, Number(''), Number.NaN, 1.5]) t.notOk(isAlive(pid), `${pid} is not a process that runs`);
  t.ok(isAlive(process.pid), 'this process is');
});
