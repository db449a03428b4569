// The shared namespace through the cache: immutable headers and client 304s, 404 pass-
// through, names revalidated (304 → disk), stale names when upstream is down, PUT tee,
// private answers never kept, clear 502/504 within the timeout, metrics and stats.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { casId, httpId } from '../../src/cache/disk-store.js';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { headOnlyPut } from '../helpers/raw-http.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';
import { eventually } from '../helpers/wait.js';
import { blocksOf, startCache } from './harness.js';
import { startUpstream, UpstreamFixture } from './upstream-fixture.js';

async function get(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { method, headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

t.test('immutable objects: headers, client 304, HEAD, 404 passes through, never revalidated', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(100_000);
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const missing = await get(`${url}/cas/sha256/${'0'.repeat(64)}`);
  t.equal(missing.status, 404, 'unknown digest is a 404, not a 5xx');
  t.match(missing.body.toString(), /FC_ERR_NOT_FOUND/);
  const bad = await get(`${url}/cas/md5/abc`);
  t.equal(bad.status, 400);
  for (const path of ['/foo/bar', '/md5/abc']) {
    const other = await get(`${url}${path}`);
    t.same([other.status, /FC_ERR_NOT_FOUND/.test(other.body.toString())], [404, true], `${path}: not found, as at the origin (not a bad digest)`);
  }
  const first = await get(`${url}/cas/sha256/${hex}`);
  t.equal(first.status, 200);
  t.equal(first.headers['x-cache'], 'MISS');
  t.same(first.body, body);
  await app.cache.fills.drain(); // the answer ends before a large body's commit lands
  const head = await get(`${url}/cas/sha256/${hex}`, {}, 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.headers['content-length'], String(body.length));
  t.equal(head.headers['x-cache'], 'HIT');
  t.ok(Number(head.headers.age) >= 0, 'Age header');
  const cond = await get(`${url}/cas/sha256/${hex}`, { 'if-none-match': `"sha256:${hex}"` });
  t.equal(cond.status, 304);
  t.equal(cond.body.length, 0);
  const range = await get(`${url}/cas/sha256/${hex}`, { range: 'bytes=10-19' });
  t.equal(range.status, 206);
  t.same(range.body, body.subarray(10, 20));
  t.equal(up.count(`/cas/sha256/${hex}`), 1, 'immutable content is never revalidated');
});

t.test('names: revalidated each time, upstream 304 served from disk, stale when upstream is down', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const name = '/artifacts/run1/job1/log.txt';
  up.objects.set(name, { body: Buffer.from('version 1'), headers: { etag: '"v1"', 'content-type': 'text/plain' } });
  const { app, url } = await startCache(t, { upstream: upUrl, timeouts: { connect: '500ms', headers: '500ms' } }, t.testdir());
  const a = await get(url + name);
  t.equal(a.body.toString(), 'version 1');
  t.equal(a.headers['x-cache'], 'MISS');
  await app.cache.fills.drain();
  // Stored 100 s ago: validated by a 304 now, the answer's Age is the 304's (none: 0).
  const id = httpId(`GET ${name}`);
  const stored = (await app.cache.store.lookup(id))!;
  await app.cache.store.updateMeta(id, { ...stored.meta, storedAt: Date.now() - 100_000 });
  const b = await get(url + name);
  t.equal(b.headers['x-cache'], 'HIT');
  t.equal(b.body.toString(), 'version 1');
  t.equal(b.headers.age, '0', 'a copy validated just now is not old');
  const reval = up.requests.filter((r) => r.url === name);
  t.equal(reval.length, 2, 'the hit was revalidated');
  t.equal(reval[1]!.headers['if-none-match'], '"v1"', 'with the stored ETag');
  up.objects.set(name, { body: Buffer.from('version 2!'), headers: { etag: '"v2"' } });
  const c = await get(url + name);
  t.equal(c.body.toString(), 'version 2!', 'a changed name is refetched');
  await app.cache.fills.drain();
  await up.stop();
  const started = Date.now();
  const d = await get(url + name);
  t.equal(d.status, 200, 'upstream down: the stored copy is served');
  t.equal(d.body.toString(), 'version 2!');
  const miss = await get(`${url}/projects/p/bases/none`);
  t.equal(miss.status, 502, 'a miss with upstream down is a 502');
  t.match(JSON.parse(miss.body.toString()), { code: 'FC_ERR_UPSTREAM' });
  t.ok(Date.now() - started < 3000, 'quickly');
});

