// /mirror/{name}/{path}: RFC 9111 through http-cache-semantics against a real upstream.
import http from 'node:http';
import net from 'node:net';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { request } from 'undici';
import CachePolicy from 'http-cache-semantics';
import { httpId } from '../../src/cache/disk-store.js';
import { backgroundRevalidations } from '../../src/cache/mirror.js';
import { blocksOf, startCache } from './harness.js';
import { startUpstream, UpstreamFixture } from './upstream-fixture.js';
import { eventually } from '../helpers/wait.js';

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers });
  return { status: res.statusCode, headers: res.headers, body: (await res.body.text()) };
}

function reply(res: http.ServerResponse, status: number, headers: Record<string, string>, body = ''): true {
  res.writeHead(status, headers).end(body);
  return true;
}

t.test('mirror: fresh hits, revalidation with 304, no-store, Vary, stale-if-error', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  let version = 'v1';
  up.handler = (req, res) => {
    switch (req.url) {
      case '/dists/fresh':
        return reply(res, 200, { 'cache-control': 'max-age=60', etag: '"f"' }, 'fresh body');
      case '/dists/Release': // must revalidate every time
        if (req.headers['if-none-match'] === `"${version}"`) return reply(res, 304, { etag: `"${version}"`, 'cache-control': 'no-cache' });
        return reply(res, 200, { 'cache-control': 'no-cache', etag: `"${version}"`, 'last-modified': 'Mon, 23 Nov 2026 10:00:00 GMT' }, `release ${version}`);
      case '/secret':
        return reply(res, 200, { 'cache-control': 'no-store' }, 'secret');
      case '/login':
        return reply(res, 200, { 'cache-control': 'public, max-age=60', 'set-cookie': `session=${req.headers['user-agent']}` }, `hello ${req.headers['user-agent']}`);
      case '/lang':
        return reply(res, 200, { 'cache-control': 'max-age=60', vary: 'accept-language' }, `lang=${req.headers['accept-language']}`);
      case '/sie':
        return reply(res, 200, { 'cache-control': 'max-age=0, stale-if-error=600', etag: '"s"' }, 'keep me');
      default:
        return false;
    }
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { deb: { url: upUrl } } }, t.testdir());
  const m = `${url}/mirror/deb`;
  const settle = () => app.cache.fills.drain();

  t.equal((await get(`${m}/dists/fresh`)).headers['x-cache'], 'MISS');
  await settle();
  const fresh = await get(`${m}/dists/fresh`);
  t.equal(fresh.headers['x-cache'], 'HIT');
  t.equal(fresh.body, 'fresh body');
  t.equal(up.count('/dists/fresh'), 1, 'fresh: not revalidated');
  t.equal((await get(`${m}/dists/fresh`, { 'if-none-match': '"f"' })).status, 304, 'client 304 answered by the cache');

  t.equal((await get(`${m}/dists/Release`)).body, 'release v1');
  await settle();
  const again = await get(`${m}/dists/Release`);
  t.equal(again.body, 'release v1');
  t.equal(again.headers['x-cache'], 'HIT', 'upstream 304 → served from disk');
  const reval = up.requests.filter((r) => r.url === '/dists/Release');
  t.equal(reval.length, 2);
  t.equal(reval[1]!.headers['if-none-match'], '"v1"', 'revalidated with the ETag');
  version = 'v2';
  const changed = await get(`${m}/dists/Release`);
  t.equal(changed.body, 'release v2', 'a changed resource is refetched');
  t.equal(changed.headers['x-cache'], 'MISS');

  await get(`${m}/secret`);
  await settle();
  await get(`${m}/secret`);
  t.equal(up.count('/secret'), 2, 'no-store is never kept');

  // (the user in User-Agent: a field of its own would keep the answer from being kept by itself, mirror-unkeyed.test.ts)
  t.equal((await get(`${m}/login`, { 'user-agent': 'alice' })).body, 'hello alice');
  await settle();
  const bob = await get(`${m}/login`, { 'user-agent': 'bob' });
  t.same([bob.body, bob.headers['set-cookie']], ['hello bob', 'session=bob'], "an answer that sets a cookie is never kept: no one gets another's cookie");

  t.equal((await get(`${m}/lang`, { 'accept-language': 'fr' })).body, 'lang=fr');
  await settle();
  t.equal((await get(`${m}/lang`, { 'accept-language': 'fr' })).headers['x-cache'], 'HIT');
  const de = await get(`${m}/lang`, { 'accept-language': 'de' });
  t.equal(de.body, 'lang=de', 'Vary: another language is not served the stored one');

  await get(`${m}/sie`);
  await settle();
  up.handler = (req, res) => (req.url === '/sie' ? reply(res, 503, {}, 'down') : false);
  const stale = await get(`${m}/sie`);
  t.equal(stale.status, 200, 'stale-if-error serves the stored copy on a 5xx');
  t.equal(stale.body, 'keep me');
  t.equal(stale.headers['x-cache'], 'STALE', 'said so');
  await up.stop();
  const down = await get(`${m}/sie`);
  t.equal(down.body, 'keep me', 'and when upstream is unreachable');
  t.equal(down.headers['x-cache'], 'STALE');
  t.equal((await get(`${url}/mirror/nope/x`)).status, 404, 'unknown mirror');
});

t.test('mirror and names: concurrent cold requests make one upstream request', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const body = Buffer.alloc(2 * 1024 * 1024, 7);
  up.handler = (req, res) => {
    if (req.url !== '/pool/big.deb' && req.url !== '/artifacts/run1/job/log.txt') return false;
    // Headers come late: every request arrives while the first waits for them.
    setTimeout(() => res.writeHead(200, { 'cache-control': 'max-age=60', etag: '"big"', 'content-length': String(body.length) }).end(body), 300);
    return true;
  };
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { deb: { url: upUrl } } }, t.testdir());
  for (const path of ['/mirror/deb/pool/big.deb', '/artifacts/run1/job/log.txt']) {
    const results = await Promise.all(Array.from({ length: 8 }, async () => {
      const res = await request(`${url}${path}`);
      return { xcache: String(res.headers['x-cache']), size: (await res.body.arrayBuffer()).byteLength };
    }));
    t.ok(results.every((r) => r.size === body.length), `${path}: every body whole`);
    t.equal(results.filter((r) => r.xcache === 'MISS').length, 1, `${path}: one MISS, the rest COLLAPSED`);
  }
  t.equal(up.count('/pool/big.deb'), 1, 'the mirror fetched once');
  t.equal(up.count('/artifacts/run1/job/log.txt'), 1, 'the name fetched once');
});

