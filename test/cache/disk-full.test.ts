// A full disk turns the cache into a passthrough with a logged error, not a crash (blobs
// asked at once are still fetched once, from memory).
// The data directory is a real 8 MiB tmpfs mounted by the test (needs root).
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, statfsSync, statSync, truncateSync, writeSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pino } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import type { Test } from 'tap';
import { request } from 'undici';
import { DEFAULT_FILL_MEMORY, resolveCacheConfig } from '../../src/cache/config.js';
import { casId, DiskStore } from '../../src/cache/disk-store.js';
import { FillCursor } from '../../src/cache/fill-cursor.js';
import { Fill } from '../../src/cache/fill.js';
import { fillMemoryInUse, setFillMemory } from '../../src/cache/fill-progress.js';
import { UpstreamError } from '../../src/errors.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { descendantsOf, startServerProcess, type RunningServer } from '../helpers/processes.js';
import { headOnlyPut } from '../helpers/raw-http.js';
import { fillDisk, mountTmpfs } from '../helpers/tmpfs.js';
import { eventually } from '../helpers/wait.js';
import { fetchHash } from './harness.js';
import { randomBlob, sha256, startUpstream, UpstreamFixture } from './upstream-fixture.js';

const isRoot = process.getuid?.() === 0;
const MiB = 1024 * 1024;

/** Writes `file` until its filesystem is full; returns the error that stopped it. */
function fillUp(file: string): NodeJS.ErrnoException {
  const fd = openSync(file, 'w');
  try {
    const chunk = Buffer.alloc(64 * 1024, 1);
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    return err as NodeJS.ErrnoException;
  } finally {
    closeSync(fd);
  }
}

/**
 * A 6 MiB blob whose first upstream answer comes in three parts (2 MiB, 1 MiB, the rest),
 * the second and third when the test calls `opens[0]` and `opens[1]`; later ones whole.
 */
function stagedBlob(up: UpstreamFixture): { blob: { hex: string; body: Buffer }; opens: (() => void)[] } {
  const blob = up.addBlob(6 * MiB);
  const opens: (() => void)[] = [];
  const gates = [0, 1].map(() => new Promise<void>((resolve) => opens.push(resolve)));
  let asked = 0;
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${blob.hex}`) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(blob.body.length) });
    if (asked++ > 0) return void res.end(blob.body), true;
    res.write(blob.body.subarray(0, 2 * MiB));
    void gates[0]!.then(() => {
      res.write(blob.body.subarray(2 * MiB, 3 * MiB));
      return gates[1];
    }).then(() => res.end(blob.body.subarray(3 * MiB)));
    return true;
  };
  return { blob, opens };
}

t.test('full disk: passthrough, logged error, no crash', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('8m', 'full');
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const big = up.addBlob(16 * 1024 * 1024); // twice the disk
  const small = up.addBlob(64 * 1024);
  const logs: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { logs.push(chunk.toString()); cb(); } });
  const config = resolveCacheConfig({ region: 'full', listen: '127.0.0.1:0', upstream: upUrl, data: dir, maxSize: '1GiB' });
  const app = await buildCacheServer({ ...config, logLevel: 'silent' });
  const logger = pino({ level: 'error' }, sink);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await app.close();
    await app.cache.fills.drain();
    await up.stop();
    await unmount();
  });
  app.cache.store.useLogger(logger);

  const get = (hex: string) => fetchHash(`${url}/cas/sha256/${hex}`);
  const diskMetrics = async (): Promise<string[]> => {
    const text = await (await request(`${url}/-/metrics`)).body.text();
    return text.split('\n').filter((l) => /^fleetcache_cache_(disk_refusing|storage_failures_total)\{/.test(l)).map((l) => l.replace(/\{[^}]*\}/, ''));
  };
  t.same(await diskMetrics(), ['fleetcache_cache_disk_refusing 0', 'fleetcache_cache_storage_failures_total 0'], 'metrics: the disk takes writes');
  const a = await get(big.hex);
  t.equal(a.status, 200);
  t.equal(a.hash, big.hex, 'the object larger than the disk is passed through whole');
  t.equal(up.count(`/cas/sha256/${big.hex}`), 1, 'upstream asked once: the refused fill\'s answer is what is passed through');
  t.ok(logs.some((l) => /no space left|storage failure/.test(l)), 'an error was logged');
  t.same(logs.map((l) => (JSON.parse(l) as { during?: string }).during), ['reservation'], 'naming what met it: the room taken for the body');
  t.same(await diskMetrics(), ['fleetcache_cache_disk_refusing 1', 'fleetcache_cache_storage_failures_total 1'], 'metrics: the disk refuses writes, after one failure');
  t.equal(app.cache.store.count, 0, 'nothing kept');
  const b = await get(small.hex);
  t.equal(b.status, 200);
  t.equal(b.hash, small.hex, 'while the disk is marked full, requests pass through');
  t.equal((await request(`${url}/-/healthz`)).statusCode, 200, 'still alive');
  // Meanwhile (the disk is refused for 30 s), a small blob many ask at once is still
  // fetched once for all of them, and not kept.
  const tiny = up.addBlob(4096);
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${tiny.hex}`) return false;
    // Half a second before the answer: every request below arrives meanwhile.
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '4096' }).end(tiny.body), 500);
    return true;
  };
  const many = await Promise.all(Array.from({ length: 8 }, () => get(tiny.hex)));
  t.ok(many.every((m) => m.status === 200 && m.hash === tiny.hex), 'every body right');
  t.equal(up.count(`/cas/sha256/${tiny.hex}`), 1, 'upstream asked once');
  t.same(many.map((m) => m.xcache).sort(), ['COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'MISS']);
  t.equal(app.cache.store.count, 0, 'nothing kept');

  // A large blob (no room for it on this disk anyway) is fetched once for all too, streamed
  // from memory with no file.
  const large = up.addBlob(4 * 1024 * 1024);
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${large.hex}`) return false;
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(large.body.length) }).end(large.body), 500);
    return true;
  };
  const manyLarge = await Promise.all(Array.from({ length: 8 }, () => get(large.hex)));
  t.ok(manyLarge.every((m) => m.status === 200 && m.hash === large.hex), 'every large body right');
  t.equal(up.count(`/cas/sha256/${large.hex}`), 1, 'upstream asked once for the large blob');
  t.same(manyLarge.map((m) => m.xcache).sort(), ['COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'MISS']);

  // Past what such a fill keeps in memory: a request that comes late starts a fill of its
  // own, and a client that stopped reading is cut, never given a clean end.
  const huge = up.addBlob(40 * 1024 * 1024);
  let got = 0; // what the reader has read
  let lateGot = 0; // what the late request has read
  // Upstream's answers to the reader's fill and the late one's go no further than 4 MiB past
  // what their client has read: a fill in memory cuts a client 16 MiB behind, and on a loaded
  // machine the clients (in this process) fell that far behind a timer-paced upstream.
  const pacedBy = [() => got, () => Infinity, () => lateGot];
  let asked = 0;
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${huge.hex}`) return false;
    const clientRead = pacedBy[asked++] ?? (() => Infinity);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(huge.body.length) });
    let off = 0;
    const step = (): void => {
      if (off >= huge.body.length) return void res.end();
      if (off - clientRead() < 4 * MiB) res.write(huge.body.subarray(off, (off += MiB)));
      setTimeout(step, 25);
    };
    step();
    return true;
  };
  const hugeUrl = `${url}/cas/sha256/${huge.hex}`;
  const reader = await request(hugeUrl);
  const stalled = await request(hugeUrl);
  t.equal(stalled.headers['x-cache'], 'COLLAPSED', 'the second request joined the first one\'s fill');
  // A range of it would hold its last byte back to the digest check at the end, by when the
  // windows no longer have it: it passes through.
  const ranged = await request(hugeUrl, { headers: { range: 'bytes=0-99' } }); // read after the reader's loop
  // Hashed as they come: 40 MiB collected and copied into one buffer, twice, only to be hashed.
  const readAll = async (body: AsyncIterable<Buffer>, count: (bytes: number) => void): Promise<string> => {
    const hash = createHash('sha256');
    for await (const c of body) {
      hash.update(c);
      count(c.length);
    }
    return hash.digest('hex');
  };
  const getLate = async (): Promise<{ status: number; hash: string; xcache: unknown }> => {
    const res = await request(hugeUrl);
    return { status: res.statusCode, hash: await readAll(res.body, (n) => (lateGot += n)), xcache: res.headers['x-cache'] };
  };
  let late: Promise<{ status: number; hash: string; xcache: unknown }> | undefined;
  const readerHash = await readAll(reader.body, (n) => {
    got += n;
    if (!late && got > 10 * MiB) late = getLate();
  });
  t.equal(readerHash, huge.hex, 'the reader got the whole body');
  t.same(Buffer.from(await ranged.body.arrayBuffer()).subarray(0, 100), huge.body.subarray(0, 100), `a range of it: its bytes (HTTP ${ranged.statusCode}, ${String(ranged.headers['x-cache'])})`);
  const lateAnswer = await late!;
  t.same([lateAnswer.status, lateAnswer.hash, lateAnswer.xcache], [200, huge.hex, 'MISS'], 'the late request was served whole by a fill of its own');
  t.equal(up.count(`/cas/sha256/${huge.hex}`), 3, 'upstream asked three times: the first fill, the range passed through, and the late one\'s fill');
  await t.rejects(stalled.body.arrayBuffer(), 'the client that fell behind is cut');
  t.equal(app.cache.store.count, 0, 'nothing kept');
  // Kept for their readers while they read (no file to fall back on), then given back.
  await eventually('the windows of the fills in memory given back', () => fillMemoryInUse() === 0);
});

