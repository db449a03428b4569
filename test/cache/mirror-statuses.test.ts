// Mirror answers other than 200 (a 404, a 410, a redirect): kept when fresh for a while, as
// RFC 9111 allows, and replayed with their status; passed on otherwise.
import type http from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { httpId } from '../../src/cache/disk-store.js';
import { fillJoiners, startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';
import { eventually } from '../helpers/wait.js';

async function ask(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { method, headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

function reply(res: http.ServerResponse, status: number, headers: Record<string, string>, body = ''): true {
  res.writeHead(status, headers).end(body);
  return true;
}

const DAY_AGO = new Date(Date.now() - 86_400_000).toUTCString();

t.test('a 404, a 410 and a 301 fresh for a while are kept and replayed with their status, headers and body, to GET and HEAD', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => {
    switch (req.url) {
      case '/base/missing': // a CDN's negative caching
        return reply(res, 404, { 'cache-control': 'max-age=300', 'content-type': 'text/plain' }, 'no such file');
      case '/base/removed':
        return reply(res, 410, { expires: new Date(Date.now() + 600_000).toUTCString(), date: new Date().toUTCString() }, 'gone for good');
      case '/base/heuristic': // cacheable by default, fresh for a tenth of its Last-Modified's age
        return reply(res, 404, { 'last-modified': DAY_AGO, date: new Date().toUTCString() }, 'not here either');
      case '/base/moved':
        return reply(res, 301, { 'cache-control': 'max-age=300', location: `${upUrl}/base/new/place` }, 'moved');
      default:
        return false;
    }
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: `${upUrl}/base` } } }, t.testdir());
  const cases = [
    ['missing', 404, 'no such file'],
    ['removed', 410, 'gone for good'],
    ['heuristic', 404, 'not here either'],
    ['moved', 301, 'moved'],
  ] as const;
  for (const [path, status, body] of cases) {
    const first = await ask(`${url}/mirror/m/${path}`);
    t.same([first.status, first.body, first.headers['x-cache']], [status, body, 'MISS'], `${path}: passed on first`);
  }
  await app.cache.fills.drain();
  for (const [path, status, body] of cases) {
    const again = await ask(`${url}/mirror/m/${path}`);
    t.same([again.status, again.body, again.headers['x-cache']], [status, body, 'HIT'], `${path}: then from disk`);
    const head = await ask(`${url}/mirror/m/${path}`, {}, 'HEAD');
    t.same([head.status, head.body, head.headers['content-length'], head.headers['x-cache']], [status, '', String(body.length), 'HIT'], `${path}: a HEAD too`);
    t.equal(up.count(`/base/${path}`), 1, `${path}: asked upstream once`);
    t.ok(await app.cache.store.lookup(httpId(`mirror:m:/${path}`)), `${path}: in the store`);
  }
  const moved = await ask(`${url}/mirror/m/moved`);
  t.equal(moved.headers.location, '/mirror/m/new/place', 'a kept redirect keeps its Location rewritten under the mirror');
  t.equal((await ask(`${url}/mirror/m/missing`)).headers['content-type'], 'text/plain', 'and an error page its Content-Type');
});

t.test('an answer other than 200 without freshness is passed on and not kept, nor is a 204', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => {
    switch (req.url) {
      case '/plain-404': // no Cache-Control, Expires or Last-Modified: nothing says how long it holds
        return reply(res, 404, { 'content-type': 'text/plain' }, 'missing');
      case '/found': // a 302 is kept only with explicit freshness
        return reply(res, 302, { location: '/elsewhere', 'last-modified': DAY_AGO }, '');
      case '/no-content': // fresh, but with no length (a 204 has none), as a body cut short would be
        return reply(res, 204, { 'cache-control': 'max-age=300' });
      case '/private-404':
        return reply(res, 404, { 'cache-control': 'private, max-age=300' }, 'yours only');
      default:
        return false;
    }
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const [path, status] of [['plain-404', 404], ['found', 302], ['no-content', 204], ['private-404', 404]] as const) {
    for (let i = 0; i < 2; i++) {
      const res = await ask(`${url}/mirror/m/${path}`);
      t.same([res.status, res.headers['x-cache']], [status, 'MISS'], `${path}, request ${i + 1}`);
      await app.cache.fills.drain();
      // (a kept answer that is stale at once would be asked for each time too, and written each time)
      t.equal(await app.cache.store.lookup(httpId(`mirror:m:/${path}`)), undefined, `${path}: not in the store`);
    }
    t.equal(up.count(`/${path}`), 2, `${path}: asked upstream each time`);
  }
});

