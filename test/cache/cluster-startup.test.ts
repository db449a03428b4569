// A multi-process cache that cannot start does not hang: a worker that cannot listen (the
// port is taken) stops the cache, every worker with it, and the primary exits non-zero
// with the worker's error (exit 3). A signal while the workers start stops it cleanly too.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import t, { type Test } from 'tap';
import { cliArgs, isAlive, REPO_ROOT, stopWithTest } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers } from './harness.js';

/** `fleetcache cache --workers 2` on `listen`, and what it writes; stopped by PID in the teardown. */
function startCache(t: Test, listen: string) {
  const child = spawn(process.execPath, cliArgs(['cache', '--upstream', 'http://127.0.0.1:1', '--listen', listen, '--data', t.testdir(), '--workers', '2']), {
    cwd: REPO_ROOT, env: { ...process.env, FLEETCACHE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  stopWithTest(t, child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** The PIDs of the two workers, once both are forked. */
async function workersOf(pid: number): Promise<number[]> {
  let pids: number[] = [];
  await eventually('two workers forked', () => (pids = cacheWorkers(pid)).length === 2, 30_000);
  return pids;
}

t.test('a port in use: the cache exits non-zero, naming the address, its workers stopped', async (t) => {
  const taken: Server = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const { port } = taken.address() as { port: number };
  const cache = startCache(t, `127.0.0.1:${port}`);
  const workers = await workersOf(cache.child.pid!);
  await eventually('the cache exits', () => cache.child.exitCode !== null || cache.child.signalCode !== null, 30_000);
  const code = await cache.exited;
  t.equal(code, 3, 'exit 3, by itself');
  t.match(cache.stderr(), new RegExp(`fleetcache: error: cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use by another process \\(EADDRINUSE\\)\n`), 'the error names the address and why');
  t.notMatch(cache.stdout(), /listening/, 'never announced');
  for (const pid of workers) t.notOk(isAlive(pid), `worker ${pid} stopped`);
});

t.test('SIGTERM while the workers start: the cache stops cleanly, exit 0', async (t) => {
  const cache = startCache(t, '127.0.0.1:0');
  const workers = await workersOf(cache.child.pid!);
  process.kill(cache.child.pid!, 'SIGTERM');
  t.equal(await cache.exited, 0, 'exit 0');
  t.notMatch(cache.stdout(), /listening/, 'stopped before the workers listened');
  for (const pid of workers) t.notOk(isAlive(pid), `worker ${pid} stopped`);
});