t.test('the disk fills up mid-fill: its waiters still get the whole body, nothing is kept', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('8m', 'midfill');
  const filler = path.join(dir, 'filler');
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const logs: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { logs.push(chunk.toString()); cb(); } });
  const app = await buildCacheServer({ ...resolveCacheConfig({ region: 'midfill', listen: '127.0.0.1:0', upstream: upUrl, data: dir, maxSize: '1GiB' }), logLevel: 'silent' });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  app.cache.store.useLogger(pino({ level: 'warn' }, sink));
  const realNow = Date.now;
  let skew = 0;
  Date.now = () => realNow() + skew; // to pass the disk's 30 s cool-down at once
  t.teardown(async () => {
    Date.now = realNow;
    await app.close();
    await app.cache.fills.drain();
    await up.stop();
    rmSync(filler, { force: true });
    await unmount();
  });
  const { blob, opens } = stagedBlob(up); // room for it when the fill starts
  const get = async (): Promise<{ status: number; hash: string; xcache: unknown }> => {
    // Bounded: a late request that joined the fill by mistake would wait for the test's last gate.
    const res = await request(`${url}/cas/sha256/${blob.hex}`, { bodyTimeout: 10_000 });
    return { status: res.statusCode, hash: sha256(Buffer.from(await res.body.arrayBuffer())), xcache: res.headers['x-cache'] };
  };
  const used = (): number => {
    const fs = statfsSync(dir);
    return (fs.blocks - fs.bfree) * fs.bsize;
  };
  const before = used();
  // Caught at once: a waiter cut before the test awaits them must fail the test, not the process.
  const waiters = Array.from({ length: 4 }, () => get().catch((err: Error) => ({ status: 0, hash: err.message, xcache: undefined })));
  await eventually('the fill wrote its first 2 MiB to the disk', () => used() - before >= 2 * MiB);
  t.equal(fillUp(filler).code, 'ENOSPC', 'something else took the rest of the filesystem');
  opens[0]!();
  await eventually('the fill\'s next write failed, logged', () => logs.some((l) => /storage failure/.test(l)));
  t.ok(logs.some((l) => (JSON.parse(l) as { during?: string }).during === 'fill-write'), 'naming what met it: the fill\'s write');
  // A request now does not join the fill whose file stopped: it is served by a fill of its own.
  const late = await get();
  t.same([late.status, late.hash, late.xcache], [200, blob.hex, 'MISS'], 'a request after the failure: served whole by a fill of its own');
  // Once the disk takes writes again, the stopped fill still holds its claim: a request finds
  // it taken, and must neither take it for a dead worker's nor start a second fill.
  const claim = path.join(dir, casId({ algo: 'sha256', hex: blob.hex }));
  const claimIno = statSync(claim).ino;
  skew = 31_000;
  rmSync(filler);
  const afterCooldown = await get();
  t.same([afterCooldown.status, afterCooldown.hash], [200, blob.hex], 'a request after the cool-down: served whole (passed through)');
  t.equal(statSync(claim, { throwIfNoEntry: false })?.ino, claimIno, 'the running fill keeps its claim');
  t.notOk(logs.some((l) => /worker is gone/.test(l)), 'its claim was not taken for an orphan');
  opens[1]!();
  const got = await Promise.all(waiters);
  t.ok(got.every((g) => g.status === 200 && g.hash === blob.hex), 'every waiter got the whole body, right');
  t.same(got.map((g) => g.xcache).sort(), ['COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'MISS']);
  t.equal(up.count(`/cas/sha256/${blob.hex}`), 3, 'upstream asked three times: the fill, the late request\'s, and the passthrough');
  t.equal(app.cache.store.count, 0, 'nothing kept');
  await eventually('the windows of the fill given back', () => fillMemoryInUse() === 0);
  await eventually('the fill\'s temp file removed', () => used() - before < MiB);
});

t.test('two workers: a fill whose disk failed mid-way keeps its claim; requests of the other worker pass through', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('16m', 'midfill-workers');
  const filler = path.join(dir, 'filler');
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const { blob, opens } = stagedBlob(up);
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', dir, '--workers', '2', '--max-size', '12MiB']);
  t.teardown(async () => {
    for (const open of opens) open();
    await cache.stop();
    await up.stop();
    rmSync(filler, { force: true });
    await unmount();
  });
  const url = `${cache.url}/cas/sha256/${blob.hex}`;
  // A connection each: the workers take them in turn.
  const get = (): Promise<{ status: number; hash: string }> => fetchHash(url, {}, { fresh: true }).catch((err: Error) => ({ status: 0, hash: err.message }));
  const used = (): number => {
    const fs = statfsSync(dir);
    return (fs.blocks - fs.bfree) * fs.bsize;
  };
  const before = used();
  const first = get();
  await eventually('the fill wrote its first 2 MiB to the disk', () => used() - before >= 2 * MiB);
  const claim = path.join(dir, casId({ algo: 'sha256', hex: blob.hex }));
  t.ok(existsSync(claim), 'the fill holds its claim');
  t.equal(fillUp(filler).code, 'ENOSPC', 'the filesystem is full');
  opens[0]!();
  await eventually('the leader stopped writing its file', () => /disk failed mid-fill/.test(cache.stderr()));
  // Claims more than a second old whose worker says it has no such fill are removed as orphans.
  const claimAge = Date.now() - statSync(claim).mtimeMs;
  if (claimAge < 1100) await sleep(1100 - claimAge);
  const others = [];
  for (let i = 0; i < 4; i++) others.push(await get());
  t.ok(others.every((o) => o.status === 200 && o.hash === blob.hex), 'requests on either worker: served whole');
  t.ok(existsSync(claim), 'the running fill keeps its claim');
  t.notOk(/worker is gone/.test(cache.stderr()), 'its claim was not taken for an orphan');
  opens[1]!();
  const led = await first;
  t.same([led.status, led.hash], [200, blob.hex], 'the fill\'s own client got the whole body');
  await eventually('the claim removed once the fill ended', () => !existsSync(claim));
});

t.test('a reader behind the windows of a fill whose disk failed: the bytes its file holds, then cut', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('8m', 'behind');
  const filler = path.join(dir, 'filler');
  setFillMemory(0); // each fill keeps its last two windows only
  t.teardown(async () => {
    setFillMemory(DEFAULT_FILL_MEMORY);
    rmSync(filler, { force: true });
    await unmount();
  });
  const log = pino({ level: 'silent' });
  const store = new DiskStore(dir, 1024 ** 3, log);
  await store.open();
  const body = randomBytes(6 * MiB);
  const upstream = new PassThrough();
  const fill = new Fill(store, log, {
    id: casId({ algo: 'sha256', hex: sha256(body) }),
    request: async () => ({ statusCode: 200, headers: { 'content-length': String(body.length) }, body: upstream }),
    decide: () => ({ status: 200, headers: {}, meta: { key: 'k', status: 200, headers: {} } }),
  });
  await fill.head;
  const cursor = new FillCursor(fill, fill.acquireFile(), 0, Infinity);
  upstream.write(body.subarray(0, 2 * MiB));
  await eventually('the first 2 MiB written', () => fill.written === 2 * MiB);
  t.equal(fillUp(filler).code, 'ENOSPC', 'the filesystem is full');
  upstream.end(body.subarray(2 * MiB));
  await fill.done;
  t.same([fill.error, fill.memoryOnly, fill.fileHolds], [undefined, true, 2 * MiB], 'the fill ended from memory, its file holding the first 2 MiB');
  // The reader was left behind: the file gives what it holds, the windows only the last 512 KiB.
  const got: Buffer[] = [];
  const scratch = Buffer.alloc(MiB);
  const err = await (async () => {
    for (let c; (c = await cursor.next(() => scratch));) got.push(Buffer.from(c));
  })().then(() => undefined, (e: unknown) => e);
  fill.release();
  t.ok(err instanceof UpstreamError, `the reader is cut (${String(err)})`);
  t.ok(Buffer.concat(got).equals(body.subarray(0, 2 * MiB)), 'after exactly the bytes the file holds');
  t.equal(store.count, 0, 'nothing kept');
});

