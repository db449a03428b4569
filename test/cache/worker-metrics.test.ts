// /-/metrics of a multi-process cache across worker deaths: the counters of the dead
// workers stay in the sums (Prometheus would take a drop for a reset), but the figures the
// primary's index holds for the whole cache (evictions) are not added up once per death, and
// the start time stays the primary's. A cache of workers costs three process starts and more
// for each replacement: the tests share one where what they count cannot mix.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { request } from 'undici';
import { rememberProcess, startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers, fetchHash, metricSum, startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

/** The value of a Prometheus metric's one series (the first with the label `having`) in the cache's /-/metrics (-1 when absent). */
async function metric(url: string, name: string, having = ''): Promise<number> {
  const text = await (await request(`${url}/-/metrics`)).body.text();
  const line = text.split('\n').find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(having));
  return line === undefined ? -1 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

// One cache for both subtests (its workers killed four times within the minute: the fifth
// would stop it); the counts first, while nothing was served yet.
t.test('a cache of two workers that keeps 1 MiB', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const before = Math.floor(Date.now() / 1000) - 1;
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', t.testdir(), '--workers', '2', '--max-size', '1MiB'], { FLEETCACHE_LOG_LEVEL: 'error' });
  const primary = cache.child.pid!;

  // (once two subtests with a cache each: small misses, and large misses, their hits (by sendfile) and refused requests)
  await t.test('what dead workers counted since the last scrape (bytes served, misses, error answers, sendfile bytes) is in /-/metrics, as in /-/stats', async (t) => {
    const workers = cacheWorkers(primary);
    const served = (): Promise<number> => metric(cache.url, 'fleetcache_cache_bytes_served_total');
    const badDigest = (): Promise<number> => metric(cache.url, 'fleetcache_cache_errors_total', 'code="FC_ERR_BAD_DIGEST"');
    t.equal(await served(), -1, 'scraped before any request: nothing served yet');
    t.equal(await badDigest(), -1, 'scraped before any request: no error yet');
    const small = Array.from({ length: 8 }, () => up.addBlob(4096));
    for (const b of small) t.equal((await fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true })).hash, b.hex, 'a miss');
    // Large enough for sendfile (past the first 64 KiB of a hit), each asked again at once: within the 1 MiB kept.
    const largeSize = 256 * 1024;
    const large = Array.from({ length: 4 }, () => up.addBlob(largeSize));
    for (const b of large) {
      for (const pass of ['miss', 'hit']) t.equal((await fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true })).hash, b.hex, pass);
    }
    const refused = 6;
    for (let i = 0; i < refused; i++) t.equal((await fetchHash(`${cache.url}/cas/sha256/not-a-digest-${i}`, {}, { fresh: true })).status, 400, 'refused by the cache itself');
    const bytes = 8 * 4096 + 2 * 4 * largeSize;
    const misses = small.length + large.length;
    const stats = async (): Promise<{ bytesServed: number; misses: number }> => ((await (await request(`${cache.url}/-/stats`)).body.json()) as { total: { bytesServed: number; misses: number } }).total;
    // an answer is counted once its last write is done, which can come after the client read it
    await eventually('every answer in /-/stats', async () => (await stats()).bytesServed === bytes);
    t.equal((await stats()).misses, misses, 'every miss in /-/stats');
    // With no scrape since the first: each /-/stats has every worker report its counts, its
    // registry's after its tallies (cluster/link.ts flush); the next one comes after those.
    await stats();
    for (const pid of workers) rememberProcess(pid).kill('SIGKILL');
    await eventually('both replaced', () => cacheWorkers(primary).filter((p) => !workers.includes(p)).length === 2, 30_000);
    await eventually('the replacements listen', async () => (await stats().catch(() => undefined)) !== undefined, 10_000);
    t.equal((await stats()).bytesServed, bytes, '/-/stats keeps the dead workers\' bytes');
    t.equal(await served(), bytes, 'and so does /-/metrics');
    t.equal(await metric(cache.url, 'fleetcache_cache_misses_total'), misses, 'and their misses');
    t.equal(await badDigest(), refused, 'the dead workers\' error answers');
    t.ok((await metric(cache.url, 'fleetcache_sendfile_bytes_total')) > 0, 'the bytes their hits sent by sendfile');
  });

  await t.test("two workers killed in turn: the evictions in /-/metrics stay those of the index; fleetcache_process_start_time_seconds is the primary's start, one series, kept when its workers are replaced", async (t) => {
    const started = (): Promise<number> => metricSum(cache.url, 'fleetcache_process_start_time_seconds');
    const start = await started();
    t.ok(start >= before && start <= Date.now() / 1000 + 1, `${start}: when the cache started, once (not summed over its workers)`);
    const stats = async (): Promise<{ evictedObjects: number; evictedBytes: number }> => ((await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { evictedObjects: number; evictedBytes: number } }).store;
    const evictedBefore = (await stats()).evictedObjects;
    const blobs = Array.from({ length: 8 }, () => up.addBlob(256 * 1024));
    for (const b of blobs) t.equal((await fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true })).hash, b.hex, 'a miss');
    await eventually('evictions made room', async () => (await stats()).evictedObjects >= evictedBefore + 4, 10_000);
    const evicted = (await stats()).evictedObjects;
    const evictedMetric = (): Promise<number> => metric(cache.url, 'fleetcache_cache_evicted_objects_total');
    await eventually('every worker heard of the evictions', async () => (await evictedMetric()) === evicted, 5000);
    await sleep(1100); // a worker started now starts a second later than the cache
    // Killed one after the other, each once scraped: each death keeps its counters as last scraped.
    for (const victim of cacheWorkers(primary)) {
      const others = cacheWorkers(primary).filter((p) => p !== victim);
      rememberProcess(victim).kill('SIGKILL');
      await eventually('replaced', () => cacheWorkers(primary).filter((p) => p !== victim && !others.includes(p)).length === 1, 30_000);
      await eventually('the replacement listens and scrapes', async () => (await evictedMetric().catch(() => -1)) >= 0, 10_000);
    }
    t.equal((await stats()).evictedObjects, evicted, 'no eviction since');
    t.equal(await evictedMetric(), evicted, 'the objects the index evicted, once');
    t.equal(await metric(cache.url, 'fleetcache_cache_evicted_bytes_total'), (await stats()).evictedBytes, 'and their bytes (the index\'s: those of the first subtest too)');
    t.equal(await started(), start, 'the same start once every first worker was replaced');
  });
});

// In this process (a cache of one process is one fastify app): its start is this process's.
t.test("fleetcache_process_start_time_seconds: a cache of one process has it too, as the origin has", async (t) => {
  const { upUrl } = await startUpstream(t);
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const singleStart = await metricSum(url, 'fleetcache_process_start_time_seconds');
  const processStart = Date.now() / 1000 - process.uptime();
  t.ok(Math.abs(singleStart - processStart) <= 1, `${singleStart}: when the cache's process started (${processStart})`);
});