t.test('mirror: a request that joins a fill gets its answer only when the entry would serve it (private, Set-Cookie, Vary)', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => {
    const later = (headers: Record<string, string>, body: string): true => {
      // Headers come late: the second request arrives while the first waits for them.
      setTimeout(() => res.writeHead(200, headers).end(body), 300);
      return true;
    };
    switch (req.url) {
      case '/account':
        return later({ 'cache-control': 'private, no-store', 'set-cookie': `session=${req.headers.cookie}-secret`, vary: 'Cookie' }, `account of ${req.headers.cookie}`);
      case '/public-cookie':
        return later({ 'cache-control': 'public, max-age=60', 'set-cookie': `session=${req.headers.cookie}` }, `hello ${req.headers.cookie}`);
      case '/variant':
        return later({ 'cache-control': 'max-age=60', vary: 'x-variant' }, `variant ${req.headers['x-variant']}`);
      case '/shared':
        return later({ 'cache-control': 'max-age=60', vary: 'accept-encoding' }, 'the same for all');
      default:
        return false;
    }
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const two = (path: string, first: Record<string, string>, second: Record<string, string>) => {
    const ask = async (headers: Record<string, string>, second: boolean) => {
      if (second) await eventually('the first request is upstream', () => up.count(path) === 1);
      const res = await request(`${url}/mirror/m${path}`, { headers });
      return { xcache: res.headers['x-cache'], cookie: res.headers['set-cookie'], body: await res.body.text() };
    };
    return Promise.all([ask(first, false), ask(second, true)]);
  };
  // The four pairs, on paths of their own, wait out upstream's late heads at once.
  const [[alice, bob], [c1, c2], [a, b], [s1, s2]] = await Promise.all([
    two('/account', { cookie: 'alice' }, { cookie: 'bob' }),
    two('/public-cookie', { cookie: 'carol' }, { cookie: 'dave' }),
    two('/variant', { 'x-variant': 'A' }, { 'x-variant': 'B' }),
    two('/shared', {}, {}),
  ]);
  t.equal(alice.body, 'account of alice');
  t.same([bob.body, bob.cookie], ['account of bob', 'session=bob-secret'], "bob gets his own answer, not alice's");
  t.equal(up.count('/account'), 2);
  t.same([c1.body, c2.body], ['hello carol', 'hello dave'], 'an answer that sets a cookie is one client\'s, even public');
  t.same([a.body, b.body], ['variant A', 'variant B'], 'each gets the variant it asked for');
  t.equal(b.xcache, 'MISS');
  t.same([s1.body, s2.body, s2.xcache], ['the same for all', 'the same for all', 'COLLAPSED'], 'a kept answer that matches is still shared');
  t.equal(up.count('/shared'), 1);
  await app.cache.fills.drain();
});

t.test('mirror: stale-while-revalidate serves the stored copy and refreshes it in the background', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  let version = 'v1';
  up.handler = (req, res) => {
    if (req.url !== '/dists/InRelease') return false;
    const headers = { 'cache-control': 'max-age=1, stale-while-revalidate=60', etag: `"${version}"` };
    if (req.headers['if-none-match'] === `"${version}"`) return reply(res, 304, headers);
    return reply(res, 200, headers, `release ${version}`);
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { deb: { url: upUrl } } }, t.testdir());
  const m = `${url}/mirror/deb/dists/InRelease`;
  // Only to let max-age=1 pass; what runs in the background is waited for, not slept on.
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const revalidated = (requests: number) => eventually('the background revalidation', () => up.count('/dists/InRelease') === requests && backgroundRevalidations(app.cache) === 0);
  t.equal((await get(m)).body, 'release v1');
  await wait(1200); // stale now, within stale-while-revalidate
  version = 'v2';
  const stale = await get(m);
  t.equal(stale.body, 'release v1', 'the stale copy is served at once');
  t.equal(stale.headers['x-cache'], 'STALE');
  await revalidated(2);
  t.equal(up.count('/dists/InRelease'), 2, 'one background request');
  const fresh = await get(m);
  t.equal(fresh.body, 'release v2', 'the next answer is the refreshed one');
  t.equal(fresh.headers['x-cache'], 'HIT');
  await wait(1200); // stale again; this time upstream has not changed: a 304 refreshes the policy
  t.equal((await get(m)).body, 'release v2');
  await revalidated(3);
  t.equal(up.count('/dists/InRelease'), 3, 'revalidated with a conditional request');
  t.equal(up.requests.at(-1)!.headers['if-none-match'], '"v2"');
  t.equal((await get(m)).body, 'release v2');
  t.equal(up.count('/dists/InRelease'), 3, 'fresh again after the 304: no request');
});

t.test('mirror: an answer that comes later than its freshness lasts is stale when it comes, its age counted from the request (RFC 9111 §4.2.3): a new body, a 304', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  let delay = 0;
  up.handler = (req, res) => {
    if (req.url !== '/dists/Slow') return false;
    const headers = { 'cache-control': 'max-age=1', etag: '"v1"' };
    setTimeout(() => (req.headers['if-none-match'] === '"v1"' ? reply(res, 304, headers) : reply(res, 200, headers, 'slow v1')), delay);
    return true;
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { deb: { url: upUrl } } }, t.testdir());
  const m = `${url}/mirror/deb/dists/Slow`;
  const asked = () => up.count('/dists/Slow');
  delay = 1300; // more than max-age=1: what upstream said may have changed by the time its answer comes
  t.equal((await get(m)).body, 'slow v1');
  await app.cache.fills.drain();
  delay = 0;
  const next = await get(m);
  t.same([asked(), next.headers['x-cache']], [2, 'HIT'], 'the next request revalidates (a 304): the answer was 1.3 s old when it came');
  t.equal((await get(m)).headers['x-cache'], 'HIT');
  t.equal(asked(), 2, 'a 304 that came at once: fresh for its max-age');
  await new Promise((r) => setTimeout(r, 1100)); // stale now
  delay = 1300;
  t.equal((await get(m)).headers['x-cache'], 'HIT', 'a slow 304');
  delay = 0;
  await get(m);
  t.equal(asked(), 4, 'the next request revalidates again: the 304 was 1.3 s old when it came');
});

