// The cache evaluates the preconditions of a GET or HEAD as the origin does
// (checkReadPreconditions in src/http/blob-reply.ts): If-Match and If-Unmodified-Since
// false → 412 FC_ERR_PRECONDITION_FAILED with no-store and none of the object's headers;
// If-None-Match (weak comparison) or If-Modified-Since → 304. For a blob held in memory
// (the fast path), one on disk, a fill, a name revalidated with upstream, and a mirrored
// answer kept without ETag or Last-Modified.
import t from 'tap';
import { request } from 'undici';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

async function get(url: string, headers: Record<string, string>, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { method, headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

const LAST_MODIFIED = 'Mon, 02 Mar 2026 10:00:00 GMT';
const EARLIER = 'Mon, 02 Mar 2026 09:59:59 GMT';

t.test('If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since on what the cache serves', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const small = up.addBlob(4096);
  const large = up.addBlob(64 * 1024); // past SMALL_MAX: read from its file by the routes
  up.objects.set('/artifacts/r1/j1/out.txt', { body: Buffer.from('artifact'), headers: { etag: '"a1"', 'last-modified': LAST_MODIFIED } });
  // A mirrored answer kept with no validator at all: only `*` can match it.
  up.objects.set('/pool/plain.txt', { body: Buffer.from('plain'), headers: { 'cache-control': 'max-age=600' } });
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());

  const paths = [
    [`/cas/sha256/${small.hex}`, `"sha256:${small.hex}"`, 'small blob (fast path)'],
    [`/sha256/${small.hex}`, `"sha256:${small.hex}"`, 'small blob, tooltool alias (fast path)'],
    [`/cas/sha256/${small.hex.toUpperCase()}`, `"sha256:${small.hex}"`, 'small blob (routes)'],
    [`/cas/sha256/${large.hex}`, `"sha256:${large.hex}"`, 'large blob'],
    ['/artifacts/r1/j1/out.txt', '"a1"', 'name'],
  ] as const;
  for (const [path, etag, what] of paths) {
    // The first request fills (MISS), the others are hits.
    for (const round of ['MISS', 'HIT']) {
      const failed = await get(url + path, { 'if-match': '"sha256:other"' });
      t.equal(failed.status, 412, `${what} ${round}: If-Match of another ETag`);
      t.match(failed.body, /"code":"FC_ERR_PRECONDITION_FAILED"/);
      t.equal(failed.headers['cache-control'], 'no-store', `${what} ${round}: no-store`);
      t.equal(failed.headers.etag, undefined, `${what} ${round}: not the object's headers`);
      await app.cache.fills.drain();
    }
    for (const method of ['GET', 'HEAD'] as const) {
      t.equal((await get(url + path, { 'if-match': `W/${etag}` }, method)).status, 412, `${what} ${method}: If-Match compares strongly`);
      t.equal((await get(url + path, { 'if-match': '"x", ' + etag }, method)).status, 200, `${what} ${method}: If-Match of a list with its ETag`);
      t.equal((await get(url + path, { 'if-match': '*' }, method)).status, 200, `${what} ${method}: If-Match: *`);
      t.equal((await get(url + path, { 'if-match': '"sha256:other"', 'if-none-match': etag }, method)).status, 412, `${what} ${method}: If-Match before If-None-Match`);
      t.equal((await get(url + path, { 'if-match': etag, 'if-none-match': etag }, method)).status, 304, `${what} ${method}: If-Match holds, If-None-Match matches`);
      t.equal((await get(url + path, { 'if-none-match': `"x", W/${etag}` }, method)).status, 304, `${what} ${method}: If-None-Match compares weakly, in a list`);
      t.equal((await get(url + path, { 'if-none-match': '*' }, method)).status, 304, `${what} ${method}: If-None-Match: *`);
    }
  }

  const name = `${url}/artifacts/r1/j1/out.txt`;
  for (const method of ['GET', 'HEAD'] as const) {
    t.equal((await get(name, { 'if-unmodified-since': EARLIER }, method)).status, 412, `name ${method}: If-Unmodified-Since before its Last-Modified`);
    t.equal((await get(name, { 'if-unmodified-since': LAST_MODIFIED }, method)).status, 200, `name ${method}: If-Unmodified-Since its Last-Modified`);
    t.equal((await get(name, { 'if-unmodified-since': 'yesterday' }, method)).status, 200, `name ${method}: If-Unmodified-Since that is no date (ignored)`);
    t.equal((await get(name, { 'if-match': '"a1"', 'if-unmodified-since': EARLIER }, method)).status, 200, `name ${method}: If-Unmodified-Since ignored with If-Match`);
    t.equal((await get(name, { 'if-modified-since': LAST_MODIFIED }, method)).status, 304, `name ${method}: If-Modified-Since its Last-Modified`);
    t.equal((await get(name, { 'if-modified-since': EARLIER }, method)).status, 200, `name ${method}: If-Modified-Since before it`);
  }
  const plain = `${url}/mirror/m/pool/plain.txt`;
  t.equal((await get(plain, {})).headers['x-cache'], 'MISS');
  await app.cache.fills.drain();
  for (const method of ['GET', 'HEAD'] as const) {
    const kept = await get(plain, { 'if-none-match': '*' }, method);
    t.same([kept.status, kept.headers['x-cache'], kept.headers.etag], [304, 'HIT', undefined], `mirrored, no validator, ${method}: If-None-Match: * matches`);
    t.equal((await get(plain, { 'if-none-match': '"x"' }, method)).status, 200, `mirrored, no validator, ${method}: no tag matches`);
    t.equal((await get(plain, { 'if-match': '*' }, method)).status, 200, `mirrored, no validator, ${method}: If-Match: * holds`);
  }
  const full = await get(name, { 'if-match': '"a1"' });
  t.same([full.status, full.body], [200, 'artifact'], 'If-Match holds: the body');
});

t.test('an ETag holding a comma (a quoted string may) is matched whole in an If-None-Match or If-Match list', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const etag = '"v1,2026-12-05"';
  up.objects.set('/pool/comma.txt', { body: Buffer.from('comma'), headers: { etag, 'cache-control': 'max-age=600' } });
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const path = `${url}/mirror/m/pool/comma.txt`;
  t.equal((await get(path, {})).headers.etag, etag, 'kept with its ETag');
  t.equal((await get(path, { 'if-none-match': etag })).status, 304, 'If-None-Match of that ETag: 304');
  t.equal((await get(path, { 'if-none-match': `"x", W/${etag}` })).status, 304, 'in a list, weakly: 304');
  t.equal((await get(path, { 'if-none-match': '"v1"' })).status, 200, 'one of its pieces does not match');
  t.equal((await get(path, { 'if-match': `"x", ${etag}` })).status, 200, 'If-Match of a list with it');
  t.equal((await get(path, { 'if-match': '"2026-12-05"' })).status, 412, 'If-Match of one of its pieces: 412');
});