/**
 * A cache in front of an upstream that sends a 256 KiB name (ETag "v1") over about 2 s, and
 * the request that fills it (`leader`), once the fill has its answer and takes its body.
 */
async function slowNameFill(t: Test): Promise<{ up: UpstreamFixture; url: string; name: string; v1: Buffer; leader: ReturnType<typeof get> }> {
  const { up, upUrl } = await startUpstream(t);
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const name = '/artifacts/run1/job1/big.bin';
  const v1 = randomBytes(256 * 1024);
  up.objects.set(name, { body: v1, headers: { etag: '"v1"' } });
  up.options = { rate: 128 * 1024 };
  const leader = get(url + name);
  await eventually('the fill has its answer and is taking its body', () => up.sent(name) > 0);
  await sleep(20);
  return { up, url, name, v1, leader };
}

t.test('a name\'s fill in flight is joined as it is only by requests that came before its answer; a later one asks upstream first, and never gets a version older than one uploaded before it came', async (t) => {
  const { up, url, name, v1, leader } = await slowNameFill(t);
  const unchanged = get(url + name);
  await eventually('the later request asked upstream', () => up.count(name, 'HEAD') === 1);
  // Uploaded anew while the fill still runs: a request that comes now gets the new version.
  const v2 = Buffer.from('version 2');
  up.objects.set(name, { body: v2, headers: { etag: '"v2"' } });
  const changed = await get(url + name);
  t.equal(changed.body.toString(), 'version 2', 'the new version, not the fill\'s older one');
  t.not(changed.headers['x-cache'], 'COLLAPSED', 'not served by the fill');
  t.equal(up.sent(name) < v1.length, true, 'while the fill still ran');
  const joined = await unchanged;
  t.same([joined.headers['x-cache'], joined.body.equals(v1)], ['COLLAPSED', true], 'unchanged upstream when it asked: joined the fill');
  const heads = up.requests.filter((r) => r.url === name && r.method === 'HEAD');
  t.same(heads.map((r) => r.headers['if-none-match']), ['"v1"', '"v1"'], 'each later request asked first, with the fill\'s ETag');
  const first = await leader;
  t.same([first.headers['x-cache'], first.body.equals(v1)], ['MISS', true], 'the fill\'s own request has its answer');

  // A stampede: requests that come while the fill waits for upstream's answer join it, those
  // that came after it asked once they asked too (a HEAD each, as every request for a stored name).
  const other = '/artifacts/run1/job1/other.bin';
  up.objects.set(other, { body: Buffer.from('other'), headers: { etag: '"o1"' } });
  up.options = {};
  const release = up.hold(other);
  const asked = [get(url + other), get(url + other), get(url + other)];
  await eventually('the fill asked upstream', () => up.count(other) === 1);
  await sleep(50);
  release();
  const answers = await Promise.all(asked);
  t.same(answers.map((a) => a.body.toString()), ['other', 'other', 'other']);
  t.same(answers.map((a) => a.headers['x-cache']).sort(), ['COLLAPSED', 'COLLAPSED', 'MISS'], 'one fill');
  t.equal(up.count(other), 1, 'one request upstream for the body');
  t.ok(up.count(other, 'HEAD') <= 2, 'and a question at most for each of the others');
});