t.test('mirror: revalidations go upstream without the client\'s Host and hop-by-hop headers, as first fetches do', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const upHost = new URL(upUrl).host;
  up.handler = (req, res) => {
    // A name-based upstream (S3, a virtual host): another Host is another site.
    if (req.headers.host !== upHost) return reply(res, 404, {}, `no such bucket ${req.headers.host}`);
    const cc = req.url === '/swr' ? 'max-age=0, stale-while-revalidate=60' : 'no-cache';
    if (req.headers['if-none-match'] === '"e"') return reply(res, 304, { 'cache-control': cc, etag: '"e"' });
    return reply(res, 200, { 'cache-control': cc, etag: '"e"' }, 'body');
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { s3: { url: upUrl } } }, t.testdir());
  const client = { host: 'cache.example', 'proxy-authorization': 'Basic eDp5' };
  for (const path of ['/revalidate', '/swr']) {
    t.equal((await get(`${url}/mirror/s3${path}`, client)).headers['x-cache'], 'MISS', `${path}: first fetch`);
    await app.cache.fills.drain();
  }
  const again = await get(`${url}/mirror/s3/revalidate`, client);
  t.equal(again.status, 200);
  t.equal(again.headers['x-cache'], 'HIT', 'revalidated (304), served from disk');
  t.equal((await get(`${url}/mirror/s3/swr`, client)).headers['x-cache'], 'STALE', 'stale-while-revalidate');
  await eventually('the background revalidation', () => up.count('/swr') === 2);
  const conditional = up.requests.filter((r) => r.headers['if-none-match'] === '"e"');
  t.equal(conditional.length, 2, 'both revalidations were conditional');
  t.same(up.requests.map((r) => r.headers.host), up.requests.map(() => upHost), "upstream's own Host on every request");
  t.notOk(up.requests.some((r) => r.headers['proxy-authorization']), 'no hop-by-hop header forwarded');
});

t.test('mirror: a response to a request with Authorization is kept only when it says so (RFC 9111 §3.5)', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => {
    const cc = req.url === '/public' ? 'public, max-age=60' : 'max-age=60';
    return reply(res, 200, { 'cache-control': cc }, `auth=${req.headers.authorization ?? 'none'}`);
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  t.equal((await get(`${url}/mirror/m/plain`, { authorization: 'Bearer a' })).body, 'auth=Bearer a');
  await app.cache.fills.drain();
  const other = await get(`${url}/mirror/m/plain`, { authorization: 'Bearer b' });
  t.equal(other.body, 'auth=Bearer b', "never served another client's authenticated answer");
  t.equal(up.count('/plain'), 2);
  await get(`${url}/mirror/m/public`, { authorization: 'Bearer a' });
  await app.cache.fills.drain();
  t.equal((await get(`${url}/mirror/m/public`, { authorization: 'Bearer b' })).headers['x-cache'], 'HIT', 'public: kept');
  t.equal(up.count('/public'), 1);
});

/** A GET with `path` sent as is (undici, like any WHATWG URL parser, would normalize "%2e%2e"). */
function rawGet(url: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(new URL(url), { path }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

t.test('mirror: paths go upstream as the client encoded them, and never leave the base path', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => reply(res, 200, { 'cache-control': 'max-age=60' }, `got ${req.url}`);
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { deb: { url: `${upUrl}/debian` } } }, t.testdir());
  for (const path of ['/pool/a%2Fb', '/pool/what%3Fnot', '/pool/with%20space', '/pool/x?q=1%2B1&r=%2F', '/pool/g%2B%2B_1.0.deb', '/pool/100%2525', '/pool/..a/x', '/pool/a;..', '/pool/%EF%BC%A1%E2%80%A6/x', '/pool/%25EF%25BC%25A1%25E2%2580%25A6/x', '/pool/a%00b']) {
    const res = await rawGet(url, `/mirror/deb${path}`);
    t.same(res, { status: 200, body: `got /debian${path}` }, `${path}: as sent`);
  }
  // Also what a server behind a proxy decodes a second time, and Tomcat's and Jetty's "..;".
  for (const path of ['/%2e%2e/etc', '/pool/../../x', '/pool/%2E%2E/%2e%2E/x', '/./x', '/pool/a%2F..%2F..%2Fx', '/pool/a%5C..%5Cx', '/bad%zz',
    '/pool/%252e%252e/x', '/pool/%25252E%25252E/x', '/pool/a%252F..%252Fx', '/pool/..;/x', '/pool/..;jsessionid=1/x', '/pool/%2e%2e%3b/x', '/pool/%252e%252e%253bx/y',
    '/..%3F/etc', '/pool/..%3f', '/..%23/etc', '/pool/%2e%2e%253F/x',
    // a C server's string ends at a NUL; fullwidth dots and slashes, "‥" are dots and slashes once normalised (NFKC)
    '/pool/..%00/x', '/pool/.%00x/y', '/pool/%252e%252e%2500/x', '/pool/%EF%BC%8E%EF%BC%8E/x', '/pool/.%EF%BC%8E/x', '/pool/%E2%80%A5/x', '/pool/a%EF%BC%8F..%EF%BC%8Fx', '/pool/%EF%BC%BC..',
    // a fullwidth "％" is "%" once normalised: "％2e", "％２ｅ" are escapes of "." to a server that normalises, then decodes again
    '/pool/%EF%BC%852e%EF%BC%852e/x', '/pool/%EF%BC%85%EF%BC%92%EF%BD%85%EF%BC%85%EF%BC%92%EF%BD%85/x',
    // and those encoded twice (or more): fullwidth dots, "‥", a fullwidth slash, to a server that decodes twice, then normalises
    '/pool/%25EF%25BC%258E%25EF%25BC%258E/x', '/pool/%2525EF%2525BC%25258E%2525EF%2525BC%25258E/x', '/pool/.%25EF%25BC%258E/x', '/pool/%25E2%2580%25A5/x', '/pool/a%25EF%25BC%258F..%25EF%25BC%258Fx',
    // a byte that is no UTF-8 beside them: decoded as a lenient server does (U+FFFD), the rest still spells "／..／"
    '/pool/a%25FF%25EF%25BC%258F..%25EF%25BC%258Fx']) {
    const res = await rawGet(url, `/mirror/deb${path}`);
    t.equal(res.status, 400, `${path}: refused`);
    t.match(res.body, /"code":"FC_ERR_BAD_NAME"/);
  }
  t.same(up.requests.map((r) => r.url).filter((u) => !u.startsWith('/debian/pool/') || /\/\.\.(\/|;|$)/.test(u)), [], 'nothing else reached upstream');
});

