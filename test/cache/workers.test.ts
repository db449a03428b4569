// `fleetcache cache --workers 2`: two server processes on one port and one data
// directory, started as a real child process. Each object is still fetched once (a
// worker that loses the race joins the other's fill over its private socket), a body
// one worker stored is a hit in the other, the byte budget holds for the whole cache,
// an upstream that dies mid-stream aborts every waiter in both, and the figures add up.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { Agent, request } from 'undici';
import { casId } from '../../src/cache/disk-store.js';
import { isAlive, parentsByPid, startServerProcess } from '../helpers/processes.js';
import { holderOf } from '../helpers/held.js';
import { eventually } from '../helpers/wait.js';
import { blocksOf, cacheWorkers, fetchHash, metricSum, type Fetched } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

/** On a fresh connection each time (so that requests spread over both workers); a cut answer is an `error`. */
async function get(url: string, headers: Record<string, string> = {}): Promise<Fetched & { error?: string }> {
  return fetchHash(url, headers, { fresh: true }).catch((err: Error) => ({ status: 0, hash: '', size: 0, xcache: '', error: err.message }));
}

async function stats(url: string): Promise<{ total: { hits: number; misses: number; collapsed: number; bytesUpstream: number; bytesServed: number }; store: { bytes: number; objects: number; maxSize: number } }> {
  const res = await request(`${url}/-/stats`);
  return (await res.body.json()) as Awaited<ReturnType<typeof stats>>;
}