t.test('the data directory removed under a running cache: requests pass through, no crash', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetcache-gone-'));
  const app = await buildCacheServer({ ...resolveCacheConfig({ region: 'gone', listen: '127.0.0.1:0', upstream: upUrl, data: dir }), logLevel: 'silent' });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await app.close();
    await app.cache.fills.drain();
    rmSync(dir, { recursive: true, force: true }); // the cache made its shard directories again
  });
  rmSync(dir, { recursive: true, force: true });
  // The first miss finds the disk gone before reading upstream's body (the body it drops
  // must not kill the process); the others come while the cache passes everything through.
  for (const size of [4096, 3 * 1024 * 1024]) {
    const blob = up.addBlob(size);
    for (const hex of [blob.hex, blob.hex.toUpperCase()]) {
      const res = await request(`${url}/cas/sha256/${hex}`);
      const body = Buffer.from(await res.body.arrayBuffer());
      t.equal(res.statusCode, 200, `${size} bytes, ${hex === blob.hex ? 'fast path' : 'routes'}`);
      t.equal(sha256(body), blob.hex);
    }
  }
  t.equal((await request(`${url}/-/healthz`)).statusCode, 200, 'still alive');
});

t.test('a size limit larger than the filesystem is warned about at start', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('4m', 'room');
  t.teardown(unmount);
  const warnings = async (maxSize: number): Promise<string[]> => {
    const logs: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _e, cb) { logs.push(chunk.toString()); cb(); } });
    await new DiskStore(dir, maxSize, pino({ level: 'warn' }, sink)).open();
    return logs.filter((l) => /size limit/.test(l));
  };
  const tooBig = await warnings(1024 ** 3);
  t.equal(tooBig.length, 1, 'warned once');
  t.match(JSON.parse(tooBig[0]!), { level: 40, maxSize: 1024 ** 3, msg: /1\.0 GiB.*can hold \(4\.0 MiB.*lower --max-size/ });
  t.same(await warnings(2 * 1024 * 1024), [], 'a limit the filesystem can hold: no warning');
});

t.test('room made on a full disk is used at once: a refusal waits for a fresh free-space figure', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('8m', 'regrow');
  t.teardown(unmount);
  const maxAgeMs = 100; // of a free-space figure (a second in a cache)
  const store = new DiskStore(path.join(dir, 'data'), 1024 ** 3, pino({ level: 'silent' }), { statfsMaxAgeMs: maxAgeMs });
  await store.open();
  fillUp(path.join(dir, 'filler'));
  // A large reservation reads the free space at once: refused on a fresh figure.
  await t.rejects(store.reserve(4 * MiB), { message: /no space left/ }, 'refused on a full disk');
  // Room is made (the tmpfs grown, as an operator would free space), and the figure the
  // refusal was based on gets old, as it always is after a cool-down. A small reservation
  // takes the last figure while it is young; an old one that would refuse it is read again.
  execFileSync('mount', ['-o', 'remount,size=64m', dir]);
  await sleep(maxAgeMs + 50);
  await store.reserve(256 * 1024); // without that read: refused again, on the old figure
  t.pass('reserved once room was made');
});

/**
 * A cache whose size limit is about its filesystem's size, full of objects: the first five
 * of `blobs` (1 MiB each) fetched, then the sixth (3 MiB), for which the disk has no room
 * until the least recently used are evicted. Returns the sixth's two answers (a miss, then
 * a hit when it was kept). `stored`: resolves once the object of `hex` is stored.
 */
async function fillThenLarger(get: (hex: string) => Promise<{ status: number; hash: string; xcache: string }>, stored: (hex: string) => Promise<void>, blobs: readonly { hex: string }[]): Promise<{ status: number; hash: string; xcache: string }[]> {
  for (const b of blobs.slice(0, 5)) {
    await get(b.hex);
    await stored(b.hex);
  }
  const larger = blobs[5]!;
  const miss = await get(larger.hex);
  await stored(larger.hex);
  return [miss, await get(larger.hex)];
}

/** A cache of two workers (a process, `--workers 2`) with a 7 MiB size limit on an 8 MiB tmpfs of its own (`dir`), stopped, and the tmpfs removed, when `t` ends. */
async function workersOnTmpfs(t: Test, name: string, upUrl: string): Promise<{ dir: string; cache: RunningServer }> {
  const { dir, unmount } = mountTmpfs('8m', name);
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', dir, '--workers', '2', '--max-size', '7MiB'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  t.teardown(async () => {
    await cache.stop();
    await unmount();
  });
  return { dir, cache };
}

/** Resolves, for a blob's `hex`, once a cache on `dir` stored it whole (a claim under its name has mode 0). */
function storedIn(dir: string): (hex: string) => Promise<void> {
  return (hex) => {
    const file = path.join(dir, casId({ algo: 'sha256', hex }));
    return eventually('stored', () => existsSync(file) && (statSync(file).mode & 0o777) !== 0, 5000);
  };
}

/** A one-process cache with a 7 MiB size limit (or `maxSize`) on an 8 MiB tmpfs of its own: its limit is about its filesystem's size. */
async function cacheOnTmpfs(t: Test, name: string, upUrl: string, maxSize = '7MiB'): Promise<{ app: Awaited<ReturnType<typeof buildCacheServer>>; url: string }> {
  const { dir, unmount } = mountTmpfs('8m', name);
  const config = resolveCacheConfig({ region: 'room', listen: '127.0.0.1:0', upstream: upUrl, data: dir, maxSize });
  const app = await buildCacheServer({ ...config, logLevel: 'silent' });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    await unmount();
  });
  return { app, url };
}

t.test('a disk that holds the whole budget: the least recently used objects make room for a large fill, with no storage failure', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blobs = [1, 1, 1, 1, 1, 3].map((n) => up.addBlob(n * MiB));
  const { app, url } = await cacheOnTmpfs(t, 'makeroom', upUrl);
  const [miss, again] = await fillThenLarger((hex) => fetchHash(`${url}/cas/sha256/${hex}`), () => app.cache.fills.drain(), blobs);
  t.same([miss!.status, miss!.hash, again!.xcache], [200, blobs[5]!.hex, 'HIT'], 'the larger object served, then kept');
  const kept = blobs.map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex })));
  t.same(kept, [false, false, true, true, true, true], 'the two least recently used evicted for it');
  t.same(app.cache.store.evicted, { objects: 2, bytes: 2 * MiB }, 'and counted');
  t.notOk(app.cache.store.isFull(), 'no cool-down: the disk takes writes');
  t.equal(app.cache.store.failures, 0, 'no storage failure');
});

t.test('two workers, a disk that holds the whole budget: the primary evicts to make room for a worker\'s fill', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blobs = [1, 1, 1, 1, 1, 3].map((n) => up.addBlob(n * MiB));
  const { dir, cache } = await workersOnTmpfs(t, 'makeroom-workers', upUrl);
  // A connection each: the workers take them in turn.
  const stored = storedIn(dir);
  const [miss, again] = await fillThenLarger((hex) => fetchHash(`${cache.url}/cas/sha256/${hex}`, {}, { fresh: true }), stored, blobs);
  t.same([miss!.status, miss!.hash], [200, blobs[5]!.hex], 'the larger object served');
  t.equal(again!.xcache, 'HIT', 'and kept');
  const stats = (await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { full: boolean; objects: number; evictedObjects: number; evictedBytes: number } };
  t.equal(stats.store.full, false, 'no cool-down');
  t.same([stats.store.objects, stats.store.evictedObjects, stats.store.evictedBytes], [4, 2, 2 * MiB], 'two objects evicted for it');
  await eventually('the workers heard of the evictions', async () => /fleetcache_cache_evicted_objects_total\{[^}]*\} 2\n/.test(await (await request(`${cache.url}/-/metrics`)).body.text()), 5000);
  t.pass('in /-/metrics too');
  t.notMatch(cache.stderr(), /storage failure/, 'no storage failure logged');
});

t.test('two workers: a large fill right after another worker\'s committed finds that object kept, counted and evictable, not room held by nothing', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blobs = [4, 4, 4, 4, 4].map((n) => up.addBlob(n * MiB));
  const { dir, cache } = await workersOnTmpfs(t, 'commit-reported', upUrl);
  // A connection each: the workers take them in turn. Each asks once the one before is on
  // disk (that worker's report of it was up to 200 ms away, the race each time): its
  // reservation lacks about a MiB that only evicting the one before can make.
  const stored = storedIn(dir);
  for (const b of blobs) {
    const got = await fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true });
    t.same([got.status, got.hash], [200, b.hex], 'served');
    await stored(b.hex);
  }
  const stats = (await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { full: boolean; evictedObjects: number } };
  t.same([stats.store.full, stats.store.evictedObjects], [false, 4], 'each kept, the one before evicted for it; no cool-down');
  t.notMatch(cache.stderr(), /storage failure/, 'no storage failure logged');
});

