// End to end: a real origin (src/origin) behind a real cache, both on loopback.
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { buildOriginServer } from '../../src/origin/server.js';
import type { FastifyInstance } from 'fastify';
import type { CacheConfigFile } from '../../src/cache/config.js';
import { startCache } from './harness.js';
import { randomish } from './upstream-fixture.js';

/** A real origin (token "tok") and a cache in front of it (`cache`: more of its configuration), both on loopback. */
async function originBehindCache(t: Test, cache: Partial<CacheConfigFile> = {}): Promise<{ origin: FastifyInstance; originUrl: string; app: FastifyInstance; url: string }> {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await buildOriginServer({ dataDir: `${dir}/origin`, tokens: ['tok'], logLevel: false });
  const originUrl = await origin.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => origin.close());
  const { app, url } = await startCache(t, { ...cache, upstream: originUrl }, `${dir}/cache`);
  return { origin, originUrl, app, url };
}

t.test('cache → origin: PUT through the cache, GET hits, names revalidated', async (t) => {
  const { originUrl, app, url } = await originBehindCache(t);
  const body = randomish(3 * 1024 * 1024 + 17);
  const hex = createHash('sha256').update(body).digest('hex');

  const unauth = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body });
  await unauth.body.dump();
  t.equal(unauth.statusCode, 401, 'the origin refuses a PUT without the token (passed through)');
  const put = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body, headers: { authorization: 'Bearer tok' } });
  await put.body.dump();
  t.ok(put.statusCode >= 200 && put.statusCode < 300, `PUT accepted (${put.statusCode})`);
  t.ok(app.cache.store.has(`cas.v1/sha256/${hex.slice(0, 2)}/${hex}`), 'kept by the cache');

  // The tooltool alias is read-only, as on the origin (one namespace): uploads go to /cas.
  for (const base of [originUrl, url]) {
    const aliasPut = await request(`${base}/sha256/${hex}`, { method: 'PUT', body, headers: { authorization: 'Bearer tok' } });
    await aliasPut.body.dump();
    t.equal(aliasPut.statusCode, 405, `${base === url ? 'cache' : 'origin'}: PUT on the tooltool alias is 405`);
    t.equal(aliasPut.headers.allow, 'GET, HEAD');
  }

  const viaAlias = await request(`${url}/sha256/${hex}?region=a`);
  const got = Buffer.from(await viaAlias.body.arrayBuffer());
  t.equal(viaAlias.statusCode, 200);
  t.equal(viaAlias.headers['x-cache'], 'HIT');
  t.ok(got.equals(body));

  const missing = await request(`${url}/cas/sha256/${'e'.repeat(64)}`);
  await missing.body.dump();
  t.equal(missing.statusCode, 404, "the origin's 404 passes through");

  const art = Buffer.from('artifact bytes\n');
  const aput = await request(`${url}/artifacts/run1/job1/out.txt`, { method: 'PUT', body: art, headers: { authorization: 'Bearer tok' } });
  await aput.body.dump();
  t.ok(aput.statusCode < 300, `artifact PUT (${aput.statusCode})`);
  const a1 = await request(`${url}/artifacts/run1/job1/out.txt`);
  t.equal(await a1.body.text(), art.toString());
  t.equal(a1.headers['x-cache'], 'HIT', 'the artifact PUT was kept (the origin answers it with an ETag)');
  t.same([a1.headers['x-content-type-options'], a1.headers['content-security-policy']], ['nosniff', 'sandbox'], "the origin's headers for browsers, kept with it");
  await app.cache.fills.drain();
  const a2 = await request(`${url}/artifacts/run1/job1/out.txt`);
  t.equal(await a2.body.text(), art.toString());
  t.equal(a2.headers['x-cache'], 'HIT', 'the name was revalidated (304) and served from disk');
  t.same([a2.headers['x-content-type-options'], a2.headers['content-security-policy']], ['nosniff', 'sandbox'], 'and after revalidation');

  // a cold object fetched from the origin through the cache
  const cold = randomish(1024 * 1024);
  const coldHex = createHash('sha256').update(cold).digest('hex');
  const direct = await request(`${originUrl}/cas/sha256/${coldHex}`, { method: 'PUT', body: cold, headers: { authorization: 'Bearer tok' } });
  await direct.body.dump();
  const c1 = await request(`${url}/cas/sha256/${coldHex}`);
  t.ok(Buffer.from(await c1.body.arrayBuffer()).equals(cold));
  t.equal(c1.headers['x-cache'], 'MISS');
  t.equal(c1.headers.etag, `"sha256:${coldHex}"`, "the origin's ETag is kept");
  await app.cache.fills.drain();
});