t.test('two workers share one cache', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const dir = t.testdir();
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', dir, '--workers', '2', '--max-size', '10MiB', '--fill-memory', '3MiB'], { FLEETCACHE_LOG_LEVEL: 'info' });

  await t.test('32 clients on one cold object: one upstream request, every body right', async (t) => {
    const size = 4 * 1024 * 1024; // more than a worker's fill memory (3 MiB)
    const { hex } = up.addBlob(size);
    up.options.rate = 8 * 1024 * 1024; // half a second of filling: every client arrives during it
    const results = await Promise.all(Array.from({ length: 32 }, () => get(`${cache.url}/cas/sha256/${hex}`)));
    up.options.rate = 0;
    t.equal(up.count(`/cas/sha256/${hex}`), 1, 'one upstream request for both workers');
    t.ok(results.every((r) => r.status === 200 && r.hash === hex && r.size === size), 'all 32 bodies hash right');
    t.equal(results.filter((r) => r.xcache === 'MISS').length, 1, 'one MISS');
    t.equal(results.filter((r) => r.xcache === 'COLLAPSED').length, 31, '31 COLLAPSED');
    const s = await stats(cache.url);
    t.equal(s.total.misses, 1);
    t.equal(s.total.collapsed, 31, 'joins counted once, by the worker that took the request');
    t.equal(s.total.bytesUpstream, size);
    t.equal(s.total.bytesServed, 32 * size);
  });

  await t.test('/-/stats counts every commit made before it, in whichever worker', async (t) => {
    const before = await stats(cache.url);
    const blobs = [up.addBlob(4096), up.addBlob(5000)];
    for (const b of blobs) t.equal((await get(`${cache.url}/cas/sha256/${b.hex}`)).hash, b.hex);
    await eventually('both committed', () => blobs.every((b) => existsSync(path.join(dir, casId({ algo: 'sha256', hex: b.hex })))));
    // Well within the 200 ms that workers gather their reports for.
    const s = await stats(cache.url);
    t.same([s.store.objects, s.store.bytes], [before.store.objects + 2, before.store.bytes + blocksOf(dir, 4096) + blocksOf(dir, 5000)], 'the store figures include both, in the blocks they take');
    t.equal(s.total.misses, before.total.misses + 2, 'and so do the tallies');
  });

  await t.test('a body one worker stored is a hit in both', async (t) => {
    const { hex, body } = up.addBlob(4096);
    const objects = (await stats(cache.url)).store.objects;
    t.equal((await get(`${cache.url}/cas/sha256/${hex}`)).xcache, 'MISS');
    // The commit follows the answer; the primary's figures, broadcast every 250 ms, show it.
    await eventually('the commit known to the primary', async () => (await stats(cache.url)).store.objects > objects);
    const again = await Promise.all(Array.from({ length: 8 }, () => get(`${cache.url}/cas/sha256/${hex}`)));
    t.ok(again.every((r) => r.xcache === 'HIT' && r.hash === createHash('sha256').update(body).digest('hex')), '8 hits on fresh connections');
    t.equal(up.count(`/cas/sha256/${hex}`), 1);
  });

  await t.test('upstream dies mid-stream: every waiter in both workers errors, nothing kept', async (t) => {
    const size = 4 * 1024 * 1024;
    const { hex } = up.addBlob(size);
    // A second of filling before upstream dies. A client that comes after the failure
    // (a loaded machine) rightly starts a new fill: upstream dies for every one of them.
    up.options = { rate: 2 * 1024 * 1024, dieAfter: 2 * 1024 * 1024, keepDying: true };
    const results = await Promise.all(Array.from({ length: 16 }, () => get(`${cache.url}/cas/sha256/${hex}`)));
    const failed = up.count(`/cas/sha256/${hex}`);
    up.options = {};
    t.ok(results.every((r) => r.status === 0 || r.size < size), 'no client got a complete-looking body');
    t.ok(results.every((r) => r.error !== undefined), 'every client saw the answer aborted');
    t.notOk(existsSync(path.join(dir, casId({ algo: 'sha256', hex }))), 'nothing stored');
    const next = await get(`${cache.url}/cas/sha256/${hex}`);
    t.equal(next.hash, hex, 'the next request fetches again and succeeds');
    t.equal(up.count(`/cas/sha256/${hex}`), failed + 1, 'once');
  });

  await t.test('the byte budget is the whole cache\'s: the primary evicts the least recently used', async (t) => {
    const blobs = Array.from({ length: 6 }, () => up.addBlob(3 * 1024 * 1024));
    for (const b of blobs) {
      t.equal((await get(`${cache.url}/cas/sha256/${b.hex}`)).hash, b.hex);
      // Committed (flushed first: it may take a while on a busy disk) before the next one.
      await eventually(`blob ${b.hex} committed`, () => existsSync(path.join(dir, casId({ algo: 'sha256', hex: b.hex }))));
    }
    // Workers report commits every 200 ms, and the primary broadcasts its figures every 250 ms.
    const oldest = path.join(dir, casId({ algo: 'sha256', hex: blobs[0]!.hex }));
    await eventually('the oldest body unlinked', () => !existsSync(oldest));
    await eventually('the store back within 10 MiB', async () => (await stats(cache.url)).store.bytes <= 10 * 1024 * 1024);
    const s = await stats(cache.url);
    t.ok(s.store.bytes <= 10 * 1024 * 1024, `store within 10 MiB (${s.store.bytes} bytes)`);
    t.notOk(existsSync(oldest), 'the oldest body is unlinked');
    t.ok(existsSync(path.join(dir, casId({ algo: 'sha256', hex: blobs[5]!.hex }))), 'the newest is kept');
    t.equal((await get(`${cache.url}/cas/sha256/${blobs[0]!.hex}`)).xcache, 'MISS', 'an evicted object is fetched again, in either worker');
    // Until the primary has taken that commit in (it then evicts another), the next test's
    // first object could look older to it than this one.
    const kept = (): number => blobs.filter((b) => existsSync(path.join(dir, casId({ algo: 'sha256', hex: b.hex })))).length;
    await eventually('the refetched object counted: another evicted', () => kept() === 3 && existsSync(oldest));
  });

  await t.test('a hit in either worker counts as use: the primary evicts the object nobody asked for since', async (t) => {
    const file = (hex: string): string => path.join(dir, casId({ algo: 'sha256', hex }));
    // Workers report commits and hits every 200 ms, each on its own timer; /-/stats has
    // every worker send its reports first, so that once it answers, the primary has
    // learned of each step in the order the steps happened.
    const reported = (): Promise<unknown> => stats(cache.url);
    const small = up.addBlob(4096);
    // Sizes of their own: the store's byte count changes with each commit, evictions or not.
    const large = Array.from({ length: 4 }, (_, i) => up.addBlob(3 * 1024 * 1024 + (i + 1) * 4096));
    for (const b of [small, ...large.slice(0, 3)]) {
      const before = (await stats(cache.url)).store.bytes;
      t.equal((await get(`${cache.url}/cas/sha256/${b.hex}`)).hash, b.hex);
      await eventually(`blob ${b.hex} committed`, () => existsSync(file(b.hex)));
      // On a loaded machine the worker may answer /-/stats before it has seen its rename done.
      await eventually(`blob ${b.hex} known to the primary`, async () => (await stats(cache.url)).store.bytes !== before);
    }
    const hits = await Promise.all(Array.from({ length: 4 }, () => get(`${cache.url}/cas/sha256/${small.hex}`)));
    t.same(hits.map((h) => h.xcache), ['HIT', 'HIT', 'HIT', 'HIT'], 'the small one is asked again (in both workers)');
    await reported();
    t.equal((await get(`${cache.url}/cas/sha256/${large[3]!.hex}`)).hash, large[3]!.hex, 'over 12 MiB > 10: one must go');
    await eventually('the least recently used body unlinked', () => !existsSync(file(large[0]!.hex)));
    t.ok(existsSync(file(small.hex)), 'the small one, older but hit since, is kept');
    t.ok(large.slice(1).every((b) => existsSync(file(b.hex))), 'the others are kept');
  });

  await t.test('/-/metrics adds up the workers', async (t) => {
    const res = await request(`${cache.url}/-/metrics`);
    const text = await res.body.text();
    const s = await stats(cache.url);
    const m = /^fleetcache_cache_misses_total\{kind="cas",role="cache",region="[^"]+"\} (\d+)$/m.exec(text);
    t.ok(m, 'misses in the Prometheus text');
    t.equal(Number(m?.[1]), s.total.misses, 'the same figure as /-/stats');
    t.match(text, /^fleetcache_cache_fill_memory_limit_bytes\{role="cache",region="[^"]+"\} 6291456$/m, '--fill-memory 3MiB in each of the two workers');
    const maxSize = /^fleetcache_cache_max_size_bytes\{role="cache",region="[^"]+"\} (\d+)$/m.exec(text);
    t.equal(Number(maxSize?.[1]), 10 * 2 ** 20, '--max-size 10MiB, once for the cache (the workers share one budget): lru_bytes can be divided by it');
    t.equal(Number(maxSize?.[1]), s.store.maxSize, 'the figure of /-/stats');
    const rss = /^fleetcache_process_resident_memory_bytes\{role="cache",region="[^"]+"\} (\d+)$/m.exec(text);
    t.ok(rss && Number(rss[1]) > 2 * 20 * 2 ** 20, `the workers' memory, summed (${rss?.[1]} bytes)`);
  });

  await t.test('a worker that dies is replaced; the other serves meanwhile', async (t) => {
    t.notMatch(cache.stderr(), /cache worker died/, 'no worker died along the way');
    const before = (await stats(cache.url)).total; // every worker's reports in, the victim's too
    const servedBefore = await metricSum(cache.url, 'fleetcache_cache_bytes_served_total'); // a scrape: every worker's counters
    t.ok(servedBefore >= before.bytesServed, `/-/metrics sums the workers (${servedBefore} bytes served)`);
    const [victim] = childrenOf(cache.child.pid!);
    process.kill(victim!, 'SIGKILL');
    const { hex } = up.addBlob(4096);
    // A connection the primary hands to a worker at the instant it dies is lost (Node's
    // cluster hands connections over IPC): ask once the primary has seen the death.
    await eventually('the primary saw the death', () => /cache worker died/.test(cache.stderr()), 5000);
    const during = await get(`${cache.url}/cas/sha256/${hex}`);
    t.equal(during.hash, hex, 'served while one worker is down');
    await eventually('two workers again', () => childrenOf(cache.child.pid!).filter((pid) => pid !== victim).length === 2, 5000);
    t.match(cache.stderr(), /cache worker died: starting another/, 'the death is logged');
    t.equal(await metricSum(cache.url, 'fleetcache_cache_workers_lost_total'), 1, 'and counted in /-/metrics');
    await eventually('the new worker listens', () => /"msg":"replacement cache worker listening"/.test(cache.stderr()));
    const after = await Promise.all(Array.from({ length: 8 }, () => get(`${cache.url}/cas/sha256/${hex}`)));
    t.ok(after.every((r) => r.hash === hex), 'both serve again');
    const total = (await stats(cache.url)).total;
    t.ok(total.misses > before.misses && total.hits + total.collapsed >= before.hits + before.collapsed + 7, `the dead worker's counts still count (misses ${before.misses} → ${total.misses})`);
    t.ok(total.bytesServed >= before.bytesServed + 9 * 4096, 'and its bytes served');
    const servedAfter = await metricSum(cache.url, 'fleetcache_cache_bytes_served_total');
    t.ok(servedAfter >= servedBefore + 9 * 4096, `in /-/metrics too, as of its last scrape (${servedBefore} → ${servedAfter}): Prometheus sees no reset`);
    t.equal(await metricSum(cache.url, 'fleetcache_cache_fill_memory_limit_bytes'), 2 * 3 * 1024 * 1024, 'its gauges do not stay: the budget of two live workers');
  });

  await t.test('the claim a dead fill left: no worker has the fill, the file is removed, the next request fills', async (t) => {
    const { hex } = up.addBlob(4096);
    // Under the blob's own name, part of a body, no permission bits: as a crash mid-fill leaves it.
    const claim = path.join(dir, casId({ algo: 'sha256', hex }));
    mkdirSync(path.dirname(claim), { recursive: true });
    writeFileSync(claim, 'half a body', { mode: 0o000 });
    // While young (its worker may be writing it), both workers pass it by untouched. Young
    // whatever the load: dated ahead, as a claim written less than ORPHAN_MARGIN_MS (1 s)
    // before a question is one, and four requests took longer than that in a loaded CI.
    const young = new Date(Date.now() + 60_000);
    utimesSync(claim, young, young);
    for (let i = 0; i < 4; i++) t.equal((await get(`${cache.url}/cas/sha256/${hex}`)).hash, hex, 'passed through, never served');
    t.equal(existsSync(claim) && statSync(claim).size, 'half a body'.length, 'a young claim is left alone (not removed, nor filled in its place)');
    const old = new Date(Date.now() - 10_000);
    utimesSync(claim, old, old);
    const first = await get(`${cache.url}/cas/sha256/${hex}`);
    t.equal(first.hash, hex, 'passed through');
    t.notOk(existsSync(claim), 'the orphan is removed');
    t.equal((await get(`${cache.url}/cas/sha256/${hex}`)).xcache, 'MISS', 'the next request fills');
    t.equal(up.count(`/cas/sha256/${hex}`), 6);
  });

  await t.test('SIGTERM to the primary stops the workers and ends the process cleanly', async (t) => {
    const pid = cache.child.pid!;
    const workers = childrenOf(pid);
    t.equal(workers.length, 2, 'two worker processes');
    const exited = new Promise<number | null>((resolve) => cache.child.once('exit', (code) => resolve(code)));
    process.kill(pid, 'SIGTERM');
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 10_000).unref())]); // unref'd: it must not hold the file's process open
    t.equal(code, 0, 'the primary exits with 0');
    t.same(workers.filter(isAlive), [], 'no worker left behind');
  });
});