t.test('a request for a name that comes after an upload completed, while a fill that asked upstream before it waits for a late answer: never served that older answer', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const name = '/artifacts/run1/job1/late.bin';
  up.objects.set(name, { body: Buffer.from('version 1'), headers: { etag: '"v1"' } });
  // Upstream takes version 1 for the fill's request, and answers it only when the test says
  // (a slow origin, a stalled link); its HEADs answer from what it has then.
  let answer!: () => void;
  const late = new Promise<void>((resolve) => (answer = resolve));
  up.handler = (req, res) => {
    if (req.method !== 'GET' || req.url !== name) return false;
    void late.then(() => res.writeHead(200, { 'content-type': 'application/octet-stream', etag: '"v1"', 'content-length': '9' }).end('version 1'));
    return true;
  };
  const leader = get(url + name);
  await eventually('the fill asked upstream', () => up.count(name) === 1);
  await sleep(20);
  // Version 2 uploaded, completed; then a request comes, and the fill's answer after it.
  up.objects.set(name, { body: Buffer.from('version 2'), headers: { etag: '"v2"' } });
  up.handler = undefined;
  const later = get(url + name);
  await sleep(100);
  answer();
  const got = await later;
  t.equal(got.body.toString(), 'version 2', 'the version uploaded before it came, not the fill\'s older one');
  t.not(got.headers['x-cache'], 'COLLAPSED', 'not served by the fill');
  t.equal(up.count(name, 'HEAD'), 1, 'it asked upstream first, with the fill\'s ETag');
  t.equal((await leader).body.toString(), 'version 1', 'the fill\'s own request has its answer');
});

t.test('a later request joins a name\'s fill in flight and upstream fails its question: the fill\'s answer, said STALE, as a stored copy served then is', async (t) => {
  const { up, url, name, v1, leader } = await slowNameFill(t);
  // Upstream cuts every question (a HEAD) from now on, as a dying origin or a broken link would.
  up.handler = (req) => {
    if (req.method !== 'HEAD') return false;
    req.socket.destroy();
    return true;
  };
  const joined = await get(url + name);
  t.same([joined.status, joined.headers['x-cache'], joined.body.equals(v1)], [200, 'STALE', true], 'the fill\'s answer, said STALE: it may be older than an upload upstream could not tell of');
  t.ok(up.count(name, 'HEAD') >= 1, 'upstream was asked first');
  const first = await leader;
  t.same([first.headers['x-cache'], first.body.equals(v1)], ['MISS', true], 'the fill\'s own request has its answer');
});

t.test('only-if-cached (RFC 9111 §5.2.1.7): a stored blob, else a 504; a name (revalidated before it is served) a 504; never upstream', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex } = up.addBlob(4096);
  const name = '/artifacts/run1/job1/cached.txt';
  up.objects.set(name, { body: Buffer.from('a name'), headers: { etag: '"n1"' } });
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const onlyCached = { 'cache-control': 'only-if-cached' };
  const cold = await get(`${url}/cas/sha256/${hex}`, onlyCached);
  t.same([cold.status, JSON.parse(cold.body.toString()).code], [504, 'FC_ERR_UPSTREAM_TIMEOUT'], 'a blob not stored: 504');
  t.equal(up.count(`/cas/sha256/${hex}`), 0, 'upstream not asked');
  await get(`${url}/cas/sha256/${hex}`);
  await get(url + name);
  await app.cache.fills.drain();
  const asked = up.requests.length;
  const stored = await get(`${url}/cas/sha256/${hex}`, onlyCached);
  t.same([stored.status, stored.headers['x-cache']], [200, 'HIT'], 'a stored blob: served');
  t.equal((await get(url + name, onlyCached)).status, 504, 'a name: 504 (it would need upstream to revalidate)');
  t.equal(up.requests.length, asked, 'upstream not asked');
});