t.test('HEAD of a name is answered as GET is: revalidated, and from the stored copy while the origin is down', async (t) => {
  const { origin, originUrl, app, url } = await originBehindCache(t, { timeouts: { connect: '500ms', headers: '500ms' } });
  const name = `${url}/projects/demo/bases/b1`;
  const base = randomish(200_000);
  const put = await request(name, { method: 'PUT', body: base, headers: { authorization: 'Bearer tok', 'content-type': 'application/x-tar' } });
  await put.body.dump();
  t.equal(put.statusCode, 201);
  const got = await request(name);
  t.ok(Buffer.from(await got.body.arrayBuffer()).equals(base));
  await app.cache.fills.drain();
  const stored = { 'content-length': String(base.length), etag: got.headers.etag, 'content-type': 'application/x-tar' };

  const up = await request(name, { method: 'HEAD' });
  await up.body.dump();
  t.match({ status: up.statusCode, xcache: up.headers['x-cache'], ...up.headers }, { status: 200, xcache: 'HIT', ...stored }, 'origin up: revalidated, answered from the stored copy');

  // A changed name: HEAD answers the new headers, and the new version is kept for the next GET.
  const next = randomish(150_000);
  const replaced = await request(`${originUrl}/projects/demo/bases/b1`, { method: 'PUT', body: next, headers: { authorization: 'Bearer tok', 'content-type': 'application/x-tar' } });
  await replaced.body.dump();
  const changed = await request(name, { method: 'HEAD' });
  await changed.body.dump();
  const current = { 'content-length': String(next.length), etag: replaced.headers.etag, 'content-type': 'application/x-tar' };
  t.match(changed.headers, current, 'origin changed the name: its new headers');
  await app.cache.fills.drain();
  const kept = await request(name);
  t.equal(kept.headers['x-cache'], 'HIT', 'the new version was kept');
  t.ok(Buffer.from(await kept.body.arrayBuffer()).equals(next));

  await origin.close();
  const head = await request(name, { method: 'HEAD' });
  t.equal(await head.body.text(), '', 'no body');
  t.match({ status: head.statusCode, xcache: head.headers['x-cache'], ...head.headers }, { status: 200, xcache: 'STALE', ...current }, 'origin down: the stored headers');
  const get = await request(name);
  t.equal(get.statusCode, 200);
  t.ok(Buffer.from(await get.body.arrayBuffer()).equals(next), 'GET still serves the stored copy');

  const never = `${url}/projects/demo/bases/never`;
  const getMiss = await request(never);
  const headMiss = await request(never, { method: 'HEAD' });
  await headMiss.body.dump();
  t.equal(getMiss.statusCode, 502);
  t.match(await getMiss.body.json(), { code: 'FC_ERR_UPSTREAM' });
  t.equal(headMiss.statusCode, getMiss.statusCode, 'a name never stored: the same 502 for HEAD as for GET');
  t.equal(headMiss.headers['cache-control'], 'no-store');
});