t.test('mirror: a Range request on a cold object sent without Content-Length gets its 206', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => {
    // Chunked: the size is known only at the end of the fill, which the 206 waits for.
    res.writeHead(200, { 'cache-control': req.url === '/kept' ? 'max-age=60' : 'no-store', 'content-type': 'text/plain' });
    res.write('abc');
    setTimeout(() => res.end('defghij'), 30);
    return true;
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const path of ['/kept', '/not-kept']) {
    const res = await request(`${url}/mirror/m${path}`, { headers: { range: 'bytes=2-5' } });
    t.equal(res.statusCode, 206, `${path}: 206`);
    t.equal(res.headers['content-range'], 'bytes 2-5/10');
    t.equal(await res.body.text(), 'cdef');
    await app.cache.fills.drain();
  }
  const hit = await get(`${url}/mirror/m/kept`, { range: 'bytes=8-' });
  t.same([hit.status, hit.headers['x-cache'], hit.body], [206, 'HIT', 'ij'], 'stored whole');
});

t.test('mirror: a body of unknown length that stalls after its first byte: the head goes out at once, then the cut', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const stalled: import('node:http').ServerResponse[] = [];
  t.teardown(async () => {
    for (const res of stalled) res.destroy();
    await up.stop();
  });
  up.handler = (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
    res.write('a'); // then nothing: the mirror's body timeout ends the fill
    stalled.push(res);
    return true;
  };
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl, timeouts: { body: '1500ms' } } } }, t.testdir());
  const started = Date.now();
  const res = await request(`${url}/mirror/m/slow`);
  const headMs = Date.now() - started;
  t.equal(res.statusCode, 200);
  t.ok(headMs < 1000, `status and headers before the body timeout (${headMs} ms), not held with the last byte`);
  await t.rejects(res.body.text(), 'then the body is cut, never a clean end');
});

t.test('mirror: a body ended by closing the connection (no length, not chunked) is served, never kept: a cut one looks the same', async (t) => {
  // An HTTP/1.0-style upstream on a raw socket: the end of the body is the end of the connection.
  const kinds = { whole: 'the whole body', cut: 'cut by the upstream dying (FIN)', reset: 'cut by a reset (RST)' } as const;
  const body = Buffer.alloc(300_000, 'x');
  const sockets = new Set<net.Socket>();
  const asked: string[] = [];
  const up = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('data', (chunk: Buffer) => {
      const path = chunk.toString('latin1').split(' ')[1] ?? '';
      asked.push(path);
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: max-age=3600\r\nConnection: close\r\n\r\n');
      if (path === '/whole') return void socket.end(body);
      socket.write(body.subarray(0, 100_000), () => (path === '/reset' ? socket.resetAndDestroy() : socket.end()));
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => up.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    up.close();
  });
  const upUrl = `http://127.0.0.1:${(up.address() as net.AddressInfo).port}`;
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const [path, what] of Object.entries(kinds)) {
    const first = await request(`${url}/mirror/m/${path}`);
    const got = await first.body.arrayBuffer().then((b) => b.byteLength, () => -1);
    t.ok(path === 'whole' ? got === body.length : got <= 100_000, `${what}: served as it came (${got} bytes)`);
    await app.cache.fills.drain();
    const again = await get(`${url}/mirror/m/${path}`);
    t.same([again.headers['x-cache'], asked.filter((p) => p === `/${path}`).length], ['MISS', 2], `${what}: not kept, asked again`);
  }
});