t.test('only-if-cached right after a full GET of a large blob: served (its commit may still be flushing), upstream asked once', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  // large enough to be streamed through a temp file, flushed to disk after its readers end
  const { hex } = up.addBlob(32 * 1024 * 1024);
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const blob = `${url}/cas/sha256/${hex}`;
  const full = await get(blob);
  t.equal(full.status, 200, 'the GET that fills it');
  const head = await get(blob, { 'cache-control': 'only-if-cached' }, 'HEAD');
  t.same([head.status, head.headers['content-length']], [200, String(32 * 1024 * 1024)], 'the HEAD right after it: 200, not 504');
  const again = await get(blob);
  t.equal(again.status, 200, 'a GET right after it');
  t.equal(up.count(`/cas/sha256/${hex}`), 1, 'upstream asked once');
});

t.test('a name is one entry however its path is spelled: a query or percent-encoding does not make another (fetched again over the slow link)', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const name = '/artifacts/run1/job%3A1/a.txt';
  up.objects.set(name, { body: Buffer.from('the artifact'), headers: { etag: '"v1"', 'cache-control': 'public, no-cache' } });
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  for (const spelling of [name, `${name}?bust=1`, `${name}?bust=2`, '/artifacts/run1/job%3a1/%61.txt', '/artifacts/run1/job:1/a.txt?x']) {
    const got = await get(url + spelling);
    t.same([got.status, got.body.toString()], [200, 'the artifact'], spelling);
    await app.cache.fills.drain();
  }
  t.same([...new Set(up.requests.map((r) => r.url))], [name], 'upstream is asked for the one spelling, without the query');
  t.equal(up.requests.filter((r) => r.headers['if-none-match'] === undefined).length, 1, 'and sends the body once: then revalidations');
  t.equal(app.cache.store.count, 1, 'one entry');
  // a segment that decodes to ".." is refused, never sent upstream decoded (a normalising proxy would resolve it)
  for (const dots of ['/artifacts/run1/%2E%2E/a.txt', '/artifacts/run1/job/%2e']) {
    // node's client sends the path as written (a URL parser would resolve the dots first)
    const got = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http.get(`${url}${dots}`.replace(/%2E%2E|%2e/, 'X'), { path: dots }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      }).on('error', reject);
    });
    t.same([got.status, (JSON.parse(got.body) as { code: string }).code], [400, 'FC_ERR_BAD_NAME'], dots);
  }
  t.notOk(up.requests.some((r) => r.url.includes('..') || /\/\.(\/|$)/.test(r.url)), 'nothing of the kind went upstream');
});

t.test('a name that becomes private or refused upstream is no longer kept: never served stale to others', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const { app, url } = await startCache(t, { upstream: upUrl, timeouts: { connect: '500ms', headers: '500ms' } }, t.testdir());
  const keep = async (name: string): Promise<void> => {
    up.objects.set(name, { body: Buffer.from(`bytes of ${name}`), headers: { etag: '"v1"', 'cache-control': 'public, no-cache' } });
    t.equal((await get(url + name)).status, 200);
    await app.cache.fills.drain();
    t.ok(app.cache.store.has(httpId(`GET ${name}`)), `${name} kept`);
  };
  // The origin now answers the name private (its blob became internal): a 304 to a client with a token.
  const privateName = '/artifacts/run1/job1/tool.bin';
  await keep(privateName);
  up.objects.set(privateName, { body: Buffer.from(`bytes of ${privateName}`), headers: { etag: '"v1"', 'cache-control': 'private, no-cache' } });
  const withToken = await get(url + privateName, { authorization: 'Bearer t' });
  t.equal(withToken.status, 200, 'served to the client upstream accepted');
  t.equal(withToken.body.toString(), `bytes of ${privateName}`);
  t.match(withToken.headers['cache-control'], /^private/);
  t.notOk(app.cache.store.has(httpId(`GET ${privateName}`)), 'no longer kept');
  // Refused without credentials.
  const refusedName = '/artifacts/run1/job1/other.bin';
  await keep(refusedName);
  up.handler = (req, res) => {
    if (req.url !== refusedName || req.headers.authorization) return false;
    // As the origin's errors: not the object, kept by no cache.
    res.writeHead(403, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end('{"code":"FC_ERR_FORBIDDEN"}');
    return true;
  };
  t.equal((await get(url + refusedName)).status, 403);
  await app.cache.fills.drain();
  t.notOk(app.cache.store.has(httpId(`GET ${refusedName}`)), 'a 403 drops the stored copy');
  await up.stop();
  for (const name of [privateName, refusedName]) {
    const stale = await get(url + name);
    t.equal(stale.status, 502, `${name}: upstream down, nothing stale served`);
  }
});