t.test('cache → origin: a name of an internal blob is never served to a client without a token', async (t) => {
  const { url } = await originBehindCache(t);
  const body = Buffer.from('internal toolchain\n');
  const hex = createHash('sha256').update(body).digest('hex');
  const auth = { authorization: 'Bearer tok' };
  const blob = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body, headers: { ...auth, 'x-fleetcache-visibility': 'internal' } });
  await blob.body.dump();
  t.equal(blob.statusCode, 201);
  const named = await request(`${url}/artifacts/run1/job1/tool.bin`, { method: 'PUT', body, headers: auth });
  await named.body.dump();
  t.equal(named.statusCode, 201);
  const withToken = await request(`${url}/artifacts/run1/job1/tool.bin`, { headers: auth });
  t.equal(withToken.statusCode, 200);
  t.equal(await withToken.body.text(), body.toString());
  const anonymous = await request(`${url}/artifacts/run1/job1/tool.bin`);
  await anonymous.body.dump();
  t.equal(anonymous.statusCode, 401, 'neither the PUT nor the GET with a token left a copy served to others');
});

t.test('cache → origin: a named upload\'s stated digest reaches the origin, which refuses a damaged body', async (t) => {
  const { originUrl, url } = await originBehindCache(t);
  const stated = `sha256:${createHash('sha256').update('what the machine hashed').digest('hex')}`;
  const put = await request(`${url}/artifacts/run1/job1/out.bin`, { method: 'PUT', body: 'what arrived instead', headers: { authorization: 'Bearer tok', 'x-fleetcache-digest': stated } });
  t.match(await put.body.json(), { code: 'FC_ERR_DIGEST_MISMATCH' });
  t.equal(put.statusCode, 400);
  const named = await request(`${originUrl}/artifacts/run1/job1/out.bin`);
  await named.body.dump();
  t.equal(named.statusCode, 404, 'no name published at the origin');
});

t.test("cache → origin: a base's stated plain size (push's X-Fleetcache-Plain-Size) reaches the origin, which records and lists it", async (t) => {
  const { originUrl, url } = await originBehindCache(t);
  const plainSize = 10_240;
  const put = await request(`${url}/projects/p/bases/b1`, { method: 'PUT', body: 'a gzip of the tar', headers: { authorization: 'Bearer tok', 'x-fleetcache-plain-size': String(plainSize) } });
  await put.body.dump();
  t.equal(put.statusCode, 201);
  const listed = await request(`${originUrl}/projects/p/bases/`);
  t.match(await listed.body.json(), { bases: [{ id: 'b1', plainSize }] }, 'a later push bounds its gunzip of the base by it');
});

t.test("a blob's answers carry the same headers from the cache as from the origin: HEAD passed through, GET miss, GET hit (small and large)", async (t) => {
  const { originUrl, app, url } = await originBehindCache(t);
  // per answer, or the cache's own: left out of the comparison
  const own = new Set(['date', 'age', 'x-cache', 'connection', 'keep-alive', 'last-modified']);
  const fields = (h: Record<string, unknown>) => Object.fromEntries(Object.entries(h).filter(([k]) => !own.has(k)).sort(([a], [b]) => a.localeCompare(b)));
  for (const size of [4096, 2 * 1024 * 1024]) {
    const body = randomish(size);
    const hex = createHash('sha256').update(body).digest('hex');
    const put = await request(`${originUrl}/cas/sha256/${hex}`, { method: 'PUT', body, headers: { authorization: 'Bearer tok' } });
    await put.body.dump();
    const blobUrl = (base: string) => `${base}/cas/sha256/${hex}`;
    const fromOrigin = await request(blobUrl(originUrl));
    await fromOrigin.body.dump();
    const answers: [string, Record<string, unknown>][] = [];
    for (const [what, method] of [['HEAD miss', 'HEAD'], ['GET miss', 'GET'], ['GET hit', 'GET'], ['HEAD hit', 'HEAD']] as const) {
      const res = await request(blobUrl(url), { method });
      await res.body.dump();
      answers.push([what, res.headers]);
      await app.cache.fills.drain();
    }
    for (const [what, headers] of answers) t.same(fields(headers), fields(fromOrigin.headers), `${size} bytes, ${what}: the origin's headers`);
    t.same(answers.map(([, h]) => h['x-cache']), ['MISS', 'MISS', 'HIT', 'HIT']);
  }
});