/** A GET with a connection of its own, read raw: `started` once body bytes came, `ended` with the body's size and hash once the server closed. */
function rawGet(port: number, target: string): { socket: net.Socket; started: Promise<void>; ended: Promise<{ size: number; hash: string }> } {
  const socket = net.connect(port, '127.0.0.1', () => socket.write(`GET ${target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n`));
  socket.on('error', () => undefined);
  let head: Buffer | undefined = Buffer.alloc(0);
  let size = 0;
  const hash = createHash('sha256');
  let bodyCame!: () => void;
  const started = new Promise<void>((resolve) => (bodyCame = resolve));
  socket.on('data', (chunk: Buffer) => {
    let body = chunk;
    if (head) {
      head = Buffer.concat([head, chunk]);
      const at = head.indexOf('\r\n\r\n');
      if (at < 0) return;
      body = head.subarray(at + 4);
      head = undefined;
    }
    if (body.length === 0) return;
    size += body.length;
    hash.update(body);
    bodyCame();
  });
  const ended = new Promise<{ size: number; hash: string }>((resolve) => socket.on('close', () => resolve({ size, hash: hash.digest('hex') })));
  return { socket, started, ended };
}

// Two subtests on objects of their own share a cache of two workers that keeps nothing over
// 1 MiB, and its upstream: the first sets the upstream's rate back to none when it is done.
t.test('two workers, a cache of 1 MiB, for two subtests', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', t.testdir(), '--workers', '2', '--max-size', '1MiB'], { FLEETCACHE_LOG_LEVEL: 'warn' });

  await t.test('two workers: a slow upstream head is still followed; an object larger than the cache is fetched once for both, its claim left alone; a range of it starting the fill is passed through in both', async (t) => {
    const slow = up.addBlob(100_000);
    // More than the cache (below): not kept.
    const early = up.addBlob(2 * 1024 * 1024);
    // Heads that come late, by a timer each: the first longer than a follower waits for its
    // leader to answer at all (remote-fill.ts), the leader saying it is there at once.
    const delays = new Map([[`/cas/sha256/${slow.hex}`, { ms: 6000, body: slow.body }], [`/cas/sha256/${early.hex}`, { ms: 500, body: early.body }]]);
    up.handler = (req, res) => {
      const delayed = delays.get(req.url ?? '');
      if (!delayed) return false;
      setTimeout(() => res.writeHead(200, { 'content-length': String(delayed.body.length) }).end(delayed.body), delayed.ms);
      return true;
    };
    // The slow head's six seconds are spent waiting: the parts below, on objects of their
    // own, run meanwhile.
    const slowAll = Promise.all(Array.from({ length: 8 }, () => get(`${cache.url}/cas/sha256/${slow.hex}`)));

    // A range of it starts the fill: refused with upstream's head (the range is asked for
    // instead of the whole object). Followers that came before the head learn it then, and
    // pass through too.
    const earlyPart = get(`${cache.url}/cas/sha256/${early.hex}`, { range: 'bytes=0-99' });
    // It leads: the others are sent once its fill has asked upstream (a fixed 100 ms was not
    // always enough under load, and a whole GET that led was joined by the range)
    await eventually('the range led the fill', () => up.count(`/cas/sha256/${early.hex}`) >= 1, 5000);
    const earlyAll = await Promise.all(Array.from({ length: 16 }, () => get(`${cache.url}/cas/sha256/${early.hex}`)));
    t.same(earlyAll.filter((r) => r.status !== 200 || r.hash !== early.hex), [], 'every body right, none a 502');
    t.equal((await earlyPart).error, undefined);
    t.ok(up.requests.some((r) => r.url === `/cas/sha256/${early.hex}` && r.headers.range === 'bytes=0-99'), 'upstream asked for the range');

    const big = up.addBlob(2 * 1024 * 1024);
    up.options.rate = 1024 * 1024; // two seconds of filling (the delayed heads above send theirs at once)
    const bigGet = () => get(`${cache.url}/cas/sha256/${big.hex}`);
    const first = Array.from({ length: 3 }, bigGet);
    // Later ones find the claim over a second old: a follower that took its leader for dead would remove it.
    await new Promise((r) => setTimeout(r, 1200));
    const bigAll = await Promise.all([...first, ...Array.from({ length: 3 }, bigGet)]);
    up.options.rate = 0;
    t.ok(bigAll.every((r) => r.hash === big.hex), 'every body right');
    t.equal(up.count(`/cas/sha256/${big.hex}`), 1, 'fetched once, in whichever worker each request came');

    const slowDone = await slowAll;
    t.ok(slowDone.every((r) => r.hash === slow.hex), 'every body right');
    t.equal(up.count(`/cas/sha256/${slow.hex}`), 1, 'upstream asked once: the other worker followed');
    t.notMatch(cache.stderr(), /removing the claim of a fill whose worker is gone/, 'no live leader taken for a dead one');
  });

  await t.test('two workers: a fill not kept goes on while a reader in either worker is left, and stops once none is', async (t) => {
    const port = Number(new URL(cache.url).port);
    const workers = cacheWorkers(cache.child.pid!);
    t.equal(workers.length, 2);
    const size = 8 * 1024 * 1024; // larger than the cache: not kept
    const left = up.addBlob(size);
    const gone = up.addBlob(size);
    up.options.rate = 1.6 * 1024 * 1024; // 5 s each
    // Clients of one object, one after the other, until each worker has one: the first leads
    // the fill, the one in the other worker follows it.
    const clientsOf = async (hex: string) => {
      const all: ReturnType<typeof rawGet>[] = [];
      const byWorker = new Map<number, ReturnType<typeof rawGet>>();
      for (let i = 0; i < 8 && byWorker.size < 2; i++) {
        const client = rawGet(port, `/cas/sha256/${hex}`);
        all.push(client);
        await client.started;
        const worker = holderOf(workers, client.socket.localPort!);
        if (worker !== undefined && !byWorker.has(worker)) byWorker.set(worker, client);
      }
      return { all, byWorker };
    };
    // One object after the other: two at once could take the workers in turn between them,
    // each object's clients all in one worker.
    const forLeft = await clientsOf(left.hex);
    const forGone = await clientsOf(gone.hex);
    t.equal(forLeft.byWorker.size, 2, 'clients of the first object in both workers');
    t.equal(forGone.byWorker.size, 2, 'clients of the second object in both workers');
    // The first object: every client leaves but one in the worker that follows the fill.
    const leader = holderOf(workers, forLeft.all[0]!.socket.localPort!);
    const survivor = [...forLeft.byWorker].find(([worker]) => worker !== leader)![1];
    for (const client of forLeft.all) if (client !== survivor) client.socket.destroy();
    // The second object: every client leaves.
    const leftAt = Date.now();
    for (const client of forGone.all) client.socket.destroy();
    const whole = await survivor.ended;
    t.same(whole, { size, hash: left.hex }, "the follower's client has its whole body, though the leader's have gone");
    await eventually('the first upstream answer closed', () => up.closes.has(`/cas/sha256/${left.hex}`));
    t.equal(up.closes.get(`/cas/sha256/${left.hex}`)!.cut, false, 'upstream sent it to its end');
    await eventually('the second upstream answer closed', () => up.closes.has(`/cas/sha256/${gone.hex}`));
    const stopped = up.closes.get(`/cas/sha256/${gone.hex}`)!;
    t.equal(stopped.cut, true, 'the object nobody reads any more: its upstream answer cut');
    t.ok(stopped.at - leftAt < 4000, `once the graces are over, not at its end (${stopped.at - leftAt} ms)`);
    t.equal(up.count(`/cas/sha256/${left.hex}`) + up.count(`/cas/sha256/${gone.hex}`), 2, 'each fetched once');
  });
});

