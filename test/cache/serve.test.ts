// What the cache's own answers carry (serve.ts): an error answer is not the object.
import t from 'tap';
import { request } from 'undici';
import { requestError } from '../../src/http/errors.js';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

t.test('416: none of the object\'s headers (caching, validators, encoding), and no-store', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex } = up.addBlob(12);
  up.objects.set('/pkg.gz', { body: Buffer.alloc(12, 1), headers: { 'cache-control': 'max-age=60', etag: '"gz"', 'content-encoding': 'gzip', 'last-modified': 'Mon, 23 Nov 2026 10:00:00 GMT' } });
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const path of [`/cas/sha256/${hex}`, '/mirror/m/pkg.gz']) {
    for (const xcache of ['MISS', 'HIT']) {
      const res = await request(`${url}${path}`, { headers: { range: 'bytes=50-' } });
      const body = await res.body.text();
      t.equal(res.statusCode, 416, `${path} ${xcache}`);
      t.equal(res.headers['x-cache'], xcache);
      t.equal(res.headers['content-range'], 'bytes */12');
      t.equal(res.headers['cache-control'], 'no-store');
      t.match(res.headers, { 'content-type': /^application\/json/ });
      for (const name of ['etag', 'last-modified', 'content-encoding', 'expires', 'age']) t.equal(res.headers[name], undefined, `no ${name}`);
      t.match(JSON.parse(body), { code: 'FC_ERR_RANGE' });
      await app.cache.fills.drain();
    }
  }
});

t.test('ranges are read as the origin reads them (http/range.ts): the unit in any case, several ranges as the whole', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(100);
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  await (await request(`${url}/cas/sha256/${hex}`)).body.dump();
  await app.cache.fills.drain();
  for (const [range, status, bytes] of [['BYTES=0-9', 206, body.subarray(0, 10)], ['bytes=-5', 206, body.subarray(95)], ['bytes=0-1,5-6', 200, body], ['items=0-1', 200, body]] as const) {
    const res = await request(`${url}/cas/sha256/${hex}`, { headers: { range } });
    t.same([res.statusCode, res.headers['x-cache']], [status, 'HIT'], range);
    t.ok(Buffer.from(await res.body.arrayBuffer()).equals(bytes), `${range}: its bytes`);
  }
});

t.test("a Range request on a fill without Content-Length that fails: a 502 without the object's headers", async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', etag: '"cut"' });
    res.write('abc');
    setImmediate(() => res.socket?.destroy());
    return true;
  };
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const res = await request(`${url}/mirror/m/cut`, { headers: { range: 'bytes=1-' } });
  t.match(JSON.parse(await res.body.text()), { code: 'FC_ERR_UPSTREAM' });
  t.equal(res.statusCode, 502);
  t.equal(res.headers.etag, undefined, 'no etag');
  t.not(res.headers['cache-control'], 'max-age=60', "not the object's cache-control");
});

t.test("a request error fastify raises is the client's (4xx), as at the origin; anything else is internal", async (t) => {
  const fastifyError = (code: string, statusCode: number) => Object.assign(new Error(`${code} happened`), { code, statusCode });
  t.match(requestError(fastifyError('FST_ERR_CTP_INVALID_MEDIA_TYPE', 415)), { code: 'FC_ERR_BAD_REQUEST', status: 400 }, 'no parser for the body: was a 500');
  t.match(requestError(fastifyError('FST_ERR_SOMETHING_NEW', 431)), { code: 'FC_ERR_BAD_REQUEST', status: 400 }, 'any other 4xx of fastify');
  t.match(requestError(fastifyError('FST_ERR_BAD_URL', 400)), { code: 'FC_ERR_BAD_NAME' }, "the origin's mapping");
  t.match(requestError(new Error('disk on fire')), { code: 'FC_ERR_INTERNAL', status: 500 });
});
