// Request lines and credentials taken as the routes see them: an absolute-form target
// (`PUT http://host/artifacts/…`, which servers must accept) names the path that was
// routed, not a slice of the whole URL; a request with two Authorization headers is refused
// (the server and a proxy in front could each check a different one); a method no path has
// is a 501, an HTTP version other than 1.x a 505.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startOrigin } from '../helpers/origin.js';
import { startCache } from '../cache/harness.js';
import { exchange, statusOf } from '../helpers/raw-http.js';

/** Sends `head` and `body` on a raw socket; resolves with the status and body of the answer. */
async function raw(url: string, head: string[], body = ''): Promise<{ status: number; body: string }> {
  const text = await exchange(url, (host) => `${[...head, `Host: ${host}`, 'Connection: close', `Content-Length: ${Buffer.byteLength(body)}`].join('\r\n')}\r\n\r\n${body}`);
  return { status: statusOf(text), body: text.slice(text.indexOf('\r\n\r\n') + 4) };
}

t.test('an absolute-form target names the routed path, on the origin and through a cache', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  for (const [server, url] of [['origin', origin.url], ['cache', cache.url]] as const) {
    const put = await raw(url, [`PUT http://elsewhere.example/artifacts/r1/${server}/wanted.txt HTTP/1.1`, `Authorization: Bearer ${origin.token}`], 'abs');
    t.equal(put.status, 201, `${server}: stored`);
    const got = await request(`${origin.url}/artifacts/r1/${server}/wanted.txt`, { headers: { authorization: `Bearer ${origin.token}` } });
    t.equal(got.statusCode, 200, `${server}: under the path that was routed`);
    t.equal(await got.body.text(), 'abs');
  }
  for (const name of ['x/../y.txt', 'x/%2e%2e/y.txt', 'a\\b.txt']) {
    const refused = await raw(origin.url, [`PUT http://elsewhere.example/artifacts/r1/j/${name} HTTP/1.1`, `Authorization: Bearer ${origin.token}`], 'dot');
    t.equal(refused.status, 400, `${name}: refused as in origin form, not stored under another name`);
  }
  const get = await raw(cache.url, [`GET http://elsewhere.example/artifacts/r1/origin/wanted.txt HTTP/1.1`, `Authorization: Bearer ${origin.token}`]);
  t.equal(get.status, 200, 'a GET in absolute form too');
  t.equal(get.body, 'abs');
});

t.test('leading slashes count as one (`{url}/{algorithm}/{digest}` of a base URL ending in "/"), on the origin and through a cache', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  const body = 'a tool\n';
  const hex = createHash('sha512').update(body).digest('hex');
  const put = await request(`${origin.url}/cas/sha512/${hex}`, { method: 'PUT', body, headers: { authorization: `Bearer ${origin.token}` } });
  t.equal(put.statusCode, 201);
  await put.body.dump();
  for (const [server, url] of [['origin', origin.url], ['cache', cache.url], ['cache, stored', cache.url]] as const) {
    for (const target of [`//sha512/${hex}`, `///cas/sha512/${hex}`, `http://elsewhere.example//sha512/${hex}`]) {
      const got = await raw(url, [`GET ${target} HTTP/1.1`]);
      t.same([got.status, got.body], [200, body], `${server}: GET ${target}`);
    }
  }
  t.equal((await raw(origin.url, [`GET //nothing/${hex} HTTP/1.1`])).status, 404, 'an unknown path stays unknown');
});

t.test('two Authorization headers: 400, whichever comes first', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  for (const url of [origin.url, cache.url]) {
    for (const order of [[origin.token, 'nope'], ['nope', origin.token]]) {
      const res = await raw(url, ['PUT /artifacts/r1/j/two.txt HTTP/1.1', ...order.map((tok) => `Authorization: Bearer ${tok}`)], 'two');
      t.equal(res.status, 400, `${url === origin.url ? 'origin' : 'cache'}: refused (${order[0] === 'nope' ? 'wrong one first' : 'right one first'})`);
      t.match(res.body, /FC_ERR_BAD_REQUEST.*more than one Authorization header/);
    }
  }
  // A plain GET of a blob is answered before the routes (fast paths): refused there too.
  const blobGet = await raw(cache.url, [`GET /cas/sha256/${'c'.repeat(64)} HTTP/1.1`, `Authorization: Bearer ${origin.token}`, 'Authorization: Bearer nope']);
  t.equal(blobGet.status, 400, 'cache: a blob GET with two Authorization headers');
  const missing = await request(`${origin.url}/artifacts/r1/j/two.txt`, { headers: { authorization: `Bearer ${origin.token}` } });
  t.equal(missing.statusCode, 404, 'nothing stored');
  await missing.body.dump();
});

