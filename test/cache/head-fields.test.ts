// A HEAD is answered with the fields a GET of the same URL would have (RFC 9110 §9.3.2),
// whichever way the cache answers it: a hit, a fill it joins, a miss passed through.
import type http from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

/** The fields a HEAD must share with a GET (Date, Age and X-Cache tell of the moment and the way). */
const SHARED = ['content-type', 'content-length', 'etag', 'cache-control', 'accept-ranges'];

async function fields(url: string, method: 'GET' | 'HEAD', headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const res = await request(url, { method, headers });
  await res.body.dump();
  return Object.fromEntries([['status', res.statusCode], ...SHARED.map((name) => [name, res.headers[name]])]);
}

t.test('an answer without Content-Type has the same one for HEAD as for GET, small or large, stored or filling', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const bodies: Record<string, Buffer> = { small: Buffer.alloc(100, 1), large: Buffer.alloc(100_000, 2) };
  up.handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const body = bodies[req.url!.includes('large') || req.url!.startsWith('/cas/') ? 'large' : 'small']!;
    // no Content-Type: an upstream that says nothing of the type (RFC 9110 §8.3)
    res.writeHead(req.url!.startsWith('/cas/') ? 404 : 200, { 'content-length': String(body.length), 'cache-control': 'public, max-age=600', etag: '"e"' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const size of ['small', 'large']) {
    for (const path of [`/mirror/m/${size}`, `/artifacts/r/j/${size}.txt`]) {
      const headMiss = await fields(`${url}${path}`, 'HEAD'); // passed through
      const miss = await fields(`${url}${path}`, 'GET');
      await app.cache.fills.drain();
      const head = await fields(`${url}${path}`, 'HEAD');
      const hit = await fields(`${url}${path}`, 'GET');
      t.same(hit, miss, `${path}: GET, hit as miss`);
      t.same(head, hit, `${path}: HEAD of the stored answer as its GET`);
      t.same(headMiss, miss, `${path}: HEAD passed through as the GET`);
    }
    // a HEAD joining a fill in flight
    const path = `/mirror/m/${size}-joined`;
    const release = up.hold(path.slice('/mirror/m'.length));
    const getting = fields(`${url}${path}`, 'GET');
    const heading = fields(`${url}${path}`, 'HEAD');
    setTimeout(release, 300);
    t.same(await heading, await getting, `${path}: HEAD joining a fill as its GET`);
    await app.cache.fills.drain();
  }
  // conditions: a HEAD miss is answered as the GET is (upstream is asked without them)
  for (const path of ['/mirror/m/cond', '/artifacts/r/j/cond.txt']) {
    const cond = { 'if-none-match': '"e"' };
    const head = await fields(`${url}${path}`, 'HEAD', cond);
    const get = await fields(`${url}${path}`, 'GET', cond);
    t.same([head.status, get.status], [304, 304], `${path}: If-None-Match of its ETag: 304 to HEAD as to GET`);
  }
  // a blob's miss, led on the fast path (fast-miss.ts) or by the routes (a request with Pragma)
  const blob = `${url}/cas/sha256/${'cd'.repeat(32)}`;
  t.same(await fields(blob, 'GET'), await fields(blob, 'GET', { pragma: 'x-routes' }), "upstream's large untyped 404: the fast path's fields are the routes'");
});
