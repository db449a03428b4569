// Origin and cache refuse a request with more header fields than they accept (431, JSON
// error), counted exactly: node itself only drops fields past its maxHeadersCount. On the
// cache this holds for small hits too, which are answered before fastify.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startOrigin } from '../helpers/origin.js';
import { startCache } from '../cache/harness.js';
import { exchange, statusOf } from '../helpers/raw-http.js';

/**
 * Sends GET `path` with exactly `fields` header fields (Host, Connection and X-Filler-N) on
 * a raw socket, left open until the answer (a half-closed one may be dropped before it).
 */
async function getWithFields(url: string, path: string, fields: number): Promise<{ status: number; body: string }> {
  const head = (host: string) => [`GET ${path} HTTP/1.1`, `Host: ${host}`, 'Connection: close', ...Array.from({ length: fields - 2 }, (_, i) => `X-Filler-${i}: ${i}`)].join('\r\n');
  const whole = (raw: string) => {
    const length = /\r\ncontent-length: (\d+)\r\n/i.exec(raw)?.[1];
    const bodyStart = raw.indexOf('\r\n\r\n') + 4;
    return length !== undefined && bodyStart >= 4 && raw.length - bodyStart >= Number(length);
  };
  const answer = await exchange(url, (host) => `${head(host)}\r\n\r\n`, whole);
  const bodyStart = answer.indexOf('\r\n\r\n') + 4;
  return { status: statusOf(answer), body: answer.slice(bodyStart, bodyStart + Number(/\r\ncontent-length: (\d+)\r\n/i.exec(answer)?.[1] ?? 0)) };
}

t.test('origin: 64 fields by default, limits.maxHeaders when set', async (t) => {
  const dir = t.testdir({ default: {}, strict: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'default') });
  t.equal((await getWithFields(origin.url, '/-/healthz', 64)).status, 200, '64 fields are accepted');
  const refused = await getWithFields(origin.url, '/-/healthz', 65);
  t.equal(refused.status, 431, '65 are refused');
  t.match(JSON.parse(refused.body), { code: 'FC_ERR_TOO_MANY_HEADERS', message: 'the request has more than 64 header fields' });
  t.equal((await getWithFields(origin.url, '/-/healthz', 1000)).status, 431, 'and 1000');
  const strict = await startOrigin(t, { dataDir: join(dir, 'strict'), maxHeaders: 8 });
  t.equal((await getWithFields(strict.url, '/-/healthz', 8)).status, 200);
  t.equal((await getWithFields(strict.url, '/-/healthz', 9)).status, 431);
});

t.test('cache: refused before its fast paths too', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const body = Buffer.from('a small blob for the hit path\n');
  const hex = createHash('sha256').update(body).digest('hex');
  const put = await request(`${origin.url}/cas/sha256/${hex}`, { method: 'PUT', body, headers: { authorization: `Bearer ${origin.token}` } });
  await put.body.dump();
  t.equal(put.statusCode, 201);
  const { url } = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  const path = `/cas/sha256/${hex}`;
  t.equal((await getWithFields(url, path, 65)).status, 431, 'a cold miss with 65 fields');
  t.equal((await getWithFields(url, path, 64)).status, 200, 'with 64: filled');
  t.equal((await getWithFields(url, path, 64)).status, 200, 'then a small hit');
  const refused = await getWithFields(url, path, 65);
  t.equal(refused.status, 431, 'a small hit with 65 fields');
  t.match(JSON.parse(refused.body), { code: 'FC_ERR_TOO_MANY_HEADERS' });
  t.equal((await getWithFields(url, '/-/stats', 300)).status, 431, 'any route');
});

t.test('origin: a body in a transfer coding other than chunked is refused (it would be stored still encoded); /cas blobs are never sniffed', async (t) => {
  const origin = await startOrigin(t);
  const body = 'a body that claims to be gzip';
  const hex = createHash('sha256').update(body).digest('hex');
  const answer = await exchange(origin.url, (host) =>
    [`PUT /cas/sha256/${hex} HTTP/1.1`, `Host: ${host}`, `Authorization: Bearer ${origin.token}`, 'Transfer-Encoding: gzip, chunked', 'Connection: close', '', `${body.length.toString(16)}`, body, '0', '', ''].join('\r\n'));
  t.match(answer, /^HTTP\/1\.1 400 /);
  t.match(answer, /Transfer-Encoding \\"gzip, chunked\\" is not supported/);
  t.equal((await request(`${origin.url}/cas/sha256/${hex}`)).statusCode, 404, 'nothing stored');
  const stored = await request(`${origin.url}/cas/sha256/${hex}`, { method: 'PUT', body, headers: { authorization: `Bearer ${origin.token}` } });
  await stored.body.dump();
  const got = await request(`${origin.url}/cas/sha256/${hex}`);
  await got.body.dump();
  t.equal(got.headers['x-content-type-options'], 'nosniff');
});