t.test('two Host headers: 400 (RFC 9112 §3.2), on the origin and the cache, blob GETs too', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  for (const url of [origin.url, cache.url]) {
    for (const target of ['/-/healthz', `/cas/sha256/${'c'.repeat(64)}`]) {
      const res = await raw(url, [`GET ${target} HTTP/1.1`, 'Host: elsewhere.example']);
      t.same([res.status, /more than one Host header/.test(res.body)], [400, true], `${url === origin.url ? 'origin' : 'cache'}: GET ${target}`);
    }
  }
});

t.test('a request Node\'s parser refuses is answered with a catalogued JSON error', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  for (const [server, url] of [['origin', origin.url], ['cache', cache.url]] as const) {
    const twoLengths = await raw(url, ['PUT /artifacts/r1/j/x.txt HTTP/1.1', 'Content-Length: 3'], 'abc');
    t.equal(twoLengths.status, 400, `${server}: two Content-Length`);
    t.match(JSON.parse(twoLengths.body), { code: 'FC_ERR_BAD_REQUEST', message: /malformed HTTP request/ });
    const huge = await raw(url, ['GET /-/healthz HTTP/1.1', `X-Big: ${'a'.repeat(20_000)}`]);
    t.equal(huge.status, 431, `${server}: a header over 16 KiB`);
    t.match(JSON.parse(huge.body), { code: 'FC_ERR_TOO_MANY_HEADERS' });
    for (const line of ['FOO /-/healthz HTTP/1.1', 'get /-/healthz HTTP/1.1']) {
      const unknown = await raw(url, [line]);
      t.same([unknown.status, JSON.parse(unknown.body).code], [501, 'FC_ERR_NOT_IMPLEMENTED'], `${server}: ${line}`);
    }
    for (const version of ['1.2', '3.0']) {
      const refused = await raw(url, [`GET /-/healthz HTTP/${version}`]);
      t.same([refused.status, JSON.parse(refused.body).code], [505, 'FC_ERR_HTTP_VERSION'], `${server}: HTTP/${version}`);
    }
    const preface = await exchange(url, () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    t.match(preface, /^HTTP\/1\.1 505 HTTP Version Not Supported\r\n[^]*"code":"FC_ERR_HTTP_VERSION"/, `${server}: HTTP/2's preface`);
  }
});

t.test('a method no path has is a 501 on every path, CONNECT too; HTTP/2.0 and 0.9, which Node\'s parser takes, a 505', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  for (const [server, url] of [['origin', origin.url], ['cache', cache.url]] as const) {
    for (const line of ['PROPFIND /-/healthz HTTP/1.1', 'PROPFIND /nothing HTTP/1.1', `MKCOL /cas/sha256/${'c'.repeat(64)} HTTP/1.1`, 'QUERY /-/healthz HTTP/1.1', 'CONNECT elsewhere.example:443 HTTP/1.1']) {
      const res = await raw(url, [line]);
      t.same([res.status, JSON.parse(res.body).code], [501, 'FC_ERR_NOT_IMPLEMENTED'], `${server}: ${line}`);
    }
    const lacking = await raw(url, ['DELETE /-/healthz HTTP/1.1']);
    t.same([lacking.status, JSON.parse(lacking.body).code], [405, 'FC_ERR_METHOD_NOT_ALLOWED'], `${server}: a method a path lacks stays a 405`);
    for (const target of ['/-/healthz', `/cas/sha256/${'c'.repeat(64)}`]) {
      for (const version of ['2.0', '0.9']) {
        const res = await raw(url, [`GET ${target} HTTP/${version}`]);
        t.same([res.status, JSON.parse(res.body).code], [505, 'FC_ERR_HTTP_VERSION'], `${server}: GET ${target} HTTP/${version}`);
      }
    }
  }
});