t.test('mirror: no credential reaches the disk or a third party: an answer varying on Authorization or Cookie is not kept; a run token is not forwarded', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => reply(res, 200, { 'cache-control': 'public, max-age=600', vary: req.url === '/cookie' ? 'Cookie' : 'Authorization, Accept-Encoding' }, `auth=${req.headers.authorization ?? '-'}`);
  const dir = t.testdir();
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl }, tt: { url: upUrl, tooltool: true } } }, dir);
  const secret = { authorization: 'Bearer a-secret-of-the-client', cookie: 'session=COOKIESECRET' };
  for (const path of ['/auth', '/cookie']) {
    t.equal((await get(`${url}/mirror/m${path}`, secret)).headers['x-cache'], 'MISS');
    await app.cache.fills.drain();
    t.equal((await get(`${url}/mirror/m${path}`, secret)).headers['x-cache'], 'MISS', `${path}: not kept`);
  }
  const written = (d: string): string => readdirSync(d, { withFileTypes: true }).map((e) => (e.isDirectory() ? written(join(d, e.name)) : readFileSync(join(d, e.name), 'latin1'))).join('');
  t.notMatch(written(dir), /a-secret-of-the-client|COOKIESECRET/, 'no credential in any file of the cache');
  const runToken = 'Bearer fcrun2.cnVu.1800000000.bWFj';
  t.equal((await get(`${url}/mirror/m/fwd1`, { authorization: runToken })).body, 'auth=-', "a machine's run token stays with fleetcache");
  t.equal((await get(`${url}/mirror/m/fwd3`, { authorization: 'Bearer fcrun1.cnVu.bWFj' })).body, 'auth=-', 'an older version\'s too');
  t.equal((await get(`${url}/mirror/m/fwd2`, { authorization: 'Bearer the-mirrors-own' })).body, 'auth=Bearer the-mirrors-own', 'a credential for the mirror goes to it');
  // a tooltool mirror's blob path takes another route (digest-verified fills): the same there
  const blob = `/sha512/${'a'.repeat(128)}`;
  await get(`${url}/mirror/tt${blob}`, { authorization: runToken }).catch(() => undefined); // not the bytes of that digest: cut
  t.same(up.requests.filter((r) => r.url === blob).map((r) => r.headers.authorization ?? '-'), ['-'], 'nor to a tooltool mirror');

  // An entry an older version kept, its sidecar holding the client's token: dropped when met, not served.
  const stored = new CachePolicy({ url: '/old', method: 'GET', headers: { authorization: 'Bearer an-old-secret' } }, { status: 200, headers: { 'cache-control': 'public, max-age=600', vary: 'Authorization' } }, { shared: true });
  const key = 'mirror:m:/old';
  app.cache.store.commitSmall(httpId(key), Buffer.from('old body'), { key, status: 200, headers: { 'cache-control': 'public, max-age=600', vary: 'Authorization' }, size: 8, storedAt: Date.now(), policy: stored.toObject() });
  t.match(written(dir), /an-old-secret/, 'the old entry is on disk');
  const old = await get(`${url}/mirror/m/old`, { authorization: 'Bearer an-old-secret' });
  t.same([old.headers['x-cache'], old.body], ['MISS', 'auth=Bearer an-old-secret'], 'not served from it: asked upstream');
  await app.cache.fills.drain();
  t.notMatch(written(dir), /an-old-secret/, 'and gone from the disk');
});

t.test('mirror: RFC 9111 corners an upstream review found (repeated fields, stale variants, 304s, deletions, sidecar privacy)', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  let lmCount = 0;
  let gone = false;
  up.handler = (req, res) => {
    const auth = req.headers.authorization ?? 'anonymous';
    switch (req.url) {
      case '/dup': // nginx: `expires 1h` then `add_header Cache-Control public`, two Vary lines
        res.setHeader('cache-control', ['max-age=3600', 'public']);
        res.setHeader('vary', ['Accept-Encoding', 'Accept']);
        return reply(res, 200, { etag: '"d"' }, 'dup body');
      case '/variant':
        return reply(res, 200, { 'cache-control': 'public, max-age=0, stale-if-error=600', vary: 'Authorization', etag: `"${auth}"` }, `report for ${auth}`);
      case '/mustrevalidate':
        return reply(res, 200, { 'cache-control': 'max-age=0, must-revalidate, stale-if-error=600', etag: '"m"' }, 'must revalidate');
      case '/lm': // a 304 without validators matches a stored response that has one: not applied
        lmCount++;
        if (req.headers['if-modified-since']) return reply(res, 304, { 'cache-control': 'max-age=0' });
        return reply(res, 200, { 'cache-control': 'max-age=0', 'last-modified': 'Mon, 23 Nov 2026 10:00:00 GMT', 'content-type': 'application/x-debian-package' }, 'deb bytes');
      case '/add304': // the 304 brings the freshness the 200 lacked
        if (req.headers['if-none-match'] === '"a1"') return reply(res, 304, { etag: '"a1"', 'cache-control': 'max-age=600' });
        return reply(res, 200, { etag: '"a1"', expires: '0' }, 'add304 body');
      case '/later-gone':
        if (gone) return reply(res, 404, { 'content-type': 'text/plain' }, 'deleted');
        return reply(res, 200, { 'cache-control': 'max-age=0, stale-if-error=3600', etag: '"g"' }, 'gone later');
      case '/cookie-vary':
        return reply(res, 200, { 'cache-control': 'max-age=600', vary: 'Accept-Encoding' }, 'vary body');
      default:
        return false;
    }
  };
  const data = t.testdir();
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, data);
  const m = `${url}/mirror/m`;

  const first = await get(`${m}/dup`);
  t.same([first.status, first.body], [200, 'dup body'], 'fields on several lines: answered, not a 500');
  await app.cache.fills.drain();
  t.same([(await get(`${m}/dup`)).headers['x-cache'], (await get(`${m}/dup`)).status], ['HIT', 200], 'and kept');

  const lmFirst = await get(`${m}/lm`);
  await app.cache.fills.drain();
  const lmAgain = await get(`${m}/lm`);
  t.same([lmFirst.body, lmAgain.body, lmAgain.headers['content-type']], ['deb bytes', 'deb bytes', 'application/x-debian-package'], 'a 304 that matches no stored validator is not applied: the body is asked for again, with its headers');
  t.equal(lmCount, 3, 'a conditional request, then the full one');

  await get(`${m}/add304`);
  await app.cache.fills.drain();
  t.equal((await get(`${m}/add304`)).headers['cache-control'], 'max-age=600', "the 304's Cache-Control joins the stored fields");
  const before = up.requests.length;
  t.equal((await get(`${m}/add304`)).headers['x-cache'], 'HIT');
  t.equal(up.requests.length, before, 'fresh now: no request upstream');

  await get(`${m}/variant`, { authorization: 'Bearer alice' });
  await get(`${m}/mustrevalidate`);
  await get(`${m}/later-gone`);
  // (an answer to a request with a Cookie is not kept at all: mirror-unkeyed.test.ts)
  await get(`${m}/cookie-vary`, { cookie: 'session=SECRET-COOKIE-123', 'accept-encoding': 'identity' });
  await get(`${m}/cookie-vary`, { 'user-agent': 'SECRET-AGENT-123', 'accept-encoding': 'identity' });
  await app.cache.fills.drain();
  const files = (readdirSync(data, { recursive: true }) as string[]).map((f) => join(data, f)).filter((f) => statSync(f).isFile());
  t.ok(files.some((f) => readFileSync(f, 'utf8').includes('vary body')), 'the entry is on disk');
  t.same(files.filter((f) => /SECRET-(COOKIE|AGENT)-123/.test(readFileSync(f, 'utf8'))), [], "no file holds the client's cookie nor its other fields (only the fields Vary names are kept)");
  gone = true;
  t.equal((await get(`${m}/later-gone`)).status, 404, 'deleted upstream');
  await up.stop(); // upstream down from here
  t.equal((await get(`${m}/variant`)).status, 502, "stale-if-error does not give alice's answer to an anonymous client (Vary)");
  t.equal((await get(`${m}/variant`, { authorization: 'Bearer bob' })).status, 502, 'nor to bob');
  t.equal((await get(`${m}/variant`, { authorization: 'Bearer alice' })).status, 502, 'nor alice: an answer that varies on Authorization is not kept (her token would be on disk)');
  t.equal((await get(`${m}/mustrevalidate`)).status, 502, 'must-revalidate: never served stale');
  t.equal((await get(`${m}/later-gone`)).status, 502, 'an object deleted upstream is not served again in an outage');
});