t.test('a hanging upstream gives a 504 within the configured timeout', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.options.hang = true;
  const { url } = await startCache(t, { upstream: upUrl, timeouts: { headers: '300ms' } }, t.testdir());
  const started = Date.now();
  const res = await get(`${url}/cas/sha256/${'a'.repeat(64)}`);
  t.equal(res.status, 504);
  t.match(JSON.parse(res.body.toString()), { code: 'FC_ERR_UPSTREAM_TIMEOUT' });
  t.equal(res.headers['cache-control'], 'no-store', 'an error is kept by no cache in front');
  t.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms`);
});

t.test('PUT is forwarded with its Authorization and kept once accepted; /cas verified', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const body = Buffer.alloc(300_000, 7);
  const hex = createHash('sha256').update(body).digest('hex');
  const put = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body, headers: { authorization: 'Bearer s3cret', 'content-type': 'application/octet-stream' } });
  await put.body.dump();
  t.equal(put.statusCode, 201);
  t.same(up.puts.get(`/cas/sha256/${hex}`), body, 'upstream got the bytes');
  t.equal(up.requests.at(-1)!.headers.authorization, 'Bearer s3cret');
  const back = await get(`${url}/cas/sha256/${hex}`);
  t.equal(back.headers['x-cache'], 'HIT', 'kept locally');
  t.same(back.body, body);
  // a body that does not match its path is forwarded (upstream judges) but never kept
  const wrong = '1'.repeat(64);
  const put2 = await request(`${url}/cas/sha256/${wrong}`, { method: 'PUT', body: 'nope', headers: { authorization: 'Bearer s3cret' } });
  await put2.body.dump();
  t.notOk(app.cache.store.has(`cas.v1/sha256/11/${wrong}`));
  const named = await request(`${url}/artifacts/r/j/out.bin`, { method: 'PUT', body: 'artifact', headers: { authorization: 'Bearer s3cret' } });
  await named.body.dump();
  t.equal(named.statusCode, 201);
  const nameBack = await get(`${url}/artifacts/r/j/out.bin`);
  t.equal(up.requests.at(-1)!.headers['if-none-match'], '"put-8"', 'revalidated with the ETag upstream gave the PUT');
  t.equal(nameBack.status, 404, 'the fixture has no GET for it: upstream decides');
  // Kept only when upstream's answer lets a shared cache keep a GET of it.
  for (const cc of ['private, max-age=31536000, immutable', undefined]) {
    up.putCacheControl = cc;
    const other = Buffer.alloc(1000, cc === undefined ? 1 : 2);
    const otherHex = createHash('sha256').update(other).digest('hex');
    const res = await request(`${url}/cas/sha256/${otherHex}`, { method: 'PUT', body: other, headers: { authorization: 'Bearer s3cret' } });
    await res.body.dump();
    t.equal(res.statusCode, 201);
    t.notOk(app.cache.store.has(`cas.v1/sha256/${otherHex.slice(0, 2)}/${otherHex}`), `not kept when upstream answers Cache-Control ${cc ?? '(none)'}`);
  }
});

t.test('a PUT that sends its head only holds no connection to upstream: a few hundred, with any token, held every one, and every miss waited', async (t) => {
  // The origin waits long for a head: the cache's client sends a PUT's only with its body's first bytes.
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: path.join(dir, 'origin'), clientHeaderTimeoutMs: 60_000 });
  const hex = await uploadBlob(origin.url, randomBytes(1024));
  const { url } = await startCache(t, { upstream: origin.url, upstreamConnections: 1 }, path.join(dir, 'cache'));
  const body = Buffer.from('withheld');
  const withheld = await headOnlyPut(url, '/artifacts/run/job/withheld', 'not-a-token', body.length);
  t.teardown(() => void withheld.socket.destroy());
  const res = await request(`${url}/cas/sha256/${hex}`, { signal: AbortSignal.timeout(5000) });
  t.equal(res.statusCode, 200, 'a miss meanwhile answered, not held behind the PUT');
  t.equal(createHash('sha256').update(Buffer.from(await res.body.arrayBuffer())).digest('hex'), hex, 'whole');
  withheld.socket.write(body);
  await eventually('the PUT answered once its body came', () => /^HTTP\/1\.1 100 [^]*HTTP\/1\.1 403 /.test(withheld.answer()), 5000);
});

t.test('a PUT whose body does not start within clientHeaderTimeout is answered 408 and closed, not held until the idle limit', async (t) => {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: path.join(dir, 'origin') });
  const { url } = await startCache(t, { upstream: origin.url, clientHeaderTimeout: '1s' }, path.join(dir, 'cache'));
  const sentAt = Date.now();
  const withheld = await headOnlyPut(url, '/artifacts/run/job/withheld', 'not-a-token', 100);
  t.teardown(() => void withheld.socket.destroy());
  let closedAt = 0;
  withheld.socket.on('close', () => (closedAt = Date.now()));
  // the idle limit is minutes (twice the upstream's timeouts): the head limit, then a linger of a second
  await eventually('the connection closed', () => closedAt > 0, 6000);
  const answer = withheld.answer();
  t.match(answer, /^HTTP\/1\.1 100 [^]*HTTP\/1\.1 408 /, '408 after the 100');
  t.match(answer, /\r\nconnection: close\r\n/i, 'announced closing');
  t.match(answer, /"code":"FC_ERR_REQUEST_TIMEOUT"/, 'the usual JSON error');
  t.ok(closedAt - sentAt >= 1000, `not before the limit (${closedAt - sentAt} ms)`);
});

t.test('a PUT whose client goes, before its body starts or midway, is answered as aborted, not as an upstream failure', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const errors = async (): Promise<string[]> => (await (await request(`${url}/-/metrics`)).body.text()).split('\n').filter((l) => l.startsWith('fleetcache_cache_errors_total{'));
  const counted = async (code: string): Promise<number> => Number((await errors()).find((l) => l.includes(`code="${code}"`))?.split(' ')[1] ?? 0);
  // a push cut (Ctrl-C) before its body's first bytes
  const before = await headOnlyPut(url, '/artifacts/run/job/before', 'a-token', 100);
  before.socket.destroy();
  await eventually('the first PUT counted', async () => (await counted('FC_ERR_ABORTED')) + (await counted('FC_ERR_UPSTREAM')) >= 1, 5000);
  // and one cut midway, while upstream reads its body
  const midway = await headOnlyPut(url, '/artifacts/run/job/midway', 'a-token', 100);
  midway.socket.write(Buffer.alloc(10));
  await eventually('upstream asked for the second', () => up.count('/artifacts/run/job/midway', 'PUT') === 1, 5000);
  midway.socket.destroy();
  await eventually('the second PUT counted', async () => (await counted('FC_ERR_ABORTED')) + (await counted('FC_ERR_UPSTREAM')) >= 2, 5000);
  t.equal(await counted('FC_ERR_ABORTED'), 2, `each counted as its client's abort (400): ${(await errors()).join('; ')}`);
  t.equal(await counted('FC_ERR_UPSTREAM'), 0, 'neither as a failure of upstream (502)');
});