t.test('Range and conditions do not apply to a kept 404 (RFC 9110 §13.2.1, §14.2): the 404 itself', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => (req.url === '/nope' ? reply(res, 404, { 'cache-control': 'max-age=300', etag: '"n"' }, '0123456789') : false);
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  await ask(`${url}/mirror/m/nope`);
  await app.cache.fills.drain();
  const ranged = await ask(`${url}/mirror/m/nope`, { range: 'bytes=2-4' });
  t.same([ranged.status, ranged.body, ranged.headers['content-range'], ranged.headers['x-cache']], [404, '0123456789', undefined, 'HIT'], 'Range: the whole 404');
  const conditional = await ask(`${url}/mirror/m/nope`, { 'if-none-match': '"n"' });
  t.same([conditional.status, conditional.body], [404, '0123456789'], 'If-None-Match that matches: the 404, not a 304');
  const precondition = await ask(`${url}/mirror/m/nope`, { 'if-match': '"other"' });
  t.same([precondition.status, precondition.body], [404, '0123456789'], 'If-Match that fails: the 404, not a 412');
  t.equal(up.count('/nope'), 1);
});

t.test('requests for a cold 404 that will be kept make one upstream request between them', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => (req.url === '/busy-404' ? reply(res, 404, { 'cache-control': 'max-age=300' }, 'not yet published') : false);
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const release = up.hold('/busy-404');
  const first = ask(`${url}/mirror/m/busy-404`);
  await eventually('upstream asked', () => up.count('/busy-404') === 1);
  const others = Array.from({ length: 7 }, () => ask(`${url}/mirror/m/busy-404`));
  // The others reach the fill before it is answered, then it is let go.
  await eventually('the others joined the fill', async () => (await fillJoiners(url)) === others.length);
  release();
  const answers = await Promise.all([first, ...others]);
  t.same(answers.map((a) => [a.status, a.body]), Array(8).fill([404, 'not yet published']), 'every request gets the 404');
  t.same(answers.map((a) => a.headers['x-cache']).sort(), ['COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED', 'MISS']);
  t.equal(up.count('/busy-404'), 1, 'upstream asked once');
  await eventually('no request counted as joining once all are answered', async () => (await fillJoiners(url)) === 0);
});

t.test('a kept 404 is revalidated as any entry: refreshed by a 304, replaced when the file appears, served stale in an outage when its upstream allowed it', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  let published = false;
  up.handler = (req, res) => {
    if (req.url !== '/pool/new.deb') return false;
    if (published) return reply(res, 200, { 'cache-control': 'max-age=300', etag: '"deb"' }, 'the package');
    // stale at once (max-age=0), kept for stale-if-error: each request revalidates it
    if (req.headers['if-none-match'] === '"absent"') return reply(res, 304, { etag: '"absent"', 'cache-control': 'max-age=0, stale-if-error=600' });
    return reply(res, 404, { 'cache-control': 'max-age=0, stale-if-error=600', etag: '"absent"' }, 'not published');
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const path = `${url}/mirror/m/pool/new.deb`;
  t.same([(await ask(path)).status, up.count('/pool/new.deb')], [404, 1]);
  await app.cache.fills.drain();
  const refreshed = await ask(path);
  t.same([refreshed.status, refreshed.body, refreshed.headers['x-cache']], [404, 'not published', 'HIT'], 'a 304 confirms the kept 404');
  t.equal(up.requests.filter((r) => r.url === '/pool/new.deb').at(-1)?.headers['if-none-match'], '"absent"', "revalidated with the 404's ETag");

  up.handler = (req, res) => (req.url === '/pool/new.deb' ? reply(res, 503, {}, 'down') : false);
  const stale = await ask(path);
  t.same([stale.status, stale.body, stale.headers['x-cache']], [404, 'not published', 'STALE'], 'upstream failing: the kept 404, stale (stale-if-error)');

  published = true;
  up.handler = (req, res) => (req.url === '/pool/new.deb' ? reply(res, 200, { 'cache-control': 'max-age=300', etag: '"deb"' }, 'the package') : false);
  const appeared = await ask(path);
  t.same([appeared.status, appeared.body, appeared.headers['x-cache']], [200, 'the package', 'MISS'], 'the file appeared: its 200 replaces the 404');
  await app.cache.fills.drain();
  const kept = await ask(path);
  t.same([kept.status, kept.body, kept.headers['x-cache']], [200, 'the package', 'HIT'], 'and is kept in its place');
});