// Four subtests that need no cache of their own share one (a damaged body placed before it
// starts, a mirror, the upstream's headers timeout, a worker stopped), its start paid once.
t.test('two workers, one cache for four subtests', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  const small = up.addBlob(4096);
  const file = path.join(data, casId({ algo: 'sha256', hex: small.hex }));
  // What a power loss can leave of an unflushed small file: the right size, zeroes inside.
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, Buffer.alloc(4096));
  // The headers timeout is the last subtest's; upstream answers the others' at once.
  writeFileSync(path.join(dir, 'cache.yaml'), `upstream: ${upUrl}\nmirrors:\n  m:\n    url: ${upUrl}/mir/\ntimeouts:\n  headers: 2s\n`);
  const cache = await startServerProcess(t, ['cache', '--config', path.join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', data, '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });

  await t.test('two workers: a damaged body a worker drops is fetched again and kept, not unlinked after by the primary', async (t) => {
    const first = await get(`${cache.url}/cas/sha256/${small.hex}`);
    t.same([first.hash, first.xcache], [small.hex, 'MISS'], 'not served from the damaged file');
    await stats(cache.url); // the worker's report of the deletion has reached the primary
    t.same(readFileSync(file), small.body, 'the copy fetched again is on disk');
    const hits = await Promise.all(Array.from({ length: 4 }, () => get(`${cache.url}/cas/sha256/${small.hex}`)));
    t.same(hits.map((h) => h.xcache), ['HIT', 'HIT', 'HIT', 'HIT'], 'and served from it, in both workers');
    t.equal(up.count(`/cas/sha256/${small.hex}`), 1);
  });

  await t.test('two workers: an entry one worker replaces (a mirror object fetched anew) is never served by the other with the old one\'s headers', async (t) => {
    /** Six answers on fresh connections (both workers), as [etag, the version their bytes are, whole]. */
    const answers = (what: string, versions: Record<string, Buffer>) => Promise.all(Array.from({ length: 6 }, async () => {
      const got = await fetchHash(`${cache.url}/mirror/m/${what}`, {}, { fresh: true });
      const version = Object.keys(versions).find((etag) => createHash('sha256').update(versions[etag]!).digest('hex') === got.hash);
      return [got.etag, version ?? `bytes of no version (${got.size})`];
    }));
    for (const [what, size] of [['large', 100_000], ['small', 3000]] as const) {
      const versions = { '"v1"': Buffer.alloc(size, 'A'), '"v2"': Buffer.alloc(size * 1.5, 'B') };
      up.objects.set(`/mir/${what}`, { body: versions['"v1"'], headers: { etag: '"v1"', 'cache-control': 'max-age=60' } });
      t.same(await answers(what, versions), Array(6).fill(['"v1"', '"v1"']), `${what}: both workers know v1, fresh for a minute`);
      up.objects.set(`/mir/${what}`, { body: versions['"v2"'], headers: { etag: '"v2"', 'cache-control': 'max-age=60' } });
      t.equal((await fetchHash(`${cache.url}/mirror/m/${what}`, { 'cache-control': 'no-cache' })).etag, '"v2"', 'fetched anew by one worker');
      // Until the other worker hears of it (the primary's word, milliseconds), it may still
      // answer v1 whole; never v2's bytes under v1's headers. Then v2 from both.
      await eventually(`${what}: v2 from both workers`, async () => {
        const got = await answers(what, versions);
        for (const [etag, version] of got) if (etag !== version) t.fail(`${what}: ${String(etag)} with ${String(version)}`);
        return got.every(([etag, version]) => etag === '"v2"' && version === '"v2"');
      });
    }
  });

  await t.test('two workers: an upstream that does not answer in time is a 504 for every waiter, in either worker', async (t) => {
    const blob = up.addBlob(100_000);
    up.options.hang = true;
    const answers = await Promise.all(Array.from({ length: 6 }, async () => {
      const dispatcher = new Agent({ pipelining: 0 });
      try {
        const res = await request(`${cache.url}/cas/sha256/${blob.hex}`, { dispatcher, reset: true });
        const body = (await res.body.json()) as { code: string };
        return `${res.statusCode} ${body.code}`;
      } finally {
        await dispatcher.close();
      }
    }));
    t.equal(up.count(`/cas/sha256/${blob.hex}`), 1, 'one upstream request: the others followed it');
    t.same(answers, Array(6).fill('504 FC_ERR_UPSTREAM_TIMEOUT'));
  });

  // Last: it leaves a worker stopped until its end.
  await t.test('two workers: one that does not answer the primary in time still counts, with what it last told', async (t) => {
    up.options = {}; // the test above left upstream hanging
    const blob = up.addBlob(4096);
    const asked = (await stats(cache.url)).total;
    for (let i = 0; i < 10; i++) await get(`${cache.url}/cas/sha256/${blob.hex}`);
    const before = await stats(cache.url);
    const hits = await metricSum(cache.url, 'fleetcache_cache_hits_total');
    t.equal(before.total.hits + before.total.misses, asked.hits + asked.misses + 10);
    const [stopped] = cacheWorkers(cache.child.pid!);
    process.kill(stopped!, 'SIGSTOP');
    t.teardown(() => process.kill(stopped!, 'SIGCONT'));
    // Node's cluster hands the stopped worker one connection, which it never gives back: the
    // primary hands it no other after that. /-/healthz (milliseconds from the live worker, and
    // counted nowhere) finds that connection at once, on the first or the second fresh
    // connection, instead of a question that must wait over the primary's 2 s for the stopped
    // worker's answer.
    for (let i = 0; i < 2; i++) {
      const dispatcher = new Agent({ pipelining: 0 });
      try {
        await (await request(`${cache.url}/-/healthz`, { dispatcher, reset: true, headersTimeout: 1000 })).body.dump();
      } catch {
        break; // the stopped worker took it (or the live one was slow: ask below still retries)
      } finally {
        void dispatcher.destroy();
      }
    }
    // asked on fresh connections until the one that is not stopped answers (the primary waits 2 s for the other)
    const ask = async (path: string): Promise<string> => {
      for (;;) {
        const dispatcher = new Agent({ pipelining: 0 });
        try {
          const res = await request(`${cache.url}${path}`, { dispatcher, reset: true, headersTimeout: 4000 });
          return await res.body.text();
        } catch {
          // the stopped worker took the connection
        } finally {
          void dispatcher.destroy();
        }
      }
    };
    // Both asked at once: each waits out the primary's 2 s for the stopped worker.
    const [statsText, text] = await Promise.all([ask('/-/stats'), ask('/-/metrics')]);
    const during = JSON.parse(statsText) as Awaited<ReturnType<typeof stats>>;
    t.same([during.total.hits, during.total.misses], [before.total.hits, before.total.misses], '/-/stats: the same totals');
    const sum = text.split('\n').filter((l) => l.startsWith('fleetcache_cache_hits_total{')).reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    t.equal(sum, hits, '/-/metrics: the same counters');
  });
});

/** PIDs of the cache workers whose parent is `pid` (tsx's esbuild helpers are not workers). */
function childrenOf(pid: number): number[] {
  const cmdline = (child: number): string => {
    try {
      return readFileSync(`/proc/${child}/cmdline`, 'utf8');
    } catch {
      return ''; // gone meanwhile
    }
  };
  return [...parentsByPid()].filter(([child, parent]) => parent === pid && cmdline(child).includes('cache')).map(([child]) => child);
}