t.test('a PUT whose client goes before its body starts is answered as aborted without asking upstream', async (t) => {
  // upstream counts what reaches it: a request, or only a connection (undici connects before it finds the body destroyed)
  let connections = 0;
  let requests = 0;
  const upstream = http.createServer((_req, res) => {
    requests++;
    res.end();
  }).on('connection', () => connections++);
  const { url } = await startCache(t, { upstream: await serveOnLoopback(t, upstream) }, t.testdir());
  const errors = async (): Promise<string[]> => (await (await request(`${url}/-/metrics`)).body.text()).split('\n').filter((l) => l.startsWith('fleetcache_cache_errors_total{'));
  const put = await headOnlyPut(url, '/artifacts/run/job/gone', 'a-token', 100);
  put.socket.destroy();
  await eventually('the PUT counted', async () => (await errors()).some((l) => l.includes('FC_ERR_ABORTED')), 5000);
  t.same({ connections, requests }, { connections: 0, requests: 0 }, 'upstream never asked');
  t.match((await errors()).find((l) => l.includes('FC_ERR_ABORTED')), / 1$/, 'counted once, as its client\'s abort');
});

t.test('a PUT whose upstream dies midway, its client still sending, is upstream\'s failure, not an abort', async (t) => {
  // upstream takes the head and the body's first bytes, then cuts the connection
  const upUrl = await serveOnLoopback(t, http.createServer((req) => req.once('data', () => req.socket.destroy())));
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const body = Readable.from((async function* () {
    yield Buffer.alloc(1024);
    await sleep(300); // the client still sending when upstream is gone
    yield Buffer.alloc(1024);
  })());
  await request(`${url}/artifacts/r/j/cut.txt`, { method: 'PUT', body, headers: { authorization: 'Bearer t', 'content-length': '2048' } }).then((res) => res.body.dump(), () => undefined);
  const metrics = await (await request(`${url}/-/metrics`)).body.text();
  t.match(metrics, /^fleetcache_cache_errors_total\{code="FC_ERR_UPSTREAM",status="502"[^}]*\} 1$/m, 'counted as upstream\'s failure');
  t.notMatch(metrics, /code="FC_ERR_ABORTED"/, 'not as its client\'s abort');
});

