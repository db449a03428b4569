// What needs a token at the origin needs one through a cache too: an internal asset, or any
// object of an origin whose reads need a token, is forwarded by the cache, never kept and
// served to a client without the token (a real origin behind a real cache, on loopback).
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { buildOriginServer } from '../../src/origin/server.js';
import { eventually } from '../helpers/wait.js';
import { startCache } from './harness.js';

const TOKEN = 'read-access-token';
const auth = { authorization: `Bearer ${TOKEN}` };

async function originAndCache(t: Test, readAccess: 'public' | 'token'): Promise<{ originUrl: string; url: string; kept: (path: string) => boolean }> {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await buildOriginServer({ dataDir: `${dir}/origin`, tokens: [TOKEN], readAccess, logLevel: false });
  const originUrl = await origin.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => origin.close());
  const { app, url } = await startCache(t, { upstream: originUrl }, `${dir}/cache`);
  return { originUrl, url, kept: (id) => app.cache.store.has(id) };
}

async function status(url: string, headers: Record<string, string> = {}): Promise<{ status: number; xcache: unknown; body: string }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, xcache: res.headers['x-cache'], body: await res.body.text() };
}

async function put(url: string, body: string, headers: Record<string, string>): Promise<number> {
  const res = await request(url, { method: 'PUT', body, headers: { ...auth, ...headers } });
  await res.body.dump();
  return res.statusCode;
}

t.test('an internal asset uploaded through the cache stays internal, and the cache never serves it without a token', async (t) => {
  const { originUrl, url, kept } = await originAndCache(t, 'public');
  const body = 'internal toolchain\n';
  const hex = createHash('sha512').update(body).digest('hex');
  t.ok((await put(`${url}/cas/sha512/${hex}`, body, { 'x-fleetcache-visibility': 'internal' })) < 300, 'uploaded through the cache');
  t.equal((await status(`${originUrl}/sha512/${hex}`)).status, 401, 'the origin stored it internal (the visibility was forwarded)');
  t.notOk(kept(`cas.v1/sha512/${hex.slice(0, 2)}/${hex}`), 'the cache did not keep it');
  for (const [via, path] of [['tooltool', `/sha512/${hex}`], ['cas', `/cas/sha512/${hex}`]] as const) {
    t.equal((await status(`${url}${path}`)).status, 401, `${via}: refused without a token`);
    const withToken = await status(`${url}${path}`, auth);
    t.same([withToken.status, withToken.body], [200, body], `${via}: served with a token`);
    t.equal((await status(`${url}${path}`)).status, 401, `${via}: still refused without a token after a read with one`);
  }
  t.notOk(kept(`cas.v1/sha512/${hex.slice(0, 2)}/${hex}`), 'never kept');

  const pub = 'public toolchain\n';
  const pubHex = createHash('sha512').update(pub).digest('hex');
  t.ok((await put(`${url}/cas/sha512/${pubHex}`, pub, {})) < 300);
  t.ok(kept(`cas.v1/sha512/${pubHex.slice(0, 2)}/${pubHex}`), 'a public asset uploaded through the cache is kept');
  t.same(await status(`${url}/sha512/${pubHex}`), { status: 200, xcache: 'HIT', body: pub }, 'and served from it to anyone');
});

t.test('a public blob says so through the cache, as the origin does: on a miss, a hit and a HEAD', async (t) => {
  const { originUrl, url, kept } = await originAndCache(t, 'public');
  const body = 'public toolchain\n';
  const hex = createHash('sha256').update(body).digest('hex');
  t.ok((await put(`${originUrl}/cas/sha256/${hex}`, body, {})) < 300);
  for (const [what, method, xcache] of [['miss', 'GET', 'MISS'], ['hit', 'GET', 'HIT'], ['HEAD of a hit', 'HEAD', 'HIT']] as const) {
    const res = await request(`${url}/cas/sha256/${hex}`, { method });
    await res.body.dump();
    t.same([res.statusCode, res.headers['x-cache'], res.headers['x-fleetcache-visibility']], [200, xcache, 'public'], what);
    if (what === 'miss') await eventually('the fill is kept', () => kept(`cas.v1/sha256/${hex.slice(0, 2)}/${hex}`));
  }
});

t.test('readAccess: token at the origin: blobs and names read through the cache need the token every time', async (t) => {
  const { url, kept } = await originAndCache(t, 'token');
  const body = 'a blob of a private fleet\n';
  const hex = createHash('sha256').update(body).digest('hex');
  t.ok((await put(`${url}/cas/sha256/${hex}`, body, {})) < 300);
  const filled = await status(`${url}/cas/sha256/${hex}`, auth);
  t.same([filled.status, filled.body], [200, body], 'read with the token');
  for (const [via, path] of [['cas', `/cas/sha256/${hex}`], ['tooltool', `/sha256/${hex}`]] as const) {
    t.equal((await status(`${url}${path}`)).status, 401, `${via}: refused without the token after a read with it`);
  }
  t.notOk(kept(`cas.v1/sha256/${hex.slice(0, 2)}/${hex}`), 'not kept: the cache cannot check tokens');

  t.ok((await put(`${url}/artifacts/run1/job1/log.txt`, 'log\n', {})) < 300);
  t.same((await status(`${url}/artifacts/run1/job1/log.txt`, auth)).body, 'log\n', 'a name read with the token');
  t.equal((await status(`${url}/artifacts/run1/job1/log.txt`)).status, 401, 'and refused without it');
});

t.test('a name uploaded through the cache is served with the type it was uploaded with, and the origin caching headers', async (t) => {
  const { originUrl, url } = await originAndCache(t, 'public');
  t.ok((await put(`${url}/artifacts/run1/job1/report.html`, '<p>ok</p>', { 'content-type': 'text/html; charset=utf-8' })) < 300);
  const viaCache = await request(`${url}/artifacts/run1/job1/report.html`);
  await viaCache.body.dump();
  const fromOrigin = await request(`${originUrl}/artifacts/run1/job1/report.html`);
  await fromOrigin.body.dump();
  t.equal(viaCache.headers['x-cache'], 'HIT', 'kept at upload');
  for (const name of ['content-type', 'cache-control', 'etag', 'last-modified']) {
    t.equal(viaCache.headers[name], fromOrigin.headers[name], `${name} as the origin answers it`);
  }
});
