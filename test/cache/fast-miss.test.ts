// Plain cold GETs of blobs led before fastify (src/cache/fast-miss.ts) give exactly the
// answer of the routes: same status, headers, body and accounting, for a small blob, a
// large one, an upstream 404, a body that does not match its digest and an upstream that
// is down. The routes are reached with the uppercase spelling of the same digest, which
// the fast paths leave alone; each spelling gets a cache of its own.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { fillJoiners, startCache } from './harness.js';
import { eventually } from '../helpers/wait.js';
import { randomish, startUpstream, UpstreamFixture } from './upstream-fixture.js';

interface Answer {
  status: number;
  headers: Record<string, unknown>;
  body: Buffer;
}

async function get(url: string): Promise<Answer> {
  // one request id for all: an error answer names it, the same whichever path answers
  const res = await request(url, { headers: { 'x-request-id': 'fast-miss-test' } });
  const body = Buffer.from(await res.body.arrayBuffer());
  const { date: _date, connection: _connection, 'keep-alive': _keepAlive, ...headers } = res.headers;
  return { status: res.statusCode, headers, body };
}

async function stats(url: string): Promise<Record<string, unknown>> {
  return JSON.parse((await get(`${url}/-/stats`)).body.toString()).kinds;
}

/** Asks one cache the lowercase path (fast path), another the uppercase one (routes). */
async function bothWays(t: Test, upUrl: string, path: (hex: string) => string, hex: string) {
  const dir = await mkdtemp(join(tmpdir(), 'fast-miss-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const fast = await startCache(t, { upstream: upUrl }, join(dir, 'fast'));
  const routes = await startCache(t, { upstream: upUrl }, join(dir, 'routes'));
  const a = await get(fast.url + path(hex));
  const b = await get(routes.url + path(hex.toUpperCase()));
  await Promise.all([fast.app.cache.fills.drain(), routes.app.cache.fills.drain()]);
  return { a, b, fast, routes };
}

t.test('a small blob and a large one: the same answers and accounting as the routes', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  for (const size of [4096, 3 * 1024 * 1024]) {
    const { hex, body } = up.addBlob(size);
    for (const path of [(h: string) => `/cas/sha256/${h}`, (h: string) => `/sha256/${h}?region=test`]) {
      const { a, b, fast, routes } = await bothWays(t, upUrl, path, hex);
      t.equal(a.status, 200);
      t.equal(a.headers['x-cache'], 'MISS');
      t.same(a.headers, b.headers, `${size} bytes: the same headers`);
      t.ok(a.body.equals(body) && b.body.equals(body), `${size} bytes: the same body`);
      t.same(await stats(fast.url), await stats(routes.url), `${size} bytes: counted the same`);
      const id = `cas.v1/sha256/${hex.slice(0, 2)}/${hex}`;
      t.ok(fast.app.cache.store.has(id), 'kept');
    }
  }
});

t.test('upstream 404, a body that does not match its digest, an upstream that is down: the same errors', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const missing = createHash('sha256').update('nowhere').digest('hex');
  const notFound = await bothWays(t, upUrl, (h) => `/cas/sha256/${h}`, missing);
  t.equal(notFound.a.status, 404);
  t.same(notFound.a.headers, notFound.b.headers);
  t.same(notFound.a.body, notFound.b.body);
  t.same(await stats(notFound.fast.url), await stats(notFound.routes.url));

  const wrong = createHash('sha256').update('claimed').digest('hex');
  up.objects.set(`/cas/sha256/${wrong}`, { body: randomish(4096) });
  const mismatch = await bothWays(t, upUrl, (h) => `/cas/sha256/${h}`, wrong);
  t.equal(mismatch.a.status, 502, 'refused');
  t.equal(mismatch.a.headers['cache-control'], 'no-store', 'an error is kept by no cache in front');
  t.same(mismatch.a.headers, mismatch.b.headers);
  t.same(JSON.parse(mismatch.a.body.toString()), JSON.parse(mismatch.b.body.toString()));
  t.notOk(mismatch.fast.app.cache.store.has(`cas.v1/sha256/${wrong.slice(0, 2)}/${wrong}`), 'not kept');

  await up.stop();
  const down = await bothWays(t, upUrl, (h) => `/cas/sha256/${h}`, missing);
  t.equal(down.a.status, 502);
  t.same(down.a.headers, down.b.headers);
  t.equal(JSON.parse(down.a.body.toString()).code, 'FC_ERR_UPSTREAM');
  t.same(await stats(down.fast.url), await stats(down.routes.url));
});

t.test('requests arriving while the fast path fills join its fill: one upstream request', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(2 * 1024 * 1024);
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  // upstream answers once the later requests have joined the fill the first one leads
  const release = up.hold(`/cas/sha256/${hex}`);
  const first = get(`${url}/cas/sha256/${hex}`);
  await eventually('the fast path asked upstream', () => up.count(`/cas/sha256/${hex}`) === 1);
  const later = [get(`${url}/cas/sha256/${hex}`), get(`${url}/cas/sha256/${hex.toUpperCase()}`), get(`${url}/sha256/${hex}`)];
  await eventually('the later requests joined the fill', async () => (await fillJoiners(url)) === later.length);
  release();
  const all = await Promise.all([first, ...later]);
  t.same(all.map((a) => a.headers['x-cache']), ['MISS', 'COLLAPSED', 'COLLAPSED', 'COLLAPSED']);
  t.ok(all.every((a) => a.body.equals(body)), 'every body right');
  t.equal(up.count(`/cas/sha256/${hex}`), 1, 'upstream asked once');
  await eventually('no request counted as joining once all are answered', async () => (await fillJoiners(url)) === 0);
});

t.test('an object larger than the whole cache is passed through by both paths, upstream asked once', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(2 * 1024 * 1024);
  const { app, url } = await startCache(t, { upstream: upUrl, maxSize: '1MiB' }, t.testdir());
  for (const spelling of [hex, hex.toUpperCase()]) {
    const before = up.count(`/cas/sha256/${hex}`);
    const a = await get(`${url}/cas/sha256/${spelling}`);
    t.equal(a.status, 200);
    t.ok(a.body.equals(body), 'the whole body');
    await app.cache.fills.drain();
    // The fill is refused once upstream's length is known; its answer is what is passed through.
    t.equal(up.count(`/cas/sha256/${hex}`) - before, 1, 'upstream asked once');
  }
  t.equal(app.cache.store.count, 0, 'nothing kept');
  t.match(await stats(url), { cas: { misses: 2 } });
});