t.test("mirror: a 304 whose strong ETag is not the stored copy's own does not refresh it (nginx's gzip copy W/\"x\", then \"x\"); the cache's 304s carry no Content-Encoding", async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const gzipped = gzipSync(Buffer.from('the quick brown fox '.repeat(50)));
  up.handler = (req, res) => {
    if (req.url === '/fresh.txt.gz') {
      res.writeHead(200, { 'cache-control': 'max-age=600', etag: 'W/"f"', 'content-encoding': 'gzip', vary: 'Accept-Encoding', 'content-type': 'text/plain' }).end(gzipped);
      return true;
    }
    if (req.url !== '/fox.txt') return false;
    // nginx with gzip on: its 304 to the gzip copy's weak tag carries the plain file's strong one
    if (req.headers['if-none-match'] === 'W/"6b1-898"') return reply(res, 304, { etag: '"6b1-898"', 'cache-control': 'max-age=1' });
    res.writeHead(200, { 'cache-control': 'max-age=1', etag: 'W/"6b1-898"', 'content-encoding': 'gzip', vary: 'Accept-Encoding', 'content-type': 'text/plain' }).end(gzipped);
    return true;
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const gzip = { 'accept-encoding': 'gzip' };
  t.equal((await get(`${url}/mirror/m/fox.txt`, gzip)).headers['x-cache'], 'MISS');
  await app.cache.fills.drain();
  await new Promise((resolve) => setTimeout(resolve, 1100)); // stale: revalidated
  const again = await get(`${url}/mirror/m/fox.txt`, gzip);
  t.same([again.headers.etag, again.headers['content-encoding'], again.headers['x-cache']], ['W/"6b1-898"', 'gzip', 'MISS'], 'asked again in full: still the gzip copy\'s weak tag');
  t.equal(up.requests.filter((r) => r.url === '/fox.txt' && r.headers['if-none-match'] === undefined).length, 2, 'two full requests upstream');
  await app.cache.fills.drain();
  t.equal((await get(`${url}/mirror/m/fox.txt`, gzip)).headers['x-cache'], 'HIT', 'the full answer replaced the copy: fresh again, a hit');
  // A fresh gzip copy, which the cache itself answers 304 for
  t.equal((await get(`${url}/mirror/m/fresh.txt.gz`, gzip)).headers['x-cache'], 'MISS');
  await app.cache.fills.drain();
  const notModified = await request(`${url}/mirror/m/fresh.txt.gz`, { headers: { ...gzip, 'if-none-match': 'W/"f"' } });
  await notModified.body.dump();
  t.same([notModified.statusCode, notModified.headers['x-cache']], [304, 'HIT']);
  t.same([notModified.headers['content-encoding'], notModified.headers['content-type'], notModified.headers.etag], [undefined, undefined, 'W/"f"'], 'no representation metadata on a 304 (RFC 9110 §15.4.5)');
});

t.test('mirror: If-Range with a weak tag never matches (strong comparison): the whole body', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (_req, res) => reply(res, 200, { 'cache-control': 'max-age=600', etag: 'W/"wk"' }, '0123456789');
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  await get(`${url}/mirror/m/weak`);
  await app.cache.fills.drain();
  const weak = await get(`${url}/mirror/m/weak`, { range: 'bytes=2-4', 'if-range': 'W/"wk"' });
  t.same([weak.status, weak.body], [200, '0123456789']);
  const plain = await get(`${url}/mirror/m/weak`, { range: 'bytes=2-4' });
  t.same([plain.status, plain.body], [206, '234'], 'without If-Range, the range');
});

t.test("mirror: an upstream redirect inside the mirror's base is rewritten under /mirror/{name}/, one outside it made a URL of the upstream, another host's left alone", async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => {
    const to: Record<string, string> = {
      '/base/pool/r301': '/base/pool/plain?x=1',
      '/base/pool/r302': `${upUrl}/base/other/file`,
      '/base/pool/relative': 'plain',
      '/base/pool/outside': '/elsewhere/file',
      '/base/pool/away': 'http://mirror.example.invalid/debian/file',
    };
    const location = to[req.url ?? ''];
    if (location) return reply(res, req.url === '/base/pool/r301' ? 301 : 302, { location });
    if (req.url === '/base/pool/plain?x=1') return reply(res, 200, { 'cache-control': 'max-age=60' }, 'plain body');
    return false;
  };
  const withCredentials = `${upUrl.replace('http://', 'http://user:MIRROR-PASSWORD@')}/base`;
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: `${upUrl}/base` }, c: { url: withCredentials } } }, t.testdir());
  const location = async (path: string, mirror = 'm') => (await get(`${url}/mirror/${mirror}/${path}`)).headers.location;
  t.equal(await location('pool/r301'), '/mirror/m/pool/plain?x=1', 'an absolute path under the base');
  t.equal(await location('pool/r302'), '/mirror/m/other/file', 'an absolute URL under the base');
  t.equal(await location('pool/relative'), '/mirror/m/pool/plain', 'a relative one, resolved');
  t.equal(await location('pool/outside'), `${upUrl}/elsewhere/file`, "a path outside the base: a URL of the upstream's host (as a path, the client would ask the cache)");
  t.equal(await location('pool/away'), 'http://mirror.example.invalid/debian/file', 'another host: as upstream sent it');
  t.equal(await location('pool/outside', 'c'), `${upUrl}/elsewhere/file`, "the mirror URL's credentials are not given away");
  const followed = await get(`${url}${await location('pool/r301')}`);
  t.same([followed.status, followed.body], [200, 'plain body'], 'and the rewritten one leads through the cache');
});