t.test('cache → origin: a name re-uploaded with the same bytes but another Content-Type or Content-Disposition is served with the new ones', async (t) => {
  const { originUrl, url } = await originBehindCache(t);
  const path = '/artifacts/run1/job1/report';
  const body = 'same bytes\n';
  const upload = async (headers: Record<string, string>) => {
    const put = await request(`${originUrl}${path}`, { method: 'PUT', body, headers: { authorization: 'Bearer tok', ...headers } });
    await put.body.dump();
    t.ok(put.statusCode < 300, `PUT ${JSON.stringify(headers)} (${put.statusCode})`);
  };
  const fields = async () => {
    const res = await request(`${url}${path}`);
    t.equal(await res.body.text(), body);
    return [res.headers['content-type'], res.headers['content-disposition']];
  };
  await upload({ 'content-type': 'text/plain', 'content-disposition': 'attachment; filename="report.txt"' });
  t.same(await fields(), ['text/plain', 'attachment; filename="report.txt"'], 'stored by the cache');
  await upload({ 'content-type': 'text/html' });
  t.same(await fields(), ['text/html', undefined], 'the new type, and no disposition');
  await upload({ 'content-type': 'text/html', 'content-disposition': 'inline' });
  t.same(await fields(), ['text/html', 'inline'], 'a disposition added');
  await upload({});
  t.same(await fields(), ['application/octet-stream', undefined], 'neither');
  t.same(await fields(), ['application/octet-stream', undefined], 'and again, from the revalidated copy');
});

t.test("cache → origin: a project's bases listing is revalidated with a 304 while unchanged, refetched once a base is added", async (t) => {
  const { originUrl, app, url } = await originBehindCache(t);
  const putBase = async (id: string): Promise<void> => {
    const put = await request(`${originUrl}/projects/p/bases/${id}`, { method: 'PUT', body: `the tar of ${id}`, headers: { authorization: 'Bearer tok' } });
    await put.body.dump();
    t.equal(put.statusCode, 201, `base ${id} put`);
  };
  const upstreamBytes = (): number => app.cache.metrics.stats().kinds.projects?.bytesUpstream ?? 0;
  const list = async (): Promise<{ ids: string[]; text: string; etag: unknown }> => {
    const res = await request(`${url}/projects/p/bases/`);
    const text = await res.body.text();
    t.equal(res.statusCode, 200);
    await app.cache.fills.drain();
    return { ids: (JSON.parse(text) as { bases: { id: string }[] }).bases.map((b) => b.id), text, etag: res.headers.etag };
  };
  for (let i = 0; i < 20; i++) await putBase(`b${i}`); // a listing of some size
  const first = await list();
  t.equal(first.ids.length, 20);
  t.match(first.etag, /^"sha256:[0-9a-f]{64}"$/, 'the listing has an ETag: the digest of its text');
  const afterFirst = upstreamBytes();
  t.ok(afterFirst >= Buffer.byteLength(first.text), `the first listing came from upstream (${afterFirst} bytes)`);
  const again = await list();
  t.same([again.text, again.etag], [first.text, first.etag], 'the same listing');
  t.equal(upstreamBytes(), afterFirst, 'revalidated with a 304: not one byte of it fetched again');

  await putBase('b20');
  const changed = await list();
  t.same([changed.ids.length, changed.ids.includes('b20')], [21, true], 'a base added: the new listing, not the stored one');
  t.not(changed.etag, first.etag, 'under another ETag');
  t.equal(upstreamBytes(), afterFirst + Buffer.byteLength(changed.text), 'fetched whole once');

  const conditional = await request(`${originUrl}/projects/p/bases/`, { headers: { 'if-none-match': String(changed.etag) } });
  await conditional.body.dump();
  t.same([conditional.statusCode, conditional.headers.etag], [304, changed.etag], 'the origin answers a conditional GET of the current listing with a 304');
});
