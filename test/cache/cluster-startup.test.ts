// A multi-process cache that cannot start does not hang: a worker that cannot listen (the
// port is taken) stops the cache, every worker with it, and the primary exits non-zero
// with the worker's error (exit 3), as does a worker whose code does not load, and a
// temporary directory too long for the workers' sockets (before anything starts). A signal
// while the workers start stops it cleanly too.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:net';
import t, { type Test } from 'tap';
import { isAlive, rememberProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers } from './harness.js';
import { spawnWorkersCache } from './spawn-workers-cache.js';

/** The PIDs of the two workers, once both are forked. */
async function workersOf(pid: number): Promise<number[]> {
  let pids: number[] = [];
  await eventually('two workers forked', () => (pids = cacheWorkers(pid)).length === 2, 30_000);
  return pids;
}

t.test('a port in use: the cache exits non-zero, naming the address, before any worker starts', async (t) => {
  const taken: Server = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const { port } = taken.address() as { port: number };
  const tmp = mkdtempSync(join(tmpdir(), 'fc-port-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const data = join(t.testdir(), 'data');
  const cache = spawnWorkersCache(t, `127.0.0.1:${port}`, data, [], { TMPDIR: tmp, FLEETCACHE_LOG_LEVEL: 'info' });
  const code = await cache.exited;
  const pids = new Set([...cache.stderr().matchAll(/"pid":(\d+)/g)].map((m) => Number(m[1])));
  t.same([...pids], [cache.child.pid], 'every line logged by the primary: no worker started');
  t.equal(code, 3, 'exit 3, by itself');
  t.match(cache.stderr(), new RegExp(`fleetcache: error: cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use by another process \\(EADDRINUSE\\)\n`), 'the error names the address and why');
  t.notMatch(cache.stdout(), /listening/, 'never announced');
  t.same(readdirSync(tmp), [], 'its socket directory removed');
  t.ok(existsSync(data), 'the data directory is made (the port is tried once the store is open)');
});

t.test("a temporary directory too long for the workers' socket paths: exit 3, naming the path and what to do, nothing started", async (t) => {
  // A directory whose own path already takes the 108 bytes of a Unix socket's path on Linux (sun_path)
  const base = t.testdir();
  const tmp = join(base, 'x'.repeat(Math.max(1, 108 - base.length)));
  mkdirSync(tmp);
  const data = join(base, 'data');
  const cache = spawnWorkersCache(t, '127.0.0.1:0', data, [], { TMPDIR: tmp });
  t.equal(await cache.exited, 3, 'exit 3, a configuration error');
  const said = cache.stderr();
  t.ok(said.includes(`fleetcache: error: the cache workers' sockets would be at ${tmp}/fleetcache-cache-<pid>-XXXXXX/w1.sock, up to `), `the error names the sockets' path: ${said}`);
  t.match(said, /, longer than the \d+ bytes a Unix socket path may have: set TMPDIR to a directory whose path is at most \d+ bytes long/, 'its length and what to do');
  t.notMatch(said, /EADDRINUSE|port/, 'no word of a port');
  t.notMatch(cache.stdout(), /listening/, 'never announced');
  t.same(readdirSync(tmp).filter((name) => name.startsWith('fleetcache-')), [], 'no socket directory made');
  t.notOk(existsSync(data), 'the data directory untouched');
});

t.test('SIGTERM while the workers start: the cache stops cleanly, exit 0', async (t) => {
  const cache = spawnWorkersCache(t, '127.0.0.1:0', t.testdir());
  const workers = await workersOf(cache.child.pid!);
  process.kill(cache.child.pid!, 'SIGTERM');
  t.equal(await cache.exited, 0, 'exit 0');
  t.notMatch(cache.stdout(), /listening/, 'stopped before the workers listened');
  for (const pid of workers) t.notOk(isAlive(pid), `worker ${pid} stopped`);
});

/**
 * Node's arguments for a load hook running `action` (module code, in an async function) in
 * each cluster worker as it is about to load the command's module (src/cli/cache.ts, or its
 * chunk dist/cli/cache-HASH.js in the bundle): before the worker's code runs.
 */
function onCommandModuleInWorkers(t: Test, action: string): string[] {
  // Not t.testdir(): startCache takes that one (and empties it) for the cache's data.
  const dir = mkdtempSync(join(tmpdir(), 'fleetcache-hooks-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'hooks.mjs'), `export async function load(url, context, next) {\n  if (/\\/cli\\/cache(-[0-9A-Z]+)?\\.[jt]s$/.test(url)) { ${action} }\n  return next(url, context);\n}\n`);
  // Loaded by every process; the hook only in cluster workers (FLEETCACHE_WORKER: node removes NODE_UNIQUE_ID before --import runs).
  writeFileSync(join(dir, 'register.mjs'), "import { register } from 'node:module';\nif (process.env.FLEETCACHE_WORKER) register('./hooks.mjs', import.meta.url);\n");
  return ['--import', join(dir, 'register.mjs')];
}

// As when a worker starts while dist/ is being rebuilt: the command's module (src/cli/cache.ts,
// or its chunk dist/cli/cache-HASH.js in the bundle) throws on load,
// main() reports it and sets the exit code, and the worker's IPC channel kept it alive.
t.test('a worker whose command module does not load: the cache exits non-zero, never hangs', async (t) => {
  const cache = spawnWorkersCache(t, '127.0.0.1:0', t.testdir(), onCommandModuleInWorkers(t, "throw new Error('simulated half-written module');"));
  await eventually('the cache exits', () => cache.child.exitCode !== null || cache.child.signalCode !== null, 30_000);
  t.not(await cache.exited, 0, cache.stderr());
  t.match(cache.stderr(), /simulated half-written module/, 'the worker said why');
  t.match(cache.stderr(), /cache worker \d+ exited \(code \d+\) before listening/, 'the primary says which worker');
  t.equal(cache.stdout(), '', 'never announced');
  t.same(cacheWorkers(cache.child.pid!), [], 'no worker left');
});

// The primary killed (SIGKILL: no stop for its workers) while its workers still load their
// modules. The hook holds each worker's command module until the primary is gone (the
// worker's parent changed), at most 30 s; the worker must then stop rather than run on,
// orphaned. Node's cluster ends a worker whose channel closes unexpectedly (a 'disconnect'
// listener of its own, there before any of ours), and one that ran on would fail to listen
// (the primary hands out the port): fleetcache adds no guard of its own.
t.test('a primary killed while its workers load their modules: the workers stop', async (t) => {
  const hold = 'const parent = process.ppid; const until = Date.now() + 30_000; while (process.ppid === parent && Date.now() < until) await new Promise((r) => setTimeout(r, 20));';
  const cache = spawnWorkersCache(t, '127.0.0.1:0', t.testdir(), onCommandModuleInWorkers(t, hold));
  const workers = await workersOf(cache.child.pid!);
  for (const pid of workers) {
    const worker = rememberProcess(pid);
    t.teardown(() => worker.kill('SIGKILL'));
  }
  process.kill(cache.child.pid!, 'SIGKILL');
  await cache.exited;
  await eventually('the orphaned workers stop', () => workers.every((pid) => !isAlive(pid)), 20_000);
  t.pass(`workers ${workers.join(', ')} stopped`);
});