t.test('two large fills at once on a disk that holds the whole budget: the second counts the room the first reserved and has not written yet', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const stored = [1, 1, 1, 1].map(() => up.addBlob(MiB));
  const large = [2.5, 2.5].map((n) => up.addBlob(n * MiB));
  const { app, url } = await cacheOnTmpfs(t, 'makeroom-concurrent', upUrl);
  for (const b of stored) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  // Both heads come at once, and each body over about half a second: both reserve before either has written much.
  up.options.rate = 5 * MiB;
  const got = await Promise.all(large.map((b) => fetchHash(`${url}/cas/sha256/${b.hex}`)));
  await app.cache.fills.drain();
  t.same(got.map((g) => [g.status, g.hash]), large.map((b) => [200, b.hex]), 'both served');
  t.equal(app.cache.store.failures, 0, 'no storage failure (no ENOSPC mid-fill)');
  t.notOk(app.cache.store.isFull(), 'no cool-down');
  t.same(large.map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), [true, true], 'both kept');
});

t.test('two workers, large fills in progress in both on a disk that holds the whole budget: a fill counts the room the other worker\'s fills reserved, and finding none left passes through, with no storage failure', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const large = [3, 3].map((n) => up.addBlob(n * MiB));
  const third = up.addBlob(2.5 * MiB);
  const { dir, cache } = await workersOnTmpfs(t, 'held-by-fills-workers', upUrl);
  // A connection each (the workers take them in turn): a large fill in each worker, each body
  // over about a second and a half; the third asks the first worker while both have reserved
  // their room and written little of it, and nothing kept is there to evict. Counting only its
  // own worker's fill, it took room the other one's needs: one of them ran out mid-way (ENOSPC).
  up.options.rate = 2 * MiB;
  const filling = large.map((b) => fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true }));
  await eventually('both fills asked upstream', () => large.every((b) => up.count(`/cas/sha256/${b.hex}`) === 1), 5000);
  await sleep(300);
  const passed = await fetchHash(`${cache.url}/cas/sha256/${third.hex}`, {}, { fresh: true });
  t.same([passed.status, passed.hash], [200, third.hex], 'the third served');
  const got = await Promise.all(filling);
  t.same(got.map((g) => [g.status, g.hash]), large.map((b) => [200, b.hex]), 'both large ones served');
  const file = (hex: string): string => path.join(dir, casId({ algo: 'sha256', hex }));
  await eventually('both large ones kept', () => large.every((b) => existsSync(file(b.hex)) && (statSync(file(b.hex)).mode & 0o777) !== 0), 5000);
  t.notOk(existsSync(file(third.hex)), 'the third passed through, not kept');
  const stats = (await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { full: boolean } };
  t.equal(stats.store.full, false, 'no cool-down');
  t.notMatch(cache.stderr(), /storage failure/, 'no storage failure: the room comes back as the fills end');
});

t.test('two workers, two large fills whose answers come at the same moment on a disk that holds neither beside the other: no storage failure', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const large = [4.5, 4.5].map((n) => up.addBlob(n * MiB));
  const { cache } = await workersOnTmpfs(t, 'same-moment-workers', upUrl);
  // A connection each (the workers take them in turn); both answers held until both were
  // asked, then let go at once: each worker reserves its room before the primary can tell it
  // of the other's, and both write until the disk is full. The other fill holds the room:
  // neither is a failing disk (no cool-down); what finds no room is not kept.
  const releases = large.map((b) => up.hold(`/cas/sha256/${b.hex}`));
  up.options.rate = 8 * MiB;
  const got = large.map((b) => fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true }));
  await eventually('both fills asked upstream', () => large.every((b) => up.count(`/cas/sha256/${b.hex}`) === 1), 5000);
  for (const release of releases) release();
  t.same((await Promise.all(got)).map((g) => [g.status, g.hash]), large.map((b) => [200, b.hex]), 'both served whole');
  await eventually('both fills ended', async () => ((await (await request(`${cache.url}/-/stats`)).body.json()) as { inflightFills: number }).inflightFills === 0, 5000);
  const stats = (await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { full: boolean } };
  t.equal(stats.store.full, false, 'no cool-down');
  t.notMatch(cache.stderr(), /storage failure/, 'no storage failure');
});

t.test('large fills in progress hold the room of a disk that holds the whole budget: a fill that finds none left passes through, with no storage failure', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const large = [3, 3].map((n) => up.addBlob(n * MiB));
  const third = up.addBlob(2 * MiB);
  const { app, url } = await cacheOnTmpfs(t, 'held-by-fills', upUrl);
  // Each large body over about a second and a half: the third asks while both have reserved
  // their room and written little of it, and nothing kept is there to evict.
  up.options.rate = 2 * MiB;
  const filling = large.map((b) => fetchHash(`${url}/cas/sha256/${b.hex}`));
  await sleep(300);
  const passed = await fetchHash(`${url}/cas/sha256/${third.hex}`);
  t.same([passed.status, passed.hash], [200, third.hex], 'the third served, passed through');
  t.equal(app.cache.store.failures, 0, 'no storage failure: the room comes back as the fills end');
  t.notOk(app.cache.store.isFull(), 'no cool-down for every fill');
  const got = await Promise.all(filling);
  await app.cache.fills.drain();
  t.same(got.map((g) => [g.status, g.hash]), large.map((b) => [200, b.hex]), 'both large ones served');
  t.same(large.map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), [true, true], 'and kept');
});

/** 64 KiB chunks of `body` at `rate` bytes per second. */
async function* paced(body: Buffer, rate: number): AsyncGenerator<Buffer> {
  const chunk = 64 * 1024;
  const start = Date.now();
  for (let off = 0; off < body.length; off += chunk) {
    yield body.subarray(off, off + chunk);
    await sleep(Math.max(0, start + ((off + chunk) / rate) * 1000 - Date.now()));
  }
}

// A body of unknown length (a fill's, a PUT's copy) holds what it wrote so far, nothing
// reserved ahead: about 2 MiB here, and the lack about 1 MiB more than that; beside the 2 MiB
// kept, it still explains it.
for (const kind of ['fill', 'fill of unknown length', 'PUT of unknown length'] as const) t.test(`the objects kept and a ${kind} in progress, written in part, hold the room together, and evicting the objects would not make it: a large fill passes through, evicting nothing, with no storage failure`, { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.putCacheControl = 'public, max-age=31536000, immutable'; // what a PUT's answer says of a public blob: kept
  const kept = [1, 1].map(() => up.addBlob(MiB));
  const filling = kind === 'PUT of unknown length' ? randomBlob(3 * MiB) : up.addBlob(3 * MiB, undefined, kind === 'fill of unknown length');
  const large = up.addBlob(6 * MiB);
  const { app, url } = await cacheOnTmpfs(t, `held-by-kept-and-${kind.replaceAll(' ', '-')}`, upUrl);
  for (const b of kept) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  // The 3 MiB body over about a second and a half; the large one asks when it has written
  // about 2 MiB. The 8 MiB disk lacks about 4 MiB for it: more than the objects kept would
  // give back (2), than the fill has left to write (1), than both; not more than all the
  // cache's own use of the disk. Not a failing disk.
  const rate = 2 * MiB;
  let first: Promise<{ status: number; hash: string }>;
  if (kind === 'PUT of unknown length') {
    const put = request(`${url}/cas/sha256/${filling.hex}`, { method: 'PUT', body: Readable.from(paced(filling.body, rate)), headers: { authorization: 'Bearer w' } });
    first = put.then(async (res) => {
      await res.body.dump();
      return { status: res.statusCode, hash: sha256(up.puts.get(`/cas/sha256/${filling.hex}`) ?? Buffer.alloc(0)) };
    });
  } else {
    up.options.rate = rate;
    first = fetchHash(`${url}/cas/sha256/${filling.hex}`);
  }
  await sleep(1000);
  up.options.rate = undefined;
  const passed = await fetchHash(`${url}/cas/sha256/${large.hex}`);
  t.same([passed.status, passed.hash], [200, large.hex], 'the large one served');
  t.equal(app.cache.store.failures, 0, 'no storage failure');
  t.notOk(app.cache.store.isFull(), 'no cool-down for every fill');
  const got = await first;
  await app.cache.fills.drain();
  t.same([got.status, got.hash], [kind === 'PUT of unknown length' ? 201 : 200, filling.hex], `the ${kind} in progress done`);
  t.same([...kept, filling, large].map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), [true, true, true, false], `the objects kept and the ${kind}'s kept; the large one passed through`);
});

