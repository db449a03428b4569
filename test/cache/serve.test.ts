// What the cache's own answers carry (serve.ts): an error answer is not the object.
import type { ServerResponse } from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { requestError } from '../../src/http/errors.js';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';
import { eventually } from '../helpers/wait.js';

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

t.test('a Range answered with the whole body (several ranges, another unit, last before first) on a fill of unknown length: the body streams at once, not once the fill has ended', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const held: ServerResponse[] = [];
  t.teardown(() => held.forEach((res) => res.destroy()));
  up.handler = (_req, res) => {
    // chunked, and stalled after its first bytes: its size is known only at its end
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
    res.write('abc');
    held.push(res);
    return true;
  };
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  for (const [i, range] of ['bytes=0-1,5-6', 'items=0-1', 'bytes=5-2'].entries()) {
    const answer = request(`${url}/mirror/m/object-${i}`, { headers: { range } });
    const res = await Promise.race([answer, new Promise<undefined>((resolve) => setTimeout(resolve, 3000, undefined).unref())]);
    t.ok(res, `${range}: the answer starts while upstream still sends the body`);
    held.at(-1)!.end('defghij');
    const done = res ?? (await answer);
    t.same([done.statusCode, done.headers['content-range'], await done.body.text()], [200, undefined, 'abcdefghij'], `${range}: the whole body`);
    await app.cache.fills.drain();
  }
  // one range still waits for the size, and gets its 206
  const answer = request(`${url}/mirror/m/ranged`, { headers: { range: 'bytes=-3' } });
  await eventually('upstream asked', () => held.length === 4);
  held.at(-1)!.end('defghij');
  const res = await answer;
  t.same([res.statusCode, res.headers['content-range'], await res.body.text()], [206, 'bytes 7-9/10', 'hij'], 'bytes=-3: its 206');
});