t.test('mirror: only-if-cached is answered from a stored response or with a 504, never upstream (RFC 9111 §5.2.1.7)', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => reply(res, 200, { 'cache-control': req.url === '/stale' ? 'max-age=0' : 'max-age=600', etag: '"x"' }, `body of ${req.url}`);
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const only = { 'cache-control': 'only-if-cached' };
  const cold = await get(`${url}/mirror/m/cold`, only);
  t.equal(cold.status, 504, 'nothing stored');
  t.equal(up.requests.length, 0, 'and nothing asked upstream');
  await get(`${url}/mirror/m/kept`);
  await get(`${url}/mirror/m/stale`);
  await app.cache.fills.drain();
  const asked = up.requests.length;
  const kept = await get(`${url}/mirror/m/kept`, only);
  t.same([kept.status, kept.body, kept.headers['x-cache']], [200, 'body of /kept', 'HIT'], 'a fresh stored response');
  t.equal((await get(`${url}/mirror/m/stale`, only)).status, 504, 'a stored response that needs revalidating');
  t.equal(up.requests.length, asked, 'no request upstream for either');
});

t.test('credentials in a mirror or upstream URL are sent to it (Basic), unless the client sends its own', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => {
    if (req.url === '/pub/file') return reply(res, 200, { 'cache-control': 'max-age=600' }, 'private mirror body');
    return false;
  };
  const withCreds = (u: string) => u.replace('http://', 'http://mirror%20user:p%40ss@');
  const { hex } = up.addBlob(1000);
  const { app, url } = await startCache(t, { upstream: withCreds(upUrl), mirrors: { priv: { url: `${withCreds(upUrl)}/pub` } } }, t.testdir());
  const basic = `Basic ${Buffer.from('mirror user:p@ss').toString('base64')}`;
  t.equal((await get(`${url}/mirror/priv/file`)).body, 'private mirror body');
  t.equal(up.requests.find((r) => r.url === '/pub/file')?.headers.authorization, basic, 'the mirror got its credentials');
  await app.cache.fills.drain();
  t.equal((await get(`${url}/mirror/priv/file`)).headers['x-cache'], 'HIT', 'and its answer is kept for the region (the cache\'s own credentials)');
  t.equal((await get(`${url}/cas/sha256/${hex}`)).status, 200);
  t.equal(up.requests.find((r) => r.url === `/cas/sha256/${hex}`)?.headers.authorization, basic, 'the upstream too');
  await get(`${url}/cas/sha256/${'ab'.repeat(32)}`, { authorization: 'Bearer a-client-token' });
  t.equal(up.requests.at(-1)?.headers.authorization, 'Bearer a-client-token', 'a client\'s own Authorization goes as it is');
});