t.test('a small body whose commit finds the disk full while the cache holds objects: not kept, no storage failure; the reservations after it evict to make room', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const kept = [1, 1, 1, 1, 1].map(() => up.addBlob(MiB));
  const small = Array.from({ length: 8 }, () => up.addBlob(4096));
  const { app, url } = await cacheOnTmpfs(t, 'commit-full', upUrl);
  for (const b of kept) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  // Something fills the rest of the disk; the free-space figure a small reservation takes
  // (up to a second old) still shows room: the body's commit meets a full disk.
  const filler = path.join(app.cache.store.dir, 'filler');
  t.teardown(() => rmSync(filler, { force: true }));
  t.equal(fillUp(filler).code, 'ENOSPC', 'the rest of the disk taken');
  const first = await fetchHash(`${url}/cas/sha256/${small[0]!.hex}`);
  await app.cache.fills.drain();
  t.same([first.status, first.hash], [200, small[0]!.hex], 'served');
  t.notOk(app.cache.store.has(casId({ algo: 'sha256', hex: small[0]!.hex })), 'not kept');
  t.equal(app.cache.store.failures, 0, 'no storage failure: the disk holds what the cache keeps');
  t.notOk(app.cache.store.isFull(), 'no cool-down');
  // Once the figure is a second old, a reservation reads the disk again (in the background,
  // the one that finds it old taking the old figure): the least recently used make room.
  await sleep(1100);
  const isKept = (hex: string): boolean => app.cache.store.has(casId({ algo: 'sha256', hex }));
  let keptOne: string | undefined;
  for (const b of small.slice(1)) {
    t.equal((await fetchHash(`${url}/cas/sha256/${b.hex}`)).hash, b.hex, 'served');
    await app.cache.fills.drain();
    if (isKept(b.hex)) {
      keptOne = b.hex;
      break;
    }
    await sleep(100);
  }
  t.ok(keptOne, 'a small body kept again');
  t.ok(app.cache.store.evicted.objects >= 1, `room made by evicting (${app.cache.store.evicted.objects})`);
  t.equal(app.cache.store.failures, 0, 'still no storage failure');
});

t.test('fills that make room at the same moment evict no more than they need between them: as many as the same fills one after another', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const stored = Array.from({ length: 6 }, () => up.addBlob(MiB));
  // more than the filesystem has room for beside the margin a fill keeps free
  const burst = Array.from({ length: 6 }, () => up.addBlob(256 * 1024));
  const evictedBy = async (name: string, get: (hexes: string[]) => Promise<unknown>): Promise<number> => {
    const { app, url } = await cacheOnTmpfs(t, name, upUrl);
    for (const b of stored) await fetchHash(`${url}/cas/sha256/${b.hex}`);
    await app.cache.fills.drain();
    const before = app.cache.store.evicted.objects;
    await get(burst.map((b) => `${url}/cas/sha256/${b.hex}`));
    await app.cache.fills.drain();
    t.same(burst.map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), burst.map(() => true), `${name}: every object of the burst kept`);
    return app.cache.store.evicted.objects - before;
  };
  const oneByOne = await evictedBy('room-sequential', async (urls) => {
    for (const u of urls) await fetchHash(u);
  });
  t.ok(oneByOne > 0, `one after another, they made room (${oneByOne} evicted)`);
  const atOnce = await evictedBy('room-concurrent', async (urls) => {
    // every answer held until all are asked, then let go at once: their reservations meet
    const releases = burst.map((b) => up.hold(`/cas/sha256/${b.hex}`));
    const asked = up.requests.length;
    const got = Promise.all(urls.map((u) => fetchHash(u)));
    await eventually('every request upstream', () => up.requests.length === asked + urls.length);
    for (const release of releases) release();
    await got;
  });
  t.equal(atOnce, oneByOne, 'at the same moment: as many evicted (each made the room it needed from the same free-space figure)');
});

t.test('a disk that holds the whole budget, a body of unknown length: the write that finds it full makes room, with no storage failure', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blobs = [1, 1, 1, 1, 1].map((n) => up.addBlob(n * MiB));
  const chunked = up.addBlob(3 * MiB);
  // No Content-Length: nothing is reserved for it, and its writes meet the full disk.
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${chunked.hex}`) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(chunked.body);
    return true;
  };
  const { app, url } = await cacheOnTmpfs(t, 'makeroom-chunked', upUrl);
  for (const b of blobs) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  const miss = await fetchHash(`${url}/cas/sha256/${chunked.hex}`);
  await app.cache.fills.drain();
  t.same([miss.status, miss.hash, miss.size], [200, chunked.hex, 3 * MiB], 'served whole');
  t.equal((await fetchHash(`${url}/cas/sha256/${chunked.hex}`)).xcache, 'HIT', 'and kept');
  t.ok(app.cache.store.evicted.objects > 0, `the least recently used evicted for it (${app.cache.store.evicted.objects})`);
  t.equal(app.cache.store.failures, 0, 'no storage failure');
});

t.test('a body of unknown length that finds the disk full evicts about what it still writes, not the whole cache', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blobs = [1, 1, 1, 1, 1].map((n) => up.addBlob(n * MiB));
  const { app, url } = await cacheOnTmpfs(t, 'makeroom-chunked-steps', upUrl);
  for (const b of blobs) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  // A little more than the disk has free once the five are stored: its writes meet the full disk near the end.
  const fs = statfsSync(app.cache.store.dir);
  const chunked = up.addBlob(fs.bavail * fs.bsize + MiB / 2);
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${chunked.hex}`) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no Content-Length: nothing reserved
    res.end(chunked.body);
    return true;
  };
  const miss = await fetchHash(`${url}/cas/sha256/${chunked.hex}`);
  await app.cache.fills.drain();
  t.same([miss.status, miss.hash], [200, chunked.hex], 'served whole');
  t.ok(app.cache.store.has(casId({ algo: 'sha256', hex: chunked.hex })), 'and kept');
  const { evicted } = app.cache.store;
  t.ok(evicted.objects > 0, 'the least recently used made room for it');
  t.ok(evicted.bytes <= chunked.body.length, `no more evicted than the body it made room for (${evicted.bytes} bytes for ${chunked.body.length})`);
  t.ok(blobs.slice(-2).every((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), 'the most recently used are still there');
});

t.test('a body of unknown length grown larger than the cache, then than the disk: the objects kept are not evicted for it, and the disk has no cool-down', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const kept = [1, 1].map((n) => up.addBlob(n * MiB));
  const huge = up.addBlob(9 * MiB); // more than the size limit (2 MiB), and than the filesystem (8 MiB)
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${huge.hex}`) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no Content-Length: nothing reserved
    res.end(huge.body);
    return true;
  };
  const { app, url } = await cacheOnTmpfs(t, 'unkept-chunked', upUrl, '2MiB');
  for (const b of kept) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  const got = await fetchHash(`${url}/cas/sha256/${huge.hex}`);
  await app.cache.fills.drain();
  t.same([got.status, got.hash], [200, huge.hex], 'served whole');
  t.same(kept.map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), kept.map(() => true), 'every object kept is still there');
  t.same(app.cache.store.evicted, { objects: 0, bytes: 0 }, 'none evicted for a body no entry will take');
  t.notOk(app.cache.store.isFull(), 'and no cool-down: the disk takes the writes of the objects it keeps');
});

t.test('a body not kept that fills the disk is logged as that, at info: not as a disk failure', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('8m', 'unkept-log');
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const huge = up.addBlob(9 * MiB); // more than the size limit (2 MiB), and than the filesystem (8 MiB)
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${huge.hex}`) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no Content-Length: written until it is too large
    res.end(huge.body);
    return true;
  };
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', dir, '--max-size', '2MiB']);
  t.teardown(async () => {
    await cache.stop();
    await up.stop();
    await unmount();
  });
  const got = await fetchHash(`${cache.url}/cas/sha256/${huge.hex}`);
  t.same([got.status, got.hash], [200, huge.hex], 'served whole');
  await eventually('the full disk is logged', () => /filled the disk/.test(cache.stderr()));
  const lines = cache.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string });
  t.match(lines.find((l) => /filled the disk/.test(l.msg)), { level: 30, msg: 'a body not kept filled the disk: its fill goes on from memory' }, 'at info');
  t.notOk(lines.some((l) => l.level >= 40), 'no warning or error: nothing is wrong with the disk');
});

t.test('a body of unknown length whose next chunk takes it past the cache\'s size meets a full disk: not a disk failure', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('8m', 'unkept-crossing');
  const filler = path.join(dir, 'filler');
  t.teardown(async () => {
    rmSync(filler, { force: true });
    await unmount();
  });
  const logs: string[] = [];
  const log = pino({ level: 'info' }, new Writable({ write(chunk: Buffer, _e, cb) { logs.push(chunk.toString()); cb(); } }));
  const maxSize = 2 * MiB;
  const store = new DiskStore(path.join(dir, 'data'), maxSize, log);
  await store.open();
  const body = randomBytes(maxSize + MiB);
  const upstream = new PassThrough();
  const fill = new Fill(store, log, {
    id: casId({ algo: 'sha256', hex: sha256(body) }),
    request: async () => ({ statusCode: 200, headers: { 'transfer-encoding': 'chunked' }, body: upstream }), // no Content-Length: nothing reserved
    decide: () => ({ status: 200, headers: {}, meta: { key: 'k', status: 200, headers: {} } }),
  });
  await fill.head;
  const reader = new FillCursor(fill, fill.acquireFile(), 0, Infinity);
  upstream.write(body.subarray(0, MiB));
  await eventually('the first MiB written', () => fill.written === MiB);
  t.equal(fillUp(filler).code, 'ENOSPC', 'something else took the rest of the filesystem');
  upstream.end(body.subarray(MiB)); // one chunk: it takes the body past the size limit
  const got: Buffer[] = [];
  const scratch = Buffer.alloc(MiB);
  for (let c; (c = await reader.next(() => scratch));) got.push(Buffer.from(c));
  fill.release();
  await fill.done;
  t.ok(Buffer.concat(got).equals(body), 'its reader got the whole body');
  t.same([store.failures, store.isFull()], [0, false], 'no storage failure, no cool-down: the body was known not to be kept before that write');
  t.same(logs.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level >= 40), [], 'nothing logged as a warning or error');
  t.equal(store.count, 0, 'nothing kept');
});

