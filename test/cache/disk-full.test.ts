// A full disk turns the cache into a passthrough with a logged error, not a crash (blobs
// asked at once are still fetched once, from memory).
// The data directory is a real 8 MiB tmpfs mounted by the test (needs root).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { request } from 'undici';
import { resolveCacheConfig } from '../../src/cache/config.js';
import { DiskStore } from '../../src/cache/disk-store.js';
import { fillMemoryInUse } from '../../src/cache/fill.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { mountTmpfs } from '../helpers/tmpfs.js';
import { eventually } from '../helpers/wait.js';
import { sha256, UpstreamFixture } from './upstream-fixture.js';

const isRoot = process.getuid?.() === 0;

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
    unmount();
  });
  app.cache.store.useLogger(logger);

  const get = async (hex: string) => {
    const res = await request(`${url}/cas/sha256/${hex}`);
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, hash: sha256(body), xcache: res.headers['x-cache'] };
  };
  const diskMetrics = async (): Promise<string[]> => {
    const text = await (await request(`${url}/-/metrics`)).body.text();
    return text.split('\n').filter((l) => /^fleetcache_cache_(disk_refusing|storage_failures_total) /.test(l));
  };
  t.same(await diskMetrics(), ['fleetcache_cache_disk_refusing 0', 'fleetcache_cache_storage_failures_total 0'], 'metrics: the disk takes writes');
  const a = await get(big.hex);
  t.equal(a.status, 200);
  t.equal(a.hash, big.hex, 'the object larger than the disk is passed through whole');
  t.equal(up.count(`/cas/sha256/${big.hex}`), 1, 'upstream asked once: the refused fill\'s answer is what is passed through');
  t.ok(logs.some((l) => /no space left|storage failure/.test(l)), 'an error was logged');
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
  up.handler = (req, res) => {
    if (req.url !== `/cas/sha256/${huge.hex}`) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(huge.body.length) });
    let off = 0;
    const step = (): void => {
      if (off >= huge.body.length) return void res.end();
      res.write(huge.body.subarray(off, (off += 1024 * 1024)));
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
  let late: Promise<{ status: number; hash: string; xcache: unknown }> | undefined;
  let got = 0;
  const chunks: Buffer[] = [];
  for await (const c of reader.body as AsyncIterable<Buffer>) {
    chunks.push(c);
    got += c.length;
    if (!late && got > 10 * 1024 * 1024) late = get(huge.hex);
  }
  t.equal(sha256(Buffer.concat(chunks)), huge.hex, 'the reader got the whole body');
  t.same(Buffer.from(await ranged.body.arrayBuffer()).subarray(0, 100), huge.body.subarray(0, 100), `a range of it: its bytes (HTTP ${ranged.statusCode}, ${String(ranged.headers['x-cache'])})`);
  const lateGot = await late!;
  t.same([lateGot.status, lateGot.hash, lateGot.xcache], [200, huge.hex, 'MISS'], 'the late request was served whole by a fill of its own');
  t.equal(up.count(`/cas/sha256/${huge.hex}`), 3, 'upstream asked three times: the first fill, the range passed through, and the late one\'s fill');
  await t.rejects(stalled.body.arrayBuffer(), 'the client that fell behind is cut');
  t.equal(app.cache.store.count, 0, 'nothing kept');
  // Kept for their readers while they read (no file to fall back on), then given back.
  await eventually('the windows of the fills in memory given back', () => fillMemoryInUse() === 0);
});

t.test('the data directory removed under a running cache: requests pass through, no crash', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
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
