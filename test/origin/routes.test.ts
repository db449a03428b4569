// Routing, auth, validation and path-escape refusals through app.inject().
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { buildOriginServer } from '../../src/origin/server.js';
import { TEST_TOKEN } from '../helpers/origin.js';
import { runManifest } from '../helpers/run-manifest.js';

const auth = { authorization: `Bearer ${TEST_TOKEN}` };
const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const sha512 = (s: string | Buffer) => createHash('sha512').update(s).digest('hex');

async function origin(t: Test, opts = {}) {
  const app = await buildOriginServer({ dataDir: t.testdir(), tokens: [TEST_TOKEN], logLevel: false, ...opts });
  t.teardown(() => app.close());
  return app;
}

t.test('writes need a token: 401 without, 403 wrong, 201 right', async (t) => {
  const app = await origin(t);
  const url = `/cas/sha256/${sha256('abc')}`;
  const none = await app.inject({ method: 'PUT', url, payload: 'abc' });
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="fleetcache"', 'a 401 says which scheme (RFC 9110 §11.6.1)');
  // another scheme (a URL's user:password, tooltool's Hawk) brings no bearer token: 401 and the challenge
  const basic = await app.inject({ method: 'PUT', url, payload: 'abc', headers: { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` } });
  t.same([basic.statusCode, basic.headers['www-authenticate'], basic.json().code], [401, 'Bearer realm="fleetcache"', 'FC_ERR_UNAUTHORIZED'], 'another scheme: 401, with the scheme to use');
  const wrong = await app.inject({ method: 'PUT', url, payload: 'abc', headers: { authorization: 'Bearer nope' } });
  t.equal(wrong.statusCode, 403);
  t.notOk(wrong.headers['www-authenticate']);
  t.equal(wrong.json().code, 'FC_ERR_FORBIDDEN');
  const ok = await app.inject({ method: 'PUT', url, payload: 'abc', headers: auth });
  t.equal(ok.statusCode, 201);
  t.same(ok.json(), { digest: `sha256:${sha256('abc')}`, size: 3 });
  t.equal((await app.inject({ method: 'PUT', url, payload: 'abc', headers: auth })).statusCode, 200, 'second put finds it');
});

t.test('digest mismatch names both digests and stores nothing', async (t) => {
  const app = await origin(t);
  const claimed = sha256('other');
  const res = await app.inject({ method: 'PUT', url: `/cas/sha256/${claimed}`, payload: 'actual', headers: auth });
  t.equal(res.statusCode, 400);
  t.equal(res.json().code, 'FC_ERR_DIGEST_MISMATCH');
  t.match(res.json().message, claimed);
  t.match(res.json().message, sha256('actual'));
  t.equal((await app.inject({ url: `/cas/sha256/${claimed}` })).statusCode, 404);
  t.equal((await app.inject({ url: `/cas/sha256/${sha256('actual')}` })).statusCode, 404);
});

t.test('malformed digests are 400', async (t) => {
  const app = await origin(t);
  for (const url of [`/cas/sha256/${'z'.repeat(64)}`, `/cas/sha256/${'a'.repeat(63)}`, `/cas/sha512/${'a'.repeat(64)}`, `/cas/md5/${'a'.repeat(32)}`]) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 400, url);
    t.equal(res.json().code, 'FC_ERR_BAD_DIGEST', url);
  }
});

t.test('tooltool alias: query ignored, no encoding, 404 for unknown', async (t) => {
  const app = await origin(t);
  const body = 'a tooltool asset';
  await app.inject({ method: 'PUT', url: `/cas/sha512/${sha512(body)}`, payload: body, headers: auth });
  const res = await app.inject({ url: `/sha512/${sha512(body)}?region=us-east-1`, headers: { 'accept-encoding': 'gzip' } });
  t.equal(res.statusCode, 200);
  t.equal(res.body, body);
  t.notOk(res.headers['content-encoding']);
  t.equal(res.headers.etag, `"sha512:${sha512(body)}"`);
  t.equal(res.headers['cache-control'], 'public, max-age=31536000, immutable');
  const missing = await app.inject({ url: `/sha512/${sha512('nothing')}` });
  t.equal(missing.statusCode, 404);
  t.equal(missing.json().code, 'FC_ERR_NOT_FOUND');
});

t.test('internal assets need a token to read (401 without, with the challenge)', async (t) => {
  const app = await origin(t);
  const body = 'internal toolchain';
  const url = `/sha512/${sha512(body)}`;
  await app.inject({ method: 'PUT', url: `/cas${url}`, payload: body, headers: { ...auth, 'x-fleetcache-visibility': 'internal' } });
  const anonymous = await app.inject({ url });
  t.same([anonymous.statusCode, anonymous.headers['www-authenticate']], [401, 'Bearer realm="fleetcache"']);
  const ok = await app.inject({ url, headers: auth });
  t.equal(ok.statusCode, 200);
  t.match(ok.headers['cache-control'], /^private/);
});

t.test('range, 304, HEAD', async (t) => {
  const app = await origin(t);
  const body = '0123456789abcdef';
  const url = `/cas/sha256/${sha256(body)}`;
  await app.inject({ method: 'PUT', url, payload: body, headers: auth });
  const head = await app.inject({ method: 'HEAD', url });
  t.equal(head.statusCode, 200);
  t.equal(head.headers['content-length'], '16');
  t.equal(head.body, '');
  const part = await app.inject({ url, headers: { range: 'bytes=4-7' } });
  t.equal(part.statusCode, 206);
  t.equal(part.body, '4567');
  t.equal(part.headers['content-range'], 'bytes 4-7/16');
  const suffix = await app.inject({ url, headers: { range: 'bytes=-3' } });
  t.equal(suffix.body, 'def');
  const open = await app.inject({ url, headers: { range: 'bytes=10-' } });
  t.equal(open.body, 'abcdef');
  t.equal((await app.inject({ url, headers: { range: 'bytes=16-20' } })).statusCode, 416);
  for (const range of ['bytes=4-7', 'bytes=16-20']) {
    const headRange = await app.inject({ method: 'HEAD', url, headers: { range } });
    t.equal(headRange.statusCode, 200, `HEAD ignores Range ${range} (RFC 9110 §14.2)`);
    t.equal(headRange.headers['content-length'], '16');
    t.notOk(headRange.headers['content-range']);
  }
  const nm = await app.inject({ url, headers: { 'if-none-match': `"sha256:${sha256(body)}"` } });
  t.equal(nm.statusCode, 304);
  t.equal(nm.body, '');
  t.same([nm.headers['content-type'], nm.headers.etag], [undefined, `"sha256:${sha256(body)}"`], 'a 304 carries its validator, no representation metadata (RFC 9110 §15.4.5)');
});

t.test('artifacts: PUT answers digest and size; GET and HEAD', async (t) => {
  const app = await origin(t);
  const url = '/artifacts/run-1/local:ubuntu-24.04:tests/smoke:v1/logs/out.txt';
  const put = await app.inject({ method: 'PUT', url, payload: 'log line\n', headers: auth });
  t.equal(put.statusCode, 201);
  t.same(put.json(), { digest: `sha256:${sha256('log line\n')}`, size: 9 });
  t.equal(put.headers.etag, `"sha256:${sha256('log line\n')}"`, 'the PUT answer names the new representation');
  const get = await app.inject({ url });
  t.equal(get.body, 'log line\n');
  t.equal(get.headers.etag, `"sha256:${sha256('log line\n')}"`);
  t.equal((await app.inject({ method: 'HEAD', url })).headers['content-length'], '9');
  t.equal((await app.inject({ url: '/artifacts/run-1/other/x' })).statusCode, 404);
});

t.test('project bases (newest first) and run manifests', async (t) => {
  const app = await origin(t);
  for (const id of ['b1', 'b2', 'b3']) {
    t.equal((await app.inject({ method: 'PUT', url: `/projects/demo/bases/${id}`, payload: `tar ${id}`, headers: auth })).statusCode, 201);
    await new Promise((r) => setTimeout(r, 5));
  }
  const list = await app.inject({ url: '/projects/demo/bases/' });
  t.same(list.json().bases.map((b: { id: string }) => b.id), ['b3', 'b2', 'b1']);
  t.equal((await app.inject({ url: '/projects/demo/bases/b2' })).body, 'tar b2');
  t.same((await app.inject({ url: '/projects/empty/bases/' })).json().bases, []);
  const manifest = runManifest('demo', 'r1', Buffer.from('tar b3'), { baseId: 'b3' }); // its base is b3's blob
  t.equal((await app.inject({ method: 'PUT', url: '/projects/demo/runs/r1', payload: manifest, headers: auth })).statusCode, 201);
  const got = await app.inject({ url: '/projects/demo/runs/r1' });
  t.same(got.json(), manifest);
  const again = await app.inject({ url: '/projects/demo/runs/r1', headers: { 'if-none-match': got.headers.etag as string } });
  t.equal(again.statusCode, 304);
  t.equal(again.headers['content-type'], undefined, 'no Content-Type on a 304 (a cache would keep it for the manifest)');
  const bad = await app.inject({ method: 'PUT', url: '/projects/demo/runs/r2', payload: '{not json', headers: { ...auth, 'content-type': 'application/json' } });
  t.equal(bad.statusCode, 400);
  t.equal(bad.json().code, 'FC_ERR_BAD_REQUEST');
});

t.test('bodies over the limit are 413', async (t) => {
  const app = await origin(t, { maxBlobSize: 1000, maxRecordSize: 100 });
  const big = Buffer.alloc(1001, 1);
  const res = await app.inject({ method: 'PUT', url: `/cas/sha256/${sha256(big)}`, payload: big, headers: auth });
  t.equal(res.statusCode, 413);
  t.equal(res.json().code, 'FC_ERR_TOO_LARGE');
  const rec = await app.inject({ method: 'PUT', url: '/projects/p/runs/r', payload: { pad: 'x'.repeat(200) }, headers: auth });
  t.equal(rec.statusCode, 413);
});

t.test('path escapes are refused with 400 and touch nothing outside the data directory', async (t) => {
  const app = await origin(t);
  const attempts = [
    '/artifacts/run/job/..%2F..%2Fetc%2Fpasswd',
    '/artifacts/run/job/%2E%2E/%2E%2E/x',
    '/artifacts/run/job/%2e%2e%2fx',
    '/artifacts/run/%2e%2e/x',
    '/artifacts/run/job/a%5C..%5C..%5Cx',
    '/artifacts/run/job/a%00b',
    '/artifacts/run/job/%2Fetc%2Fpasswd',
    '/artifacts/run/job//etc/passwd',
    '/artifacts/run/job/a%0Ab',
    '/artifacts/run/job/%',
    '/artifacts/run/job/%zz',
    `/artifacts/run/job/${'a'.repeat(300)}`,
    `/artifacts/run/job/${Array.from({ length: 400 }, () => 'abc').join('/')}`,
    '/projects/..%2F..%2Fetc/bases/x',
    '/projects/demo/bases/..%2Fx',
    '/projects/%2E%2E/runs/r',
    '/projects/demo/runs/a%5Cb',
    '/projects/demo/runs/%00',
  ];
  // Dot segments written literally ("/a/./b", "/../") are resolved by clients and by
  // app.inject before they are sent; streaming.test.ts sends them raw over a socket.
  t.ok(attempts.length >= 18);
  for (const url of attempts) {
    for (const method of ['GET', 'PUT'] as const) {
      const res = await app.inject({ method, url, payload: method === 'PUT' ? '{}' : undefined, headers: auth });
      t.ok([400, 404].includes(res.statusCode), `${method} ${url} → ${res.statusCode}`);
      if (res.statusCode === 400) t.match(res.json().code, /^FC_ERR_(BAD_NAME|BAD_REQUEST)$/);
    }
  }
  // "%252e%252e" decodes once to "%2e%2e", a harmless literal name; every other attempt is a 400.
  const literal = await app.inject({ method: 'PUT', url: '/artifacts/run/job/%252e%252e/x', payload: 'ok', headers: auth });
  t.equal(literal.statusCode, 201);
});

t.test('health, stats and metrics', async (t) => {
  const app = await origin(t);
  const put = await app.inject({ method: 'PUT', url: `/cas/sha256/${sha256('xyz')}`, payload: 'xyz', headers: auth });
  await app.inject({ url: `/cas/sha256/${sha256('xyz')}` });
  t.same((await app.inject({ url: '/-/healthz' })).json(), { status: 'ok', role: 'origin' });
  const stats = (await app.inject({ url: '/-/stats' })).json();
  t.equal(stats.kinds.cas.bytesIn, 3);
  const sent = 3 + put.rawPayload.length; // the blob, and the JSON answer to its upload
  t.equal(stats.kinds.cas.bytesOut, sent);
  const metrics = (await app.inject({ url: '/-/metrics' })).body;
  t.match(metrics, `fleetcache_bytes_out_total{kind="cas",role="origin"} ${sent}\n`);
  t.match(metrics, /fleetcache_requests_total\{kind="cas",method="PUT",status="201",role="origin"\} 1/);
});
