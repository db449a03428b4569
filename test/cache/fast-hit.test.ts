// Small hits answered before fastify (src/cache/fast-hit.ts) give exactly the answer of
// the full path: same status, headers and accounting; what it must not take goes on.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

async function get(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { method, headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  // Left out: the date, and the connection headers (undici closes after a HEAD).
  const { date: _date, connection: _connection, 'keep-alive': _keepAlive, ...rest } = res.headers;
  return { status: res.statusCode, headers: rest, body };
}

t.test('a memory hit: the same answer as the full path, counted the same', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(4096);
  const { url, app } = await startCache(t, { upstream: upUrl }, t.testdir());
  const path = `/cas/sha256/${hex}`;
  t.equal((await get(url + path)).headers['x-cache'], 'MISS');
  await app.cache.fills.drain();
  // The first hit reads the file; held in memory since, every answer below comes without it.
  const first = await get(url + path);
  t.equal(first.headers['x-cache'], 'HIT');
  rmSync(join(app.cache.store.dir, `cas.v1/sha256/${hex.slice(0, 2)}/${hex}`));

  const fast = await get(url + path);
  t.equal(fast.status, 200);
  t.same(fast.body, body);
  // HEAD is never taken by the fast path: fastify's serveHit answers it.
  const full = await get(url + path, {}, 'HEAD');
  t.same(fast.headers, full.headers, 'headers identical to the full path (HEAD through fastify)');
  t.equal(fast.headers['x-cache'], 'HIT');
  t.equal(fast.headers['content-length'], '4096');

  const alias = await get(`${url}/sha256/${hex}?region=test`);
  t.equal(alias.headers['x-cache'], 'HIT', 'the tooltool alias, query ignored');
  t.same(alias.body, body);

  // Left to fastify: uppercase hex, Range, conditional requests.
  const upper = await get(`${url}/cas/sha256/${hex.toUpperCase()}`);
  t.same(upper.body, body, 'uppercase hex still served (by the routes)');
  const range = await get(url + path, { range: 'bytes=0-9' });
  t.equal(range.status, 206);
  t.same(range.body, body.subarray(0, 10));
  const cond = await get(url + path, { 'if-none-match': String(fast.headers.etag) });
  t.equal(cond.status, 304);

  const stats = JSON.parse((await get(`${url}/-/stats`)).body.toString());
  t.match(stats.kinds.cas, { misses: 1, hits: 6, bytesServed: 4096 * 4 + 10 }, 'hits and bytes counted on both paths');
  t.match(stats.kinds.tooltool, { hits: 1, bytesServed: 4096 });
  const metrics = (await get(`${url}/-/metrics`)).body.toString();
  t.match(metrics, /fleetcache_cache_hits_total\{kind="cas",role="cache",region="[^"]+"\} 6/);
  t.match(metrics, /fleetcache_cache_bytes_served_total\{kind="tooltool",role="cache",region="[^"]+"\} 4096/);
  t.equal(up.requests.filter((r) => r.url === path).length, 1, 'upstream asked once');
});

t.test('a fill keeps no small body in memory: its first hit reads the stored file', async (t) => {
  // Kept from the fill, every cold miss held its body until the memory budget was full, for
  // objects most of which nobody asks again (DiskStore's #remember).
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(4096);
  const { url, app } = await startCache(t, { upstream: upUrl }, t.testdir());
  const path = `/cas/sha256/${hex}`;
  const miss = await get(url + path);
  t.same([miss.headers['x-cache'], miss.body], ['MISS', body]);
  await app.cache.fills.drain();
  rmSync(join(app.cache.store.dir, `cas.v1/sha256/${hex.slice(0, 2)}/${hex}`));
  const again = await get(url + path);
  t.same([again.status, again.headers['x-cache'], again.body], [200, 'MISS', body], 'the file gone, not served from memory: fetched again');
  t.equal(up.requests.filter((r) => r.url === path).length, 2, 'upstream asked twice');
});

t.test('a body indexed at start is read once, hashed, then answered from memory', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(4096);
  const dir = t.testdir();
  const first = await startCache(t, { upstream: upUrl }, dir);
  await get(`${first.url}/cas/sha256/${hex}`);
  await first.app.cache.fills.drain();
  await first.app.close();
  // A restart indexes the small blob unverified (it was not fsynced); store.test.ts damages it.
  const again = await startCache(t, { upstream: upUrl }, dir);
  const res = await get(`${again.url}/cas/sha256/${hex}`);
  t.same(res.body, body);
  t.equal(res.headers['x-cache'], 'HIT');
  rmSync(join(dir, `cas.v1/sha256/${hex.slice(0, 2)}/${hex}`));
  const held = await get(`${again.url}/cas/sha256/${hex}`);
  t.equal(held.headers['x-cache'], 'HIT', 'held in memory once read');
  t.same(held.body, body);
  t.same(held.headers, res.headers);
  t.equal(up.requests.length, 1, 'upstream asked once, before the restart');
});