t.test('a disk held by something else: a large fill that evicting every object would not make room for evicts none of them', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const small = [1, 1].map((n) => up.addBlob(n * MiB));
  const large = up.addBlob(3 * MiB);
  const { app, url } = await cacheOnTmpfs(t, 'makeroom-foreign', upUrl);
  for (const b of small) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  const filler = path.join(app.cache.store.dir, 'filler'); // the data directory is the tmpfs
  t.equal(fillUp(filler).code, 'ENOSPC', 'something else took the rest of the filesystem');
  t.teardown(() => rmSync(filler, { force: true }));
  const got = await fetchHash(`${url}/cas/sha256/${large.hex}`);
  t.same([got.status, got.hash], [200, large.hex], 'the large object passed through');
  t.same(small.map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), [true, true], 'the objects kept are all still there');
  t.same(app.cache.store.evicted, { objects: 0, bytes: 0 }, 'none evicted');
  t.equal(app.cache.store.failures, 1, 'a storage failure, as for any disk full of something else');
});

t.test('room freed since the free-space figure was read (less than a second before) is seen before evicting: nothing evicted for a fill the disk has room for', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const kept = [1, 1].map((n) => up.addBlob(n * MiB));
  const reading = up.addBlob(MiB);
  const later = up.addBlob(768 * 1024);
  const { app, url } = await cacheOnTmpfs(t, 'makeroom-fresh-figure', upUrl);
  for (const b of kept) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  // Something else takes all but 2.5 MiB; a 1 MiB fill reads the figure (1.5 MiB left after
  // it); then that room comes back. A 768 KiB fill, within the second, would find 1.5 MiB
  // on the figure, less than it needs with the 1 MiB margin.
  const filler = path.join(app.cache.store.dir, 'filler');
  t.teardown(() => rmSync(filler, { force: true }));
  const fs = statfsSync(app.cache.store.dir);
  const fd = openSync(filler, 'w');
  writeSync(fd, Buffer.alloc(fs.bavail * fs.bsize - 2.5 * MiB));
  closeSync(fd);
  t.equal((await fetchHash(`${url}/cas/sha256/${reading.hex}`)).hash, reading.hex);
  await app.cache.fills.drain();
  rmSync(filler);
  t.equal((await fetchHash(`${url}/cas/sha256/${later.hex}`)).hash, later.hex);
  await app.cache.fills.drain();
  t.same(app.cache.store.evicted, { objects: 0, bytes: 0 }, 'nothing evicted: the disk had room');
  t.same([...kept, reading, later].map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), [true, true, true, true], 'every object kept');
  t.equal(app.cache.store.failures, 0, 'no storage failure');
});

t.test('large fills that wait their turn to make room behind one that finds a storage failure are refused with it: one failure, one line logged, nothing evicted', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const small = [1, 1].map((n) => up.addBlob(n * MiB));
  const large = [3, 3, 3, 3].map((n) => up.addBlob(n * MiB));
  const { app, url } = await cacheOnTmpfs(t, 'makeroom-foreign-queued', upUrl);
  const logs: string[] = [];
  app.cache.store.useLogger(pino({ level: 'error' }, new Writable({ write(chunk: Buffer, _e, cb) { logs.push(chunk.toString()); cb(); } })));
  for (const b of small) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  const filler = path.join(app.cache.store.dir, 'filler');
  t.equal(fillUp(filler).code, 'ENOSPC', 'something else took the rest of the filesystem');
  t.teardown(() => rmSync(filler, { force: true }));
  const got = await Promise.all(large.map((b) => fetchHash(`${url}/cas/sha256/${b.hex}`)));
  t.same(got.map((g) => [g.status, g.hash]), large.map((b) => [200, b.hex]), 'every large object passed through');
  t.equal(app.cache.store.failures, 1, 'one storage failure, not one for each fill that waited its turn');
  t.equal(logs.filter((l) => /cache storage failure/.test(l)).length, 1, 'logged once');
  t.same(app.cache.store.evicted, { objects: 0, bytes: 0 }, 'none evicted');
});

t.test('a PUT takes room for its body before writing it, evicting nothing, and one larger than the cache is only forwarded: its copy filled the disk, and every fill had a cool-down', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.putCacheControl = 'public, max-age=31536000, immutable'; // what a PUT's answer says of a public blob: kept
  const { app, url } = await cacheOnTmpfs(t, 'put-room', upUrl); // 8 MiB of disk, a budget of 7 MiB
  const put = async (body: Buffer) => {
    const hex = sha256(body);
    const res = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body, headers: { authorization: 'Bearer w' } });
    await res.body.dump();
    return { status: res.statusCode, hex };
  };

  const large = Buffer.alloc(12 * MiB, 7);
  const forwarded = await put(large);
  t.equal(forwarded.status, 201, 'larger than the cache: forwarded');
  t.ok(up.puts.get(`/cas/sha256/${forwarded.hex}`)?.equals(large), 'whole');
  t.same([app.cache.store.failures, app.cache.store.isFull()], [0, false], 'no storage failure, no cool-down');

  const small = await put(Buffer.alloc(MiB, 8));
  t.equal((await fetchHash(`${url}/cas/sha256/${small.hex}`)).xcache, 'HIT', 'a PUT the disk has room for: kept');
  const blobs = [1, 1, 1, 1].map((n) => up.addBlob(n * MiB));
  for (const b of blobs) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  const body = Buffer.alloc(3 * MiB, 9);
  const unkept = await put(body);
  t.equal(unkept.status, 201, 'one the disk lacks room for: forwarded');
  t.ok(up.puts.get(`/cas/sha256/${unkept.hex}`)?.equals(body), 'whole');
  t.same([app.cache.store.failures, app.cache.store.isFull()], [0, false], 'a disk that holds the budget: no storage failure');
  t.same(app.cache.store.evicted, { objects: 0, bytes: 0 }, 'nothing evicted for it');
  t.notOk(app.cache.store.has(casId({ algo: 'sha256', hex: unkept.hex })), 'and not kept (a GET fetches it, evicting as fills do)');
});

/** A real origin, and a cache of it on a tmpfs (cacheOnTmpfs) that keeps five of its 1 MiB blobs (`hexes`). */
async function originBlobsKept(t: Test, name: string) {
  const origin = await startOrigin(t, { dataDir: path.join(t.testdir(), 'origin') });
  const { app, url } = await cacheOnTmpfs(t, name, origin.url); // 8 MiB of disk, a budget of 7 MiB
  const hexes = [];
  for (let i = 0; i < 5; i++) hexes.push(await uploadBlob(origin.url, randomBytes(MiB)));
  for (const hex of hexes) await fetchHash(`${url}/cas/sha256/${hex}`);
  await app.cache.fills.drain();
  return { origin, app, url, hexes };
}

t.test('a PUT with a token upstream refuses evicts nothing: any client could empty the cache with a Content-Length', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { app, url, hexes } = await originBlobsKept(t, 'put-refused');
  const body = Buffer.alloc(3 * MiB, 1);
  const res = await request(`${url}/cas/sha256/${sha256(body)}`, { method: 'PUT', body, headers: { authorization: 'Bearer not-a-token' } });
  t.equal(res.statusCode, 403, 'refused upstream');
  await res.body.dump();
  t.same(app.cache.store.evicted, { objects: 0, bytes: 0 }, 'nothing evicted');
  t.same(hexes.map((hex) => app.cache.store.has(casId({ algo: 'sha256', hex }))), hexes.map(() => true), 'every object still kept');
});

