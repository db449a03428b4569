// What a mirror's answers say of their age and dates (RFC 9110 §6.6.1, RFC 9111 §4.1,
// §5.1, §5.3), and which answers it keeps, against a real upstream.
import type http from 'node:http';
import t from 'tap';
import { request } from 'undici';
import CachePolicy from 'http-cache-semantics';
import { httpId } from '../../src/cache/disk-store.js';
import { startCache } from './harness.js';
import { UpstreamFixture } from './upstream-fixture.js';

async function get(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { headers, method });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

function reply(res: http.ServerResponse, status: number, headers: Record<string, string>, body = ''): true {
  res.writeHead(status, headers).end(res.req.method === 'HEAD' ? undefined : body);
  return true;
}

t.test("an answer passed through (a HEAD miss) keeps upstream's Age: a downstream cache would take it for fresh when it is not", async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  // as a CDN (or a parent cache) answers: its copy is 500 s old, fresh for 100 s more
  up.handler = (_req, res) => reply(res, 200, { 'cache-control': 'max-age=600', age: '500', etag: '"a"', 'content-length': '5' }, 'aged!');
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const path of ['/mirror/m/aged', '/artifacts/r/j/aged.txt']) {
    const head = await get(`${url}${path}`, {}, 'HEAD');
    t.same([head.status, head.headers['x-cache']], [200, 'MISS'], `${path}: HEAD miss, passed through`);
    t.ok(Number(head.headers.age) >= 500, `${path}: HEAD: Age ${head.headers.age}, upstream's (was 0)`);
  }
  for (const path of ['/mirror/m/aged', '/artifacts/r/j/aged.txt']) {
    const whole = await get(`${url}${path}`);
    t.ok(Number(whole.headers.age) >= 500, `${path}: GET: Age ${whole.headers.age}, as the HEAD's`);
  }
  up.handler = (_req, res) => reply(res, 200, { 'cache-control': 'max-age=600' }, 'no age');
  const fresh = await get(`${url}/mirror/m/new`, {}, 'HEAD');
  t.equal(fresh.headers.age, '0', 'without one from upstream, Age: 0');
});

t.test("a mirror's answers carry the Date upstream gave them, not the time they are served (RFC 9110 §6.6.1)", async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  // An answer that came 300 s ago (its Date then), fresh by Expires alone for 600 s from then.
  const now = Math.floor(Date.now() / 1000) * 1000;
  const at = (s: number) => new Date(now + s * 1000).toUTCString();
  let revalidated = false;
  up.handler = (req, res) => {
    if (req.url === '/expires') return reply(res, 200, { date: at(-300), expires: at(300), etag: '"e"' }, 'expires');
    if (req.url === '/nodate') {
      res.sendDate = false;
      return reply(res, 200, { 'cache-control': 'max-age=600' }, 'no date');
    }
    if (req.url === '/reval') {
      if (req.headers['if-none-match'] === '"r"') {
        revalidated = true;
        return reply(res, 304, { date: at(-10), etag: '"r"', 'cache-control': 'max-age=600' });
      }
      return reply(res, 200, { date: at(-60), 'cache-control': 'max-age=0', etag: '"r"' }, 'reval');
    }
    return false;
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const m = `${url}/mirror/m`;

  const miss = await get(`${m}/expires`);
  t.same([miss.headers['x-cache'], miss.headers.date], ['MISS', at(-300)], "the miss: upstream's Date");
  await app.cache.fills.drain();
  // ...kept since it came, 300 s ago (as the clock of a cache that kept it that long sees it)
  const id = httpId('mirror:m:/expires');
  const stored = (await app.cache.store.lookup(id))!.meta;
  await app.cache.store.updateMeta(id, { ...stored, policy: { ...stored.policy!, t: Date.now() - 300_000 } as typeof stored.policy });
  const hit = await get(`${m}/expires`);
  t.same([hit.headers['x-cache'], hit.headers.date, hit.headers.age], ['HIT', at(-300), '300'], "the hit: upstream's Date, and its age");
  // A cache downstream (a browser, another fleetcache) reckons Expires from Date (RFC 9111 §4.2.1).
  const downstream = new CachePolicy({ url: '/expires', headers: {} }, { status: 200, headers: hit.headers as CachePolicy.Headers }, { shared: false });
  t.ok(downstream.timeToLive() > 250_000, `downstream, fresh for its last 300 s (ttl ${downstream.timeToLive()} ms): with a Date of now, its age counted twice, it was stale`);

  const first = await get(`${m}/nodate`);
  await app.cache.fills.drain();
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const second = await get(`${m}/nodate`);
  t.equal(second.headers['x-cache'], 'HIT');
  t.equal(second.headers.date, first.headers.date, 'no Date from upstream: the time it came, on every answer (not the time of each)');

  await get(`${m}/reval`);
  await app.cache.fills.drain();
  const refreshed = await get(`${m}/reval`);
  t.ok(revalidated, 'revalidated');
  t.same([refreshed.headers['x-cache'], refreshed.headers.date], ['HIT', at(-10)], "refreshed by a 304: the 304's Date");
});