t.test('mirror: a second review (304s that set cookies or vary on one, must-revalidate while fresh, answers that replace a copy, run tokens)', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  let upstreamDown = false;
  let replaced = false;
  up.handler = (req, res) => {
    if (upstreamDown) return reply(res, 503, { 'content-type': 'text/plain' }, 'down');
    const inm = req.headers['if-none-match'];
    switch (req.url) {
      case '/cookie304': // a 304 that hands this client a session
        if (inm === '"k"') return reply(res, 304, { etag: '"k"', 'cache-control': 'max-age=60', 'set-cookie': `session=${req.headers['user-agent']}` });
        return reply(res, 200, { 'cache-control': 'max-age=0', etag: '"k"' }, 'cookie304 body');
      case '/vary304': // a 304 that adds a Vary on Cookie
        if (inm === '"v"') return reply(res, 304, { etag: '"v"', vary: 'Cookie' });
        return reply(res, 200, { 'cache-control': 'max-age=0', etag: '"v"' }, 'vary304 body');
      case '/must':
        return reply(res, 200, { 'cache-control': 'public, max-age=3600, must-revalidate', etag: '"m"' }, 'must body');
      case '/proxy':
        return reply(res, 200, { 'cache-control': 'public, max-age=3600, proxy-revalidate' }, 'proxy body');
      case '/replaced': // later no-store with a new body: the old copy must not come back in an outage
        if (replaced) return reply(res, 200, { 'cache-control': 'no-store' }, 'NEW');
        return reply(res, 200, { 'cache-control': 'max-age=0, stale-if-error=600', etag: '"o"' }, 'OLD');
      case '/authreval': // revalidated once by a client with Authorization
        if (inm === '"a"') return reply(res, 304, { etag: '"a"' });
        return reply(res, 200, { 'cache-control': 'max-age=0', etag: '"a"' }, 'authreval body');
      case '/run':
        return reply(res, 200, { 'cache-control': 'max-age=60' }, `run auth=${req.headers.authorization ?? '-'}`);
      default:
        return false;
    }
  };
  const data = t.testdir();
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, data);
  t.teardown(() => up.stop());
  const m = `${url}/mirror/m`;
  const settle = () => app.cache.fills.drain();
  const files = () => (readdirSync(data, { recursive: true }) as string[]).map((f) => join(data, f)).filter((f) => statSync(f).isFile()).map((f) => readFileSync(f, 'latin1')).join('\n');

  await get(`${m}/cookie304`);
  await settle();
  // (the user in User-Agent: a request with a field of its own would not revalidate the entry, mirror-unkeyed.test.ts)
  const alice = await get(`${m}/cookie304`, { 'user-agent': 'ALICE-SESSION' });
  t.same([alice.body, alice.headers['x-cache']], ['cookie304 body', 'HIT'], 'revalidated by a 304');
  const later = await get(`${m}/cookie304`, { 'user-agent': 'bob' });
  t.same([later.headers['x-cache'], later.headers['set-cookie']], ['HIT', undefined], "fresh now, and without alice's session");
  t.notMatch(files(), /ALICE-SESSION/, "her session is in no file of the cache");

  await get(`${m}/vary304`);
  await settle();
  t.equal((await get(`${m}/vary304`, { cookie: 'sess=VARYCOOKIE' })).body, 'vary304 body');
  await settle();
  t.notMatch(files(), /VARYCOOKIE/, 'a 304 that adds Vary: Cookie writes no cookie to disk');

  for (const path of ['/must', '/proxy']) {
    await get(`${m}${path}`);
    await settle();
    const hits = [await get(`${m}${path}`), await get(`${m}${path}`)];
    t.same(hits.map((h) => h.headers['x-cache']), ['HIT', 'HIT'], `${path}: fresh, served from the cache`);
    t.equal(up.count(path), 1, `${path}: one upstream request`);
  }

  await get(`${m}/authreval`);
  await settle();
  t.equal((await get(`${m}/authreval`, { authorization: 'Bearer alice' })).headers['x-cache'], 'HIT', 'revalidated for a client with Authorization');
  const anonymous = await get(`${m}/authreval`);
  t.equal(anonymous.headers['x-cache'], 'HIT', 'still everyone\'s entry');
  t.equal(up.requests.filter((r) => r.url === '/authreval').at(-1)!.headers['if-none-match'], '"a"', 'revalidated, not fetched again in full');

  const runToken = { authorization: 'Bearer fcrun2.cnVu.1800000000.bWFj' };
  t.equal((await get(`${m}/run`, runToken)).body, 'run auth=-');
  await settle();
  t.equal((await get(`${m}/run`, { authorization: 'Bearer fcrun2.b3RoZXI.1800000000.bWFj' })).headers['x-cache'], 'HIT', "machines' run tokens do not make a mirror's answers private");

  await get(`${m}/replaced`);
  await settle();
  replaced = true;
  t.equal((await get(`${m}/replaced`)).body, 'NEW');
  await settle();
  upstreamDown = true;
  const outage = await get(`${m}/replaced`);
  t.not(outage.body, 'OLD', 'the replaced copy is not served in an outage');
  t.equal(outage.status, 503);
});

t.test('mirror: a HEAD of a stale entry revalidates it as a GET does, and gets it stale when upstream fails (stale-if-error)', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  let down = false;
  let etag = '"h1"';
  up.handler = (req, res) => {
    if (down) return reply(res, 503, { 'content-type': 'text/plain' }, 'down');
    if (req.url !== '/h') return false;
    if (req.headers['if-none-match'] === etag) return reply(res, 304, { etag });
    return reply(res, 200, { 'cache-control': 'max-age=0, stale-if-error=600', etag }, `body ${etag}`);
  };
  t.teardown(() => up.stop());
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const head = async () => {
    const res = await request(`${url}/mirror/m/h`, { method: 'HEAD' });
    await res.body.dump();
    return { status: res.statusCode, cache: res.headers['x-cache'], etag: res.headers.etag };
  };
  t.same(await head(), { status: 200, cache: 'MISS', etag: '"h1"' }, 'a HEAD miss is passed through');
  await get(`${url}/mirror/m/h`);
  await app.cache.fills.drain();
  t.same(await head(), { status: 200, cache: 'HIT', etag: '"h1"' }, 'stale: revalidated with a 304, answered from the entry');
  t.equal(up.requests.at(-1)!.headers['if-none-match'], '"h1"', 'by a conditional request');
  etag = '"h2"';
  t.same(await head(), { status: 200, cache: 'MISS', etag: '"h2"' }, 'changed upstream: the new answer');
  await app.cache.fills.drain();
  t.equal((await get(`${url}/mirror/m/h`)).body, 'body "h2"', 'which replaced the entry');
  down = true;
  t.same(await head(), { status: 200, cache: 'STALE', etag: '"h2"' }, 'upstream failing: the stale entry (stale-if-error)');
});

t.test('mirror: a sidecar a revalidation makes larger is charged its new size against maxSize', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  // the 304 brings fields the 200 lacked: the refreshed policy, and so the sidecar, grows past a block
  const added = Object.fromEntries(Array.from({ length: 24 }, (_, i) => [`x-added-${i}`, 'v'.repeat(400)]));
  up.handler = (req, res) => {
    if (req.url !== '/dists/Release') return false;
    if (req.headers['if-none-match'] === '"r"') return reply(res, 304, { etag: '"r"', 'cache-control': 'no-cache', ...added });
    return reply(res, 200, { etag: '"r"', 'cache-control': 'no-cache' }, 'release');
  };
  const dir = t.testdir();
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { deb: { url: upUrl } } }, dir);
  const onDisk = (): number => {
    const file = join(dir, httpId('mirror:deb:/dists/Release'));
    return blocksOf(dir, statSync(file).size) + blocksOf(dir, statSync(`${file}.json`).size);
  };
  await get(`${url}/mirror/deb/dists/Release`);
  await app.cache.fills.drain();
  t.equal(app.cache.store.bytes, onDisk(), 'stored: the index counts the files');
  const before = onDisk();
  t.equal((await get(`${url}/mirror/deb/dists/Release`)).headers['x-cache'], 'HIT', 'revalidated with a 304');
  t.ok(onDisk() > before, `the sidecar grew (${before} → ${onDisk()} bytes on disk)`);
  t.equal(app.cache.store.bytes, onDisk(), 'revalidated: the index counts the larger sidecar');
});
