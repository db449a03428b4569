// `fleetcache cache --workers 2`: a fill whose answer is not kept (upstream said no-store)
// stays in its worker's map after its end until its cleanup is over (the unlink of its
// claim's hard link, awaited). strace, attached to the workers' threads but their main ones
// (the claim itself is unlinked synchronously on the main thread, which must go on), delays
// the unlinks of the libuv threadpool, and so holds that one; a request arriving then on the same connection (so, the same worker)
// must go upstream, not be served the ended answer from memory (RFC 9111 §5.2.2.5).
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Client } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { attachStrace } from '../helpers/strace.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

/** unlink's and unlinkat's numbers, as /proc/<tid>/syscall gives them. */
const UNLINKS = ({ x64: [87, 263], arm64: [35] } as Record<string, number[]>)[process.arch];
/** How long strace holds an unlink at most: the test lets it go (detaches) once its request is answered. */
const HOLD_US = 20_000_000;

/** The threads of `pids` but their main ones (where a libuv threadpool's are: Node 20 does not name them). */
function offMainThreads(pids: readonly number[]): number[] {
  return pids.flatMap((pid) => readdirSync(`/proc/${pid}/task`).map(Number).filter((tid) => tid !== pid));
}

/** Whether one of `tids` is held by strace on entering an unlink. */
function heldInUnlink(tids: readonly number[]): boolean {
  return tids.some((tid) => {
    try {
      const stopped = /^State:\s+t/m.test(readFileSync(`/proc/${tid}/status`, 'utf8'));
      return stopped && UNLINKS!.includes(Number(readFileSync(`/proc/${tid}/syscall`, 'utf8').split(' ')[0]));
    } catch {
      return false;
    }
  });
}

t.test('two workers: a request arriving after a no-store fill ended, before its cleanup is over, goes upstream', { skip: UNLINKS === undefined ? `no unlink numbers for ${process.arch}` : false }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const name = '/artifacts/r/j/private-log';
  const warm = '/artifacts/r/j/warm';
  for (const n of [name, warm]) up.objects.set(n, { body: Buffer.from(`answer of ${n}`), headers: { 'cache-control': 'no-store' } });
  const data = path.join(t.testdir(), 'data');
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', data, '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  // One connection: every request below meets the same worker.
  const client = new Client(cache.url, { pipelining: 1 });
  t.teardown(() => client.close());
  const get = async (p: string): Promise<string> => {
    const res = await client.request({ path: p, method: 'GET' });
    await res.body.dump();
    t.equal(res.statusCode, 200, `${p} answered`);
    return String(res.headers['x-cache']);
  };
  await get(warm); // the worker's threadpool is up, its first fill's cleanup done

  const workers = cacheWorkers(cache.child.pid!);
  t.equal(workers.length, 2, 'two workers');
  const pool = offMainThreads(workers);
  // not in t.testdir(): strace writes there until it is stopped
  const traceDir = mkdtempSync(path.join(tmpdir(), 'fleetcache-strace-'));
  t.teardown(() => rmSync(traceDir, { recursive: true, force: true }));
  const detach = await attachStrace(t, pool, path.join(traceDir, 'trace'), ['-e', 'trace=unlink,unlinkat', '-e', `inject=unlink,unlinkat:delay_enter=${HOLD_US}`], true);

  t.not(await get(name), 'COLLAPSED', 'the first request fills');
  t.equal(up.count(name), 1, 'one request upstream');
  await eventually('the fill\'s cleanup held in its unlink', () => heldInUnlink(pool), 10_000);
  t.not(await get(name), 'COLLAPSED', 'not served the ended, unkept answer from memory');
  t.equal(up.count(name), 2, 'the second request went upstream');
  await detach();
});