t.test('a PUT that announces a body and sends none takes no room: with any token, it held what its Content-Length named, and fills evicted for it', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { origin, app, url, hexes } = await originBlobsKept(t, 'put-withheld');
  const next = await uploadBlob(origin.url, randomBytes(MiB / 2)); // the disk has room for it
  // Every byte the disk has free but the store's margin: a fill then lacks room. The upstream
  // never sees this PUT (its client sends the head with the first byte of the body), so it
  // cannot refuse the token: only a head limit (clientHeaderTimeout) would end it.
  const fs = statfsSync(app.cache.store.dir);
  const declared = fs.bavail * fs.bsize - MiB - 64 * 1024;
  const withheld = await headOnlyPut(url, `/cas/sha256/${next}`, 'not-a-token', declared);
  t.teardown(() => void withheld.socket.destroy());
  const got = await fetchHash(`${url}/cas/sha256/${next}`);
  t.same([got.status, got.hash], [200, next], 'a miss meanwhile served');
  await app.cache.fills.drain();
  t.same(app.cache.store.evicted, { objects: 0, bytes: 0 }, 'nothing evicted for the body never sent');
  t.same(hexes.map((hex) => app.cache.store.has(casId({ algo: 'sha256', hex }))), hexes.map(() => true), 'every object still kept');
  t.ok(app.cache.store.has(casId({ algo: 'sha256', hex: next })), 'and the miss kept too');
  t.equal(app.cache.store.failures, 0, 'no storage failure');
});

t.test('a PUT of unknown length that finds the disk full is only forwarded: no storage failure, no cool-down for every fill', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.putCacheControl = 'public, max-age=31536000, immutable'; // what a PUT's answer says of a public blob: kept
  const { app, url } = await cacheOnTmpfs(t, 'put-chunked-full', upUrl); // 8 MiB of disk, a budget of 7 MiB
  const blobs = [1, 1, 1, 1, 1].map((n) => up.addBlob(n * MiB));
  for (const b of blobs) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  // Within the budget, more than the disk has free once the five are stored.
  const fs = statfsSync(app.cache.store.dir);
  const body = randomBytes(fs.bavail * fs.bsize + MiB);
  t.ok(body.length <= app.cache.store.maxSize, 'a body the cache could hold');
  const hex = sha256(body);
  const res = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body: Readable.from([body]), headers: { authorization: 'Bearer w' } }); // no Content-Length: nothing reserved
  await res.body.dump();
  t.equal(res.statusCode, 201, 'forwarded');
  t.ok(up.puts.get(`/cas/sha256/${hex}`)?.equals(body), 'whole');
  t.same([app.cache.store.failures, app.cache.store.isFull()], [0, false], 'no storage failure, no cool-down: the disk only lacked the free room a PUT is kept in');
  t.same(app.cache.store.evicted, { objects: 0, bytes: 0 }, 'nothing evicted for it');
  t.notOk(app.cache.store.has(casId({ algo: 'sha256', hex })), 'and not kept');
});

t.test('a PUT whose copy the disk takes only part of a chunk of, then room comes: never kept with the part missing (a hole of zeros served as the blob)', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.putCacheControl = 'public, max-age=31536000, immutable'; // what a PUT's answer says of a public blob: kept
  const { app, url } = await cacheOnTmpfs(t, 'put-short-write', upUrl);
  // The disk full but for two pages: a 16 KiB write gets 8 KiB of it in (a short write, not ENOSPC).
  const filler = path.join(app.cache.store.dir, 'filler');
  fillDisk(filler);
  truncateSync(filler, statSync(filler).size - 8192);
  const { hex, body } = up.serveBlob(randomBlob(80 * 1024)); // what a GET of it gets upstream once uploaded
  const sent = new PassThrough();
  const answer = request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body: sent, headers: { authorization: 'Bearer w' } }); // no Content-Length: nothing reserved
  sent.write(body.subarray(0, 16 * 1024));
  const tmp = path.join(app.cache.store.dir, 'tmp');
  await eventually('the copy began', () => readdirSync(tmp).some((n) => statSync(path.join(tmp, n)).size > 0));
  await sleep(100); // what the copy does with the rest of that chunk
  rmSync(filler); // room again, for the chunks that follow
  sent.end(body.subarray(16 * 1024));
  const res = await answer;
  await res.body.dump();
  t.equal(res.statusCode, 201, 'forwarded');
  t.ok(up.puts.get(`/cas/sha256/${hex}`)?.equals(body), 'upstream has it whole');
  await app.cache.fills.drain();
  const got = await fetchHash(`${url}/cas/sha256/${hex}`);
  t.same([got.status, got.hash], [200, hex], `the cache answers the blob's own bytes (X-Cache ${got.xcache})`);
  t.equal(app.cache.store.failures, 0, 'a disk without room is no storage failure');
});

/** The open files of `pids` (this process by default) whose paths name one of `hexes` (a blob's file, held by a reader). */
function openFilesOf(hexes: readonly string[], pids: readonly (number | 'self')[] = ['self']): string[] {
  const target = (pid: number | 'self', fd: string): string => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return ''; // closed meanwhile
    }
  };
  const fds = (pid: number | 'self'): string[] => {
    try {
      return readdirSync(`/proc/${pid}/fd`);
    } catch {
      return []; // gone meanwhile
    }
  };
  return pids.flatMap((pid) => fds(pid).map((fd) => target(pid, fd))).filter((l) => hexes.some((h) => l.includes(h)));
}

/** A client that asks for `hex` and reads nothing: the cache's file of a large body stays open. */
function slowReader(port: number, hex: string): net.Socket {
  const socket = net.connect(port, '127.0.0.1', () => socket.write(`GET /cas/sha256/${hex} HTTP/1.1\r\nHost: test\r\n\r\n`));
  socket.pause();
  return socket;
}

/**
 * What a paused client reads once it reads again: its status line and its body's hash, once
 * the body its Content-Length announced has come (or after 10 s, with what has: a cut body).
 */
function readRest(socket: net.Socket): Promise<[string, string]> {
  return new Promise((resolve) => {
    // The body is hashed as it comes (8 MiB bodies were collected and copied, to be hashed);
    // the head is kept until its end has come.
    let head = Buffer.alloc(0);
    let headEnd = -1;
    const body = createHash('sha256');
    const done = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      resolve([head.subarray(0, 12).toString(), body.digest('hex')]);
    };
    let received = 0;
    let expected = Infinity; // the body's Content-Length, once the head has come
    const onData = (c: Buffer) => {
      if (headEnd < 0) {
        head = Buffer.concat([head, c]);
        headEnd = head.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const length = /\r\ncontent-length: *(\d+)/i.exec(head.subarray(0, headEnd).toString())?.[1];
        if (length !== undefined) expected = Number(length);
        c = head.subarray(headEnd + 4);
      }
      body.update(c);
      received += c.length;
      if (received >= expected) done();
    };
    const timer = setTimeout(done, 10_000);
    socket.on('data', onData);
    socket.resume();
  });
}

/** Blobs made once for the slow-reader tests below (a cache and an upstream each): 400 MiB of bodies made anew took about 2 s of CPU. */
const readerBodies = new Map<string, { hex: string; body: Buffer }>();

/** Blobs of `sizes` (MiB) served by `up`, each the n-th of its size made for this file. */
function readerBlobs(up: UpstreamFixture, sizes: readonly number[]): { hex: string; body: Buffer }[] {
  return sizes.map((n, i) => {
    const name = `${n} MiB, ${sizes.slice(0, i).filter((m) => m === n).length}`;
    let blob = readerBodies.get(name);
    if (!blob) readerBodies.set(name, (blob = randomBlob(n * MiB)));
    return up.serveBlob(blob);
  });
}