t.test('an answer with Vary: * is not kept: no request can ever be served from it (RFC 9111 §4.1)', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  up.handler = (req, res) => reply(res, 200, { 'cache-control': 'max-age=600', vary: req.url === '/star' ? '*' : 'Accept-Encoding, *', etag: '"s"' }, 'any');
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const path of ['/star', '/star2']) {
    t.equal((await get(`${url}/mirror/m${path}`)).body, 'any');
    await app.cache.fills.drain();
    t.equal(await app.cache.store.lookup(httpId(`mirror:m:${path}`)), undefined, `${path}: nothing written to the disk for it`);
    t.equal((await get(`${url}/mirror/m${path}`)).headers['x-cache'], 'MISS', `${path}: asked upstream again`);
  }
  t.equal(app.cache.store.count, 0, 'the cache holds nothing');
});

t.test('an Expires that is no HTTP-date is in the past (RFC 9111 §5.3), however Date.parse reads it', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  const values: Record<string, string> = {
    '/iso': '2099-01-01T00:00:00Z',
    '/year': '2099',
    '/nozone': 'Thu, 01 Jan 2099 00:00:00',
    '/valid': 'Thu, 01 Jan 2099 00:00:00 GMT',
  };
  up.handler = (req, res) => {
    if (req.headers['if-none-match'] === '"x"') return reply(res, 304, { etag: '"x"' });
    return reply(res, 200, { expires: values[req.url!]!, etag: '"x"' }, 'body');
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const path of Object.keys(values)) {
    await get(`${url}/mirror/m${path}`);
    await app.cache.fills.drain();
    const again = await get(`${url}/mirror/m${path}`);
    t.equal(again.body, 'body', path);
    t.equal(again.headers.expires, path === '/valid' ? values[path] : '0', `${path}: sent on as ${path === '/valid' ? 'it came' : '"0", as every cache reads it'}`);
    const revalidated = up.requests.filter((r) => r.url === path).length === 2;
    t.equal(revalidated, path !== '/valid', path === '/valid' ? 'a valid date in 2099: fresh' : `${path} (Expires: ${values[path]}): stale, revalidated`);
  }
});

t.test('an answer no later request can be served from (stale at once, and no validator for a 304) is not kept: it was written anew by every request', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  const answers: Record<string, Record<string, string>> = {
    '/no-cache': { 'cache-control': 'no-cache' },
    '/max-age-0': { 'cache-control': 'public, max-age=0' },
    '/expires-0': { expires: '0' },
    '/validated': { 'cache-control': 'no-cache', etag: '"v"' },
    '/dated': { 'cache-control': 'max-age=0', 'last-modified': 'Mon, 23 Nov 2020 10:00:00 GMT' },
    '/if-error': { 'cache-control': 'max-age=0, stale-if-error=600' },
  };
  up.handler = (req, res) => {
    if (req.headers['if-none-match'] === '"v"') return reply(res, 304, { etag: '"v"' });
    if (req.headers['if-modified-since'] === 'Mon, 23 Nov 2020 10:00:00 GMT') return reply(res, 304, {});
    return reply(res, 200, answers[req.url!]!, 'x'.repeat(100_000));
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const [path, headers] of Object.entries(answers)) {
    const kept = headers.etag !== undefined || headers['last-modified'] !== undefined || path === '/if-error';
    for (let i = 0; i < 2; i++) {
      t.equal((await get(`${url}/mirror/m${path}`)).body.length, 100_000, `${path}: the body`);
      await app.cache.fills.drain();
    }
    const stored = await app.cache.store.lookup(httpId(`mirror:m:${path}`));
    t.equal(stored !== undefined, kept, `${path} (${JSON.stringify(headers)}): ${kept ? 'kept' : 'not kept'}`);
  }
  const revalidated = await get(`${url}/mirror/m/validated`);
  t.equal(revalidated.headers['x-cache'], 'HIT', 'one with a validator is revalidated with a 304, served from the disk');
});