t.test('a PUT of a blob a GET is filling leaves it to the fill: a failing fill takes nothing the index still counts', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.putCacheControl = 'public, max-age=31536000, immutable'; // a PUT's body may be kept
  const { hex, body } = up.addBlob(2 * 1024 * 1024);
  up.options = { rate: 2 * 1024 * 1024, dieAfter: 1024 * 1024 }; // the fill fails half way, after the PUT
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const filling = get(`${url}/cas/sha256/${hex}`);
  void filling.catch(() => undefined);
  await eventually('the fill started', () => up.count(`/cas/sha256/${hex}`) === 1);
  const put = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body, headers: { authorization: 'Bearer s3cret' } });
  await put.body.dump();
  t.equal(put.statusCode, 201, 'forwarded and accepted');
  await t.rejects(filling, 'the fill is cut');
  await app.cache.fills.drain();
  up.options = {};
  const file = path.join(app.cache.store.dir, casId({ algo: 'sha256', hex }));
  t.equal(app.cache.store.count, existsSync(file) ? 1 : 0, 'the index counts what is on disk');
  const again = await get(`${url}/cas/sha256/${hex}`);
  t.same(again.body, body, 'and the next GET gets it whole');
});

t.test('private answers are proxied, never kept nor shared', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(5000, { 'cache-control': 'private' });
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const a = await get(`${url}/cas/sha256/${hex}`, { authorization: 'Bearer internal' });
  t.same(a.body, body);
  t.equal(up.requests[0]!.headers.authorization, 'Bearer internal', 'Authorization passed upstream');
  await app.cache.fills.drain();
  t.notOk(app.cache.store.has(`cas.v1/sha256/${hex.slice(0, 2)}/${hex}`), 'not kept');
  await get(`${url}/cas/sha256/${hex}`);
  t.equal(up.requests.length, 2, 'the next request went upstream again');
  t.equal(up.requests[1]!.headers.authorization, undefined);
});

