// rememberProcess signals the process it was given, and nothing once that process is gone
// (its PID may be another test's process by then).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import t from 'tap';
import { isAlive, rememberProcess } from './processes.js';

t.test('a remembered process is signalled while it runs, and never after it ended', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(() => void child.kill('SIGKILL'));
  const sleeping = rememberProcess(child.pid!);
  const exited = once(child, 'exit');
  sleeping.kill('SIGTERM');
  t.same(await exited, [null, 'SIGTERM'], 'signalled while it ran');
  t.notOk(isAlive(child.pid!), 'gone');
  t.doesNotThrow(() => sleeping.kill('SIGKILL'), 'after it ended: nothing to signal, no error');
  t.doesNotThrow(() => rememberProcess(child.pid!).kill('SIGKILL'), 'one remembered after it ended: nothing either');
});
