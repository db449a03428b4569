// A test file killed before its end (tap's SIGALRM for a timeout, after which its async
// teardowns never finish; SIGINT from a developer's Ctrl-C, after which none runs) still
// stops the processes it started and unmounts what it mounted (undoAtExit in processes.ts).
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { isAlive, rememberProcess, SOURCE_LOADER, stopWithTest, treeModule } from './processes.js';
import { eventually } from './wait.js';

for (const signal of ['SIGALRM', 'SIGINT'] as const) t.test(`killed by ${signal}: its server process is stopped and its tmpfs unmounted`, async (t) => {
  // Outside tap's reach: no TAP_* variables and no loader hooks, as if run by a runner of its own.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TAP')));
  const child = spawn(process.execPath, [...SOURCE_LOADER, fileURLToPath(treeModule('test/helpers/fixtures/abandoned'))], {
    env: { ...env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  stopWithTest(t, child, 'SIGKILL');
  const made = await new Promise<{ pid: number; mount?: string; data: string }>((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /^MADE (.*)$/m.exec(err);
      if (m) resolve(JSON.parse(m[1]!) as { pid: number; mount?: string; data: string });
    });
    child.once('exit', () => reject(new Error(`the fixture ended before making anything: ${err}`)));
  });
  const server = rememberProcess(made.pid);
  t.teardown(() => {
    // Only if the check below failed: what the fixture left.
    server.kill('SIGKILL');
    rmSync(made.data, { recursive: true, force: true });
  });
  t.ok(isAlive(made.pid), 'the server runs');
  const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  process.kill(child.pid!, signal);
  t.equal(await exited, signal, 'the fixture died of the signal');
  await eventually('the server process is stopped', () => !isAlive(made.pid), 5000);
  t.pass('the server process is stopped');
  if (made.mount) t.notMatch(readFileSync('/proc/mounts', 'utf8'), made.mount, 'the tmpfs is unmounted');
});