t.test('metrics and stats', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex } = up.addBlob(10_000);
  const dir = t.testdir();
  const { app, url } = await startCache(t, { upstream: upUrl }, dir);
  await get(`${url}/cas/sha256/${hex}`);
  await app.cache.fills.drain();
  await get(`${url}/sha256/${hex}`);
  await get(`${url}/sha256/${hex}`);
  const stats = JSON.parse((await get(`${url}/-/stats`)).body.toString());
  t.match(stats.kinds.cas, { hits: 0, misses: 1, bytesServed: 10_000, bytesUpstream: 10_000 });
  t.match(stats.kinds.tooltool, { hits: 2, bytesServed: 20_000, bytesUpstream: 0 });
  t.equal(stats.total.savingsRatio.toFixed(3), (1 - 10_000 / 30_000).toFixed(3));
  const metrics = (await get(`${url}/-/metrics`)).body.toString();
  t.match(metrics, /fleetcache_cache_hits_total\{kind="tooltool",role="cache",region="[^"]+"\} 2/);
  t.match(metrics, new RegExp(`fleetcache_cache_lru_bytes\\{role="cache",region="[^"]+"\\} ${blocksOf(dir, 10_000)}\n`), 'the blob, in the whole blocks it takes');
  t.equal((await get(`${url}/-/healthz`)).status, 200);
  // an upload through the cache: the region's bytes to the origin, counted once upstream took them
  const upload = Buffer.alloc(70_000, 7);
  const anonymous = await request(`${url}/artifacts/r/j/up.bin`, { method: 'PUT', body: upload });
  t.same([anonymous.statusCode, anonymous.headers['www-authenticate']], [401, 'Bearer realm="fleetcache"'], 'a write with no token is refused by the cache itself (no token configured)');
  await anonymous.body.dump();
  t.equal((await request(`${url}/artifacts/r/j/up.bin`, { method: 'PUT', body: upload, headers: { authorization: 'Bearer s3cret' } })).statusCode, 201);
  const after = JSON.parse((await get(`${url}/-/stats`)).body.toString());
  t.match(after.kinds.artifacts, { bytesUploaded: 70_000, bytesServed: 0 });
  t.match((await get(`${url}/-/metrics`)).body.toString(), /fleetcache_cache_bytes_uploaded_total\{kind="artifacts",role="cache",region="[^"]+"\} 70000/);
});

t.test('a passthrough whose client goes away mid-body still counts what came from upstream', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.options = { rate: 4 * 1024 * 1024 };
  const { hex } = up.addBlob(8 * 1024 * 1024);
  const { url } = await startCache(t, { upstream: upUrl, maxSize: 1024 * 1024 }, t.testdir()); // no room: passed through
  const res = await request(`${url}/cas/sha256/${hex}`);
  for await (const chunk of res.body) if ((chunk as Buffer).length > 0) break; // some bytes, then gone
  res.body.destroy();
  const upstreamBytes = async () => (JSON.parse((await get(`${url}/-/stats`)).body.toString()) as { kinds: { cas?: { bytesUpstream: number } } }).kinds.cas?.bytesUpstream ?? 0;
  await eventually('upstream bytes counted', async () => (await upstreamBytes()) > 0, 5000);
});

t.test('a PUT that upstream cannot take (down, marked down) is a 502, not a storage failure', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  await up.stop();
  // enough refused connections to mark upstream down: then a request fails before reading its body
  for (let i = 0; i < 6; i++) t.equal((await get(`${url}/cas/sha256/${String(i).repeat(64)}`)).status, 502);
  for (let i = 0; i < 3; i++) {
    const res = await request(`${url}/artifacts/r/j/log-${i}.txt`, { method: 'PUT', body: Buffer.alloc(200_000, i), headers: { authorization: 'Bearer t' } });
    await res.body.dump();
    t.equal(res.statusCode, 502, `PUT ${i}: upstream down`);
  }
  t.equal(app.cache.store.failures, 0, 'no storage failure counted');
  t.notOk(app.cache.store.isFull(), 'the disk is not taken for refusing writes');
});
