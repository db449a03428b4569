// A real cache (one process, and a primary with two workers) killed (SIGKILL, by PID) at
// seeded random moments under concurrent fills, evictions (a small --max-size), uploads
// through it and an upstream that cuts some bodies mid-stream. Nothing served, during the
// load or after a restart, differs from the object; after each restart every body on disk
// is whole (a blob hashes to its name, a name's body has its sidecar and size), nothing
// half written is left, and the index counts exactly the bodies on disk.
// FLEETCACHE_CRASH_SEED replays a run.
import { createHash } from 'node:crypto';
import { readFileSync, statfsSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { filesUnder, seeded } from '../helpers/crash.js';
import { isAlive, startServerProcess, type RunningServer } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

const SIZES = [1, 4096, 20_000, 300_000, 1_500_000];
const MAX_SIZE = 4 * 1024 * 1024;
/** Objects not on disk that a check after a restart GETs: fills of the restarted cache. */
const MISSES_CHECKED = 4;
/** Every wait bounded: a request that waits longer gave up (taken as a failed request). */
const BOUNDED = { headersTimeout: 5000, bodyTimeout: 5000 };

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** `crashes`: the cache killed (its primary, by SIGKILL) and restarted that many times. */
async function crashTest(t: Test, workers: number, crashes: number): Promise<void> {
  const { seed, random, pick, bytes } = seeded(t);
  const { up, upUrl } = await startUpstream(t);
  // Blobs, and names whose bodies the test knows by path.
  const known = new Map<string, string>();
  for (let i = 0; i < 30; i++) {
    const body = bytes(pick(SIZES));
    const hex = sha256(body);
    up.objects.set(`/cas/sha256/${hex}`, { body, headers: { etag: `"sha256:${hex}"` } });
    known.set(`/cas/sha256/${hex}`, hex);
  }
  for (let i = 0; i < 20; i++) {
    const body = bytes(pick(SIZES));
    const p = `/artifacts/crash/job/f-${i}.bin`;
    up.objects.set(p, { body, headers: { etag: `"a-${i}"`, 'cache-control': 'public, no-cache' } });
    known.set(p, sha256(body));
  }
  // One GET in five is cut mid-body, its length stated or chunked: upstream dies mid-stream.
  up.handler = (req, res) => {
    const obj = up.objects.get(req.url ?? '');
    if (req.method !== 'GET' || !obj || obj.body.length < 2 || random() >= 0.2) return false;
    const length = random() < 0.5 ? { 'content-length': String(obj.body.length) } : {};
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...length, ...obj.headers });
    res.write(obj.body.subarray(0, Math.floor(obj.body.length / 2)), () => res.socket?.destroy());
    return true;
  };

  const data = t.testdir();
  const start = (): Promise<RunningServer> => startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', data, '--workers', String(workers), '--max-size', String(MAX_SIZE)], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const poisoned: string[] = [];
  let n = 0;

  /** GETs a known object; a whole 200 body that is not the object's is poison. `signal` gives it up. */
  const get = async (url: string, p: string, signal?: AbortSignal): Promise<{ status: number; hex: string }> => {
    const res = await request(url + p, { ...BOUNDED, signal });
    const body = Buffer.from(await res.body.arrayBuffer());
    const hex = sha256(body);
    if (res.statusCode === 200 && hex !== known.get(p)) poisoned.push(`${p}: served ${body.length} bytes hashing to ${hex}`);
    return { status: res.statusCode, hex };
  };
  const load = async (url: string, signal: AbortSignal): Promise<void> => {
    if (random() < 0.15) {
      // an upload through the cache, which keeps it
      const body = bytes(pick(SIZES));
      const hex = sha256(body);
      const p = `/cas/sha256/${hex}`;
      up.objects.set(p, { body, headers: { etag: `"sha256:${hex}"` } });
      known.set(p, hex);
      const res = await request(url + p, { method: 'PUT', body, ...BOUNDED, signal });
      await res.body.dump();
      return;
    }
    n++;
    await get(url, pick([...known.keys()]), signal);
  };

  /** `size` bytes in whole blocks of the data's filesystem, one at least: what a file takes, as the index charges it (DiskStore.footprint). */
  const inBlocks = (size: number): number => {
    const { bsize } = statfsSync(data);
    return Math.max(1, Math.ceil(size / bsize)) * bsize;
  };
  /**
   * The bodies on disk and their bytes (as the index counts them: body and sidecar in whole
   * blocks), what is half written, what is not whole, and the known paths whose bodies they are.
   */
  const onDisk = (): { bodies: number; bytes: number; half: string[]; bad: string[]; paths: string[] } => {
    const files = filesUnder(data).filter((f) => f.startsWith('cas.v1') || f.startsWith('http.v1'));
    const set = new Set(files);
    const state = { bodies: 0, bytes: 0, half: [] as string[], bad: [] as string[], paths: [] as string[] };
    for (const rel of files) {
      const file = path.join(data, rel);
      const st = statSync(file, { throwIfNoEntry: false });
      if (!st) continue; // evicted while looked at
      if (path.basename(rel).startsWith('.tmp-') || (st.mode & 0o777) === 0) {
        state.half.push(rel);
        continue;
      }
      if (rel.startsWith('cas.v1')) {
        if (sha256(readFileSync(file)) !== path.basename(rel)) state.bad.push(`${rel}: not its digest`);
        state.paths.push(`/cas/sha256/${path.basename(rel)}`);
      } else if (rel.endsWith('.json')) {
        if (!set.has(rel.slice(0, -'.json'.length))) state.half.push(`${rel}: a sidecar without its body`);
        continue;
      } else if (!set.has(`${rel}.json`)) {
        state.half.push(`${rel}: a body without its sidecar`);
      } else {
        const meta = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as { size: number; key: string };
        if (meta.size !== st.size) state.bad.push(`${rel}: sidecar says ${meta.size} bytes, body has ${st.size}`);
        const p = /^GET (\/artifacts\/[^\0]*)/.exec(meta.key)?.[1];
        if (p && known.has(p) && sha256(readFileSync(file)) !== known.get(p)) state.bad.push(`${rel}: not the body of ${p}`);
        if (p) state.paths.push(p);
      }
      state.bodies++;
      state.bytes += inBlocks(st.size) + (rel.startsWith('http.v1') ? inBlocks(statSync(`${file}.json`, { throwIfNoEntry: false })?.size ?? 1) : 0);
    }
    return state;
  };
  const indexed = async (cache: RunningServer): Promise<{ bytes: number; objects: number }> =>
    ((await request(`${cache.url}/-/stats`).then((res) => res.body.json())) as { store: { bytes: number; objects: number } }).store;

  const check = async (cache: RunningServer, where: string): Promise<void> => {
    t.same(filesUnder(path.join(data, 'tmp')), [], `${where}: tmp/ is empty`);
    const { bodies, bytes, half, bad, paths } = onDisk();
    t.same(half, [], `${where}: nothing half written is left`);
    t.same(bad, [], `${where}: every body on disk is whole (${bodies} bodies)`);
    t.same(await indexed(cache), { ...(await indexed(cache)), objects: bodies, bytes }, `${where}: the index counts the bodies on disk`);
    // Every body the restart kept, a hit (a small blob is hashed first: DiskStore.smallHit),
    // and a few misses, filled by the restarted cache. Not every known object: the misses
    // were a fill round of their own (~20 MB, 5 s of CPU over the file). (A body upstream
    // cuts is cut for the client too: an error, not poison.)
    const misses = [...known.keys()].filter((p) => !paths.includes(p)).slice(0, MISSES_CHECKED);
    for (const p of [...paths, ...misses]) await get(cache.url, p).catch(() => undefined);
    t.same(poisoned, [], `${where}: every object served is whole (${paths.length} kept, ${misses.length} filled)`);
  };

  /**
   * Requests from 8 clients at once, each starting another as one ends, until the returned
   * function is called: it gives up the requests still going. A connection the primary was
   * handing to a worker killed meanwhile is never answered nor closed (node's cluster keeps
   * it): waited for, it held the test for the whole of BOUNDED.
   */
  const underLoad = (cache: RunningServer): (() => Promise<void>) => {
    const giveUp = new AbortController();
    const clients = Array.from({ length: 8 }, async () => {
      while (!giveUp.signal.aborted) await load(cache.url, giveUp.signal).catch(() => undefined);
    });
    return async () => {
      giveUp.abort();
      await Promise.all(clients);
    };
  };

  for (let round = 1; round <= crashes; round++) {
    const cache = await start();
    if (round > 1) await check(cache, `${workers} worker(s), after crash ${round - 1} (seed ${seed})`);
    const primary = cache.child.pid!;
    const pids = [primary, ...cacheWorkers(primary)];
    if (workers > 1 && round === 1) {
      // A worker killed mid-fill: the primary replaces it, removes what it left and counts what it stored.
      const stop = underLoad(cache);
      await sleep(200 + random() * 600);
      const [victim] = pids.slice(1);
      process.kill(victim!, 'SIGKILL');
      await eventually('a replacement worker', () => cacheWorkers(primary).some((p) => !pids.includes(p)), 30_000);
      pids.push(...cacheWorkers(primary).filter((p) => !pids.includes(p)));
      await stop();
      const where = `${workers} workers, a worker killed in round ${round} (seed ${seed})`;
      // (the index hears of commits in batches: its figures settle a moment later)
      let last: unknown;
      const settled = await eventually(`${where}: the index counts the bodies on disk`, async () => {
        const [index, disk] = [await indexed(cache), onDisk()];
        last = { index, disk };
        return index.objects === disk.bodies && index.bytes === disk.bytes;
      }, 5000).then(() => true, () => false);
      t.ok(settled, `${where}: the index counts the bodies on disk`, { found: last });
      t.same(poisoned, [], `${where}: every object served is whole`);
    }
    const stop = underLoad(cache);
    await sleep(300 + random() * 900);
    process.kill(primary, 'SIGKILL');
    // Workers end when their primary's channel closes: none may still write when the next one starts.
    await eventually('the cache and its workers gone', () => pids.every((pid) => !isAlive(pid)), 10_000);
    await stop();
  }
  t.ok(n > 0, `${n} GETs under load`);
  const last = await start();
  await check(last, `${workers} worker(s), after crash ${crashes} (seed ${seed})`);
  await last.stop();
}

// Twice: the second crash is of a store recovered from the first. With two workers, once:
// its one round already kills twice (a worker, then the primary), and a store recovered
// from a crash is the one-process test's; a second round cost three more processes and load.
t.test('a cache of one process killed mid-fill restarts with a whole, exactly counted store', (t) => crashTest(t, 1, 2));
t.test('a cache with two workers killed mid-fill restarts with a whole, exactly counted store', (t) => crashTest(t, 2, 1));