// Five 8 MiB objects on a 48 MiB disk under a 42 MiB budget leave 8 MiB free: a 16 MiB fill
// needs two evicted. The `held` least recently used are being read by clients that read
// nothing: their room comes back only when those close, whatever is evicted. A fill of known
// length makes its room before it starts; one of unknown length (chunked) as its writes find
// the disk full.
for (const { held, chunked, kept } of [
  // the next two least recently used make the room
  { held: 2, chunked: false, kept: [true, true, false, false, true, true] },
  // the one object not being read is not room enough: nothing evicted, the large one passed through
  { held: 4, chunked: false, kept: [true, true, true, true, true, false] },
  { held: 2, chunked: true, kept: [true, true, false, false, true, true] },
  // the one object not being read is evicted, then the disk is full again: the large one is not kept
  { held: 4, chunked: true, kept: [true, true, true, true, false, false] },
]) t.test(`${held} objects being read by slow clients, a fill of ${chunked ? 'unknown' : 'known'} length: their room is not counted as made by evicting them, and a fill that finds none is passed through with no storage failure`, { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  // larger than what the sockets of a client that reads nothing take in: its file stays open
  const blobs = readerBlobs(up, [8, 8, 8, 8, 8, 16]);
  const large = blobs[5]!;
  // No Content-Length: nothing is reserved for it, and its writes meet the full disk.
  if (chunked) up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${large.hex}`) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(large.body);
    return true;
  };
  const { dir, unmount } = mountTmpfs('48m', 'evicted-open');
  const app = await buildCacheServer({ ...resolveCacheConfig({ region: 'room', listen: '127.0.0.1:0', upstream: upUrl, data: dir, maxSize: '42MiB' }), logLevel: 'silent' });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    await unmount();
  });
  for (const b of blobs.slice(0, 5)) await fetchHash(`${url}/cas/sha256/${b.hex}`);
  await app.cache.fills.drain();
  const readers = blobs.slice(0, held).map((b) => slowReader(Number(new URL(url).port), b.hex));
  t.teardown(() => readers.forEach((s) => s.destroy())); // before the cache closes (teardowns run last first)
  await eventually('the slow readers\' files open', () => openFilesOf(blobs.slice(0, held).map((b) => b.hex)).length >= held, 5000);
  for (const b of blobs.slice(held, 5)) t.equal((await fetchHash(`${url}/cas/sha256/${b.hex}`)).xcache, 'HIT'); // the read ones the least recently used again
  const larger = await fetchHash(`${url}/cas/sha256/${large.hex}`);
  t.same([larger.status, larger.hash], [200, large.hex], 'the large object served whole');
  await app.cache.fills.drain();
  t.same(blobs.map((b) => app.cache.store.has(casId({ algo: 'sha256', hex: b.hex }))), kept, 'the objects being read are not evicted for room they would not give back');
  const evicted = kept.slice(0, 5).filter((k) => !k).length;
  t.same(app.cache.store.evicted, { objects: evicted, bytes: evicted * 8 * MiB }, 'no more evicted than the room needed');
  t.same(await Promise.all(readers.map(readRest)), blobs.slice(0, held).map((b) => ['HTTP/1.1 200', b.hex]), 'the slow readers got their whole objects');
  t.equal(app.cache.store.failures, 0, 'no storage failure');
  t.notOk(app.cache.store.isFull(), 'no cool-down: the disk takes writes');
});

/**
 * A cache of two workers on a 48 MiB tmpfs under a 42 MiB budget (see the tests above), with
 * `blobs` stored one after another (each a connection of its own: the workers take them in
 * turn). `stored`: whether a blob's complete body is on its disk.
 */
async function workersHolding(t: Test, upUrl: string, blobs: readonly { hex: string }[]): Promise<{ cache: RunningServer; dir: string; stored: (hex: string) => boolean }> {
  const { dir, unmount } = mountTmpfs('48m', 'evicted-open-workers');
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', dir, '--workers', '2', '--max-size', '42MiB'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  t.teardown(async () => {
    await cache.stop();
    await unmount();
  });
  const stored = (hex: string): boolean => {
    const file = path.join(dir, casId({ algo: 'sha256', hex }));
    return existsSync(file) && (statSync(file).mode & 0o777) !== 0;
  };
  for (const b of blobs) {
    await fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true });
    await eventually('stored', () => stored(b.hex), 5000);
  }
  return { cache, dir, stored };
}

/**
 * The hits `cache` counts, asked through /-/stats: every worker sends the primary what it has
 * not reported yet (its hits, the bodies its readers opened and closed) before its tally
 * (cluster/link.ts), so a count that includes a hit comes after the primary took it in.
 * Asked with nothing new to report, it is the barrier that a report has been taken in.
 */
async function reportedHits(cache: RunningServer): Promise<number> {
  return ((await (await request(`${cache.url}/-/stats`)).body.json()) as { total: { hits: number } }).total.hits;
}

/**
 * Hits `blobs` through `cache`, one after another: each the most recently used in the
 * primary's index once its worker has reported it (two workers' reports of hits closer
 * together may come in either order).
 */
async function hitInTurn(t: Test, cache: RunningServer, blobs: readonly { hex: string }[]): Promise<void> {
  for (const b of blobs) {
    const before = await reportedHits(cache);
    t.equal((await fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true })).xcache, 'HIT');
    await eventually('the hit reported', async () => (await reportedHits(cache)) > before, 5000);
  }
}

/** Asks for `large` through `cache`; once its fill has ended (its temp file committed or removed), what `cache` evicted in all. */
async function fillAndCountEvicted(t: Test, cache: RunningServer, dir: string, large: { hex: string }): Promise<{ evictedObjects: number; evictedBytes: number }> {
  const larger = await fetchHash(`${cache.url}/cas/sha256/${large.hex}`, {}, { fresh: true });
  t.same([larger.status, larger.hash], [200, large.hex], 'the large object served whole');
  await eventually('its fill ended', () => readdirSync(path.join(dir, 'tmp')).length === 0, 5000);
  const stats = (await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { evictedObjects: number; evictedBytes: number } };
  return stats.store;
}

// The same with two workers: the slow readers' files are open in the workers (the
// connections taken in turn: two each when four read), and the primary evicts. Each worker
// reports the bodies it reads, so the primary passes them over, and a fill counts the room
// held by every worker's readers: a 32 MiB fill lacks 25 MiB, more than the readers of any
// one worker but the one that would hold all four hold.
// Then the readers end: a worker reports the last reader of a body closing too, and the
// primary drops what a worker that died was reading, so the next fill that lacks room (16 MiB,
// as much as two of the bodies read) evicts two of those as the least recently used. One
// cache for both halves: the second starts from the state the first leaves (40 MiB kept, the
// read bodies the least recently used); two readers end by dying (their answers are cut), four
// by reading to the end (the test of the whole answers a slow reader gets).
for (const { held, largeMiB, kept, end } of [
  { held: 2, largeMiB: 16, kept: [true, true, false, false, true, true], end: 'the workers reading die' },
  { held: 4, largeMiB: 32, kept: [true, true, true, true, true, false], end: 'the slow clients read to the end' },
] as const) t.test(`two workers, ${held} objects being read by slow clients: the primary does not evict them for room they would not give back, and a fill that finds none is passed through with no storage failure; then ${end}: the bodies they read are no longer passed over`, { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blobs = readerBlobs(up, [8, 8, 8, 8, 8, largeMiB, 16]);
  const next = blobs.pop()!;
  const { cache, dir, stored } = await workersHolding(t, upUrl, blobs.slice(0, 5));
  const readers = blobs.slice(0, held).map((b) => slowReader(Number(new URL(cache.url).port), b.hex));
  t.teardown(() => readers.forEach((s) => s.destroy())); // before the cache stops (teardowns run last first)
  const workers = descendantsOf(cache.child.pid!);
  const hexes = blobs.slice(0, held).map((b) => b.hex);
  await eventually('the slow readers\' files open in the workers', () => openFilesOf(hexes, workers).length >= held, 5000);
  await eventually('their hits reported', async () => (await reportedHits(cache)) >= held, 5000);
  await hitInTurn(t, cache, blobs.slice(held, 5)); // the read ones the least recently used again
  const evicted = await fillAndCountEvicted(t, cache, dir, blobs[5]!);
  t.same(blobs.map((b) => stored(b.hex)), kept, 'the objects being read are not evicted for room they would not give back');
  const count = kept.slice(0, 5).filter((k) => !k).length;
  t.same([evicted.evictedObjects, evicted.evictedBytes], [count, count * 8 * MiB], 'no more evicted than the room needed');
  t.notMatch(cache.stderr(), /storage failure/, 'no storage failure, no cool-down');

  if (end === 'the workers reading die') await killReadingWorkers(cache, workers, hexes);
  else {
    t.same(await Promise.all(readers.map(readRest)), blobs.slice(0, held).map((b) => ['HTTP/1.1 200', b.hex]), 'the slow readers got their whole objects');
    await eventually('their files closed', () => openFilesOf(hexes, workers).length === 0, 5000);
    await reportedHits(cache); // their closing reported
  }
  // Passed over, the bodies read became the most recently used: the least recently used again.
  await hitInTurn(t, cache, blobs.slice(held).filter((b) => stored(b.hex)));
  const after = await fillAndCountEvicted(t, cache, dir, next);
  // (the readers' hits were reported in either order: which two of four are the least recently used is not known)
  t.same([blobs.slice(0, held).filter((b) => !stored(b.hex)).length, blobs.slice(held, 5).map((b) => stored(b.hex)), stored(next.hex)], [2, kept.slice(held, 5), true], 'two of the bodies read evicted: nobody reads them now; the others kept');
  t.same([after.evictedObjects - evicted.evictedObjects, after.evictedBytes - evicted.evictedBytes], [2, 16 * MiB], 'and no more');
});

/** Kills the workers among `workers` that have one of `hexes` open, and waits for the cache to answer again. */
async function killReadingWorkers(cache: RunningServer, workers: readonly number[], hexes: readonly string[]): Promise<void> {
  const reading = workers.filter((pid) => openFilesOf(hexes, [pid]).length > 0);
  for (const pid of reading) process.kill(pid, 'SIGKILL');
  // Replaced once the primary has taken in their deaths; both killed, the port is refused until a replacement listens.
  await eventually('the dead workers replaced', () => {
    const now = descendantsOf(cache.child.pid!);
    return now.length === workers.length && reading.every((pid) => !now.includes(pid));
  }, 10_000);
  await eventually('the cache answers', () => request(`${cache.url}/-/healthz`).then((r) => r.body.dump().then(() => r.statusCode === 200), () => false), 10_000);
}
