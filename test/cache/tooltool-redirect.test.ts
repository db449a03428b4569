// A cache in front of a tooltool server, which answers every download with a 302 to a
// pre-signed storage URL that changes on each request (tooltool.md §4-5): the cache
// follows the redirect itself, checks the digest and keeps the blob under its digest,
// never the 302; the storage host never sees a client's credentials; a blob asked with
// credentials is served to that client but not kept (the redirect hides its visibility).
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { request } from 'undici';
import { startCache } from './harness.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

interface Seen {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly method?: string;
}

function listen(t: Test, handler: Parameters<typeof createServer>[1]): Promise<string> {
  return serveOnLoopback(t, createServer(handler));
}

/** A storage host serving `blobs` by their sha512 under /s3/sha512/<hex>?X-Amz-Signature=…, and a tooltool server redirecting to it. */
async function tooltoolPair(t: Test, blobs: Map<string, Buffer>, internal: Set<string> = new Set()) {
  const storageSeen: Seen[] = [];
  const tooltoolSeen: Seen[] = [];
  const storage = await listen(t, (req, res) => {
    storageSeen.push({ path: req.url!, headers: req.headers, method: req.method! });
    // a URL pre-signed for a GET: its signature matches no other method (as S3's)
    if (req.method !== 'GET') return void res.writeHead(403).end('signature does not match');
    const hex = /^\/s3\/sha512\/([0-9a-f]+)\?X-Amz-Signature=/.exec(req.url!)?.[1];
    const body = hex ? blobs.get(hex) : undefined;
    if (!body) return void res.writeHead(403).end('signature does not match');
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (range) {
      const [start, end] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)];
      return void res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': end - start + 1 }).end(body.subarray(start, end + 1));
    }
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'binary/octet-stream', etag: '"s3-etag"' }).end(body);
  });
  const tooltool = await listen(t, (req, res) => {
    tooltoolSeen.push({ path: req.url!, headers: req.headers });
    const hex = /^\/sha512\/([0-9a-f]{128})(?:\?|$)/.exec(req.url!)?.[1];
    if (!hex || !blobs.has(hex)) return void res.writeHead(404).end('{"error":{"name":"Not Found"}}');
    if (internal.has(hex) && req.headers.authorization !== 'Bearer secret') return void res.writeHead(403).end('{"error":{"name":"Forbidden"}}');
    res.writeHead(302, { location: `${storage}/s3/sha512/${hex}?X-Amz-Signature=${randomBytes(8).toString('hex')}` }).end();
  });
  return { storage, tooltool, storageSeen, tooltoolSeen };
}

function blob(size: number): { hex: string; body: Buffer } {
  const body = randomBytes(size);
  return { hex: createHash('sha512').update(body).digest('hex'), body };
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; xcache: string; body: Buffer; headers: IncomingHttpHeaders }> {
  const res = await request(url, { headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, xcache: String(res.headers['x-cache']), body, headers: res.headers as IncomingHttpHeaders };
}

t.test('a tooltool upstream: the 302 is followed, the blob kept under its digest and served as a hit', async (t) => {
  const small = blob(4096);
  const large = blob(300_000);
  const pair = await tooltoolPair(t, new Map([[small.hex, small.body], [large.hex, large.body]]));
  const { app, url } = await startCache(t, { upstream: pair.tooltool }, t.testdir());
  for (const b of [small, large]) {
    const first = await get(`${url}/sha512/${b.hex}?region=us-east-1`, { authorization: 'Bearer secret' });
    t.equal(first.status, 200, `${b.body.length} bytes: 200, not the 302`);
    t.ok(first.body.equals(b.body), 'the blob itself');
    t.match(first.headers['cache-control'], /private/, 'asked with credentials: private to this client');
    await app.cache.fills.drain();
    const anonymous = await get(`${url}/sha512/${b.hex}`);
    t.equal(anonymous.xcache, 'MISS', 'a blob asked with credentials was not kept (the redirect hides its visibility)');
    t.ok(anonymous.body.equals(b.body));
    await app.cache.fills.drain();
    const again = await get(`${url}/cas/sha512/${b.hex}`);
    t.equal(again.xcache, 'HIT', 'asked anonymously, it was kept: a hit under /cas too');
    t.ok(again.body.equals(b.body));
  }
  t.equal(pair.storageSeen.length, 4, 'storage asked once per fill');
  t.ok(pair.storageSeen.every((s) => s.headers.authorization === undefined), 'the storage host never saw a credential');
  t.equal(pair.tooltoolSeen.filter((s) => s.headers.authorization === 'Bearer secret').length, 2, 'tooltool saw the client\'s');
});

t.test('a mirror marked tooltool: digest paths are blobs (verified, shared with /cas), other paths keep HTTP caching', async (t) => {
  const b = blob(20_000);
  const bad = blob(5000);
  const blobs = new Map([[b.hex, b.body], [bad.hex, Buffer.from(bad.body).fill(0, 0, 10)]]);
  const pair = await tooltoolPair(t, blobs);
  const { app, url } = await startCache(t, { upstream: 'http://127.0.0.1:1', mirrors: { tt: { url: `${pair.tooltool}/`, tooltool: true } } }, t.testdir());
  const first = await get(`${url}/mirror/tt/sha512/${b.hex}`);
  t.equal(first.status, 200);
  t.equal(first.xcache, 'MISS');
  t.ok(first.body.equals(b.body));
  await app.cache.fills.drain();
  t.equal((await get(`${url}/mirror/tt/sha512/${b.hex}`)).xcache, 'HIT', 'kept');
  t.equal((await get(`${url}/sha512/${b.hex}`)).xcache, 'HIT', 'under its digest: the tooltool alias finds it');
  t.equal(pair.storageSeen.length, 1, 'one download from storage');

  // Storage answers other bytes than the digest names: refused, nothing kept.
  const refused = await get(`${url}/mirror/tt/sha512/${bad.hex}`);
  t.equal(refused.status, 502, 'a (small, gathered) body that fails its digest is refused');
  t.match(refused.body.toString(), /digest/i);
  await app.cache.fills.drain();
  t.notOk(app.cache.store.has(`cas.v1/sha512/${bad.hex.slice(0, 2)}/${bad.hex}`), 'and is not kept');

  const missing = await get(`${url}/mirror/tt/sha512/${'0'.repeat(128)}`);
  t.equal(missing.status, 404, 'tooltool\'s 404 is passed on');
  const other = await get(`${url}/mirror/tt/tooltool.py`);
  t.equal(other.status, 404, 'other paths: the mirror as before');
});

t.test('redirects are bounded', async (t) => {
  const dirs = t.testdir({ loop: {}, ftp: {} });
  const loop = await listen(t, (req, res) => void res.writeHead(302, { location: req.url! }).end());
  const { url } = await startCache(t, { upstream: loop }, join(dirs, 'loop'));
  const res = await get(`${url}/sha512/${'a'.repeat(128)}`);
  t.equal(res.status, 502, 'a redirect loop ends in a 502');
  t.match(res.body.toString(), /more than 5 redirects/);
  const ftp = await listen(t, (_req, res) => void res.writeHead(302, { location: 'ftp://files.example/signed?X-Amz-Signature=s3cret' }).end());
  const other = await startCache(t, { upstream: ftp }, join(dirs, 'ftp'));
  const refused = await get(`${other.url}/sha512/${'b'.repeat(128)}?token=s3cret-query`);
  t.equal(refused.status, 502, 'a redirect to another scheme is a 502');
  t.match(refused.body.toString(), /redirect to a ftp: URL/);
  t.notMatch(refused.body.toString(), /s3cret/, 'naming neither the query nor the signed location');
});

t.test('an upstream that streams a blob asked with credentials: kept only when it says public (RFC 9111 §3.5)', async (t) => {
  const secret = blob(3000);
  const open = blob(3000);
  const server = await listen(t, (req, res) => {
    const hex = /^\/sha512\/([0-9a-f]{128})$/.exec(req.url!)?.[1];
    if (hex === secret.hex) {
      if (req.headers.authorization !== 'Bearer tt-secret') return void res.writeHead(403).end('forbidden');
      return void res.writeHead(200, { 'content-length': secret.body.length }).end(secret.body); // no Cache-Control at all
    }
    if (hex === open.hex) return void res.writeHead(200, { 'content-length': open.body.length, 'cache-control': 'public, max-age=60' }).end(open.body);
    res.writeHead(404).end();
  });
  const { app, url } = await startCache(t, { upstream: 'http://127.0.0.1:1', mirrors: { tt: { url: server, tooltool: true } } }, t.testdir());
  const auth = { authorization: 'Bearer tt-secret' };
  const first = await get(`${url}/mirror/tt/sha512/${secret.hex}`, auth);
  t.equal(first.status, 200);
  t.match(first.headers['cache-control'], /^private$/, 'served to its client as private');
  await app.cache.fills.drain();
  const anonymous = await get(`${url}/sha512/${secret.hex}`);
  t.equal(anonymous.status, 502, 'not kept: an anonymous request goes upstream (here: the origin, down), never gets the bytes');
  t.notOk(anonymous.body.equals(secret.body));
  t.equal((await get(`${url}/mirror/tt/sha512/${secret.hex}`)).status, 403, 'nor through the mirror');

  t.equal((await get(`${url}/mirror/tt/sha512/${open.hex}`, auth)).xcache, 'MISS');
  await app.cache.fills.drain();
  t.equal((await get(`${url}/mirror/tt/sha512/${open.hex}`)).xcache, 'HIT', 'an answer upstream marks public is kept, credentials or not');
});

t.test('a range of a blob passed through (larger than the cache): the redirect is followed with the range, never handed to the client', async (t) => {
  const big = blob(3 * 1024 * 1024);
  const pair = await tooltoolPair(t, new Map([[big.hex, big.body]]));
  const { url } = await startCache(t, { upstream: pair.tooltool, maxSize: '1MiB' }, t.testdir());
  const part = await get(`${url}/sha512/${big.hex}`, { range: 'bytes=100-199' });
  t.same([part.status, part.headers['content-range'], part.headers.location], [206, `bytes 100-199/${big.body.length}`, undefined], 'a 206, not the 302 with its signed URL');
  t.ok(part.body.equals(big.body.subarray(100, 200)), 'its bytes');
  t.equal(pair.storageSeen.at(-1)?.headers.range, 'bytes=100-199', 'the storage host was asked for the range');
  t.ok(pair.storageSeen.every((s) => s.headers.authorization === undefined), 'and never saw a credential');
});

t.test('HEAD of a blob behind a tooltool server: the fields its GET has (200, size, digest), never the 302', async (t) => {
  const blobs = new Map<string, Buffer>();
  const make = (size: number): string => {
    const b = blob(size);
    blobs.set(b.hex, b.body);
    return b.hex;
  };
  const pair = await tooltoolPair(t, blobs);
  const { url } = await startCache(t, { upstream: pair.tooltool, mirrors: { tt: { url: pair.tooltool, tooltool: true } } }, t.testdir());
  const fieldsOf = async (path: string, method: 'GET' | 'HEAD', headers: Record<string, string>): Promise<Record<string, unknown>> => {
    const res = await request(`${url}${path}`, { method, headers });
    await res.body.dump();
    return { status: res.statusCode, ...Object.fromEntries(['content-length', 'content-type', 'etag', 'cache-control', 'accept-ranges', 'location'].map((f) => [f, res.headers[f]])) };
  };
  for (const size of [4096, 300_000]) {
    for (const route of ['/sha512/', '/mirror/tt/sha512/']) {
      for (const headers of [{}, { authorization: 'Bearer secret' }] as Record<string, string>[]) {
        const path = `${route}${make(size)}`; // a blob of its own: the HEAD is a miss
        const head = await fieldsOf(path, 'HEAD', headers);
        const get = await fieldsOf(path, 'GET', headers);
        t.same(head, get, `HEAD ${path.slice(0, 24)}… (${size} bytes${headers.authorization ? ', credentials' : ''}): the GET's fields`);
        t.equal(head['content-length'], String(size), 'its size');
      }
    }
  }
  t.same([...new Set(pair.storageSeen.map((s) => s.method))], ['GET'], 'the storage host was asked with GETs only (its URLs are signed for them)');
  t.ok(pair.storageSeen.every((s) => s.headers.authorization === undefined), 'and never saw a credential');
});

t.test('a redirect target that answers other than with the blob: the cache\'s own 502 naming its status, never its body or fields', async (t) => {
  const hex = 'c'.repeat(128);
  const internal = await listen(t, (req, res) => {
    const status = Number(/^\/status\/(\d+)/.exec(req.url!)?.[1]);
    res.writeHead(status, status < 400 ? { 'x-internal': 'instance-role' } : { 'x-internal': 'instance-role', 'content-type': 'text/plain' }).end('internal-secret-credentials');
  });
  for (const status of [403, 404, 500, 304, 302]) {
    const upstream = await listen(t, (_req, res) => void res.writeHead(302, { location: `${internal}/status/${status}` }).end());
    const { url } = await startCache(t, { upstream }, t.testdir());
    for (const [what, headers] of [['a fill', {}], ['a range passed through', { range: 'bytes=0-9' }]] as const) {
      const res = await get(`${url}/sha512/${hex}`, headers);
      t.equal(res.status, 502, `${status}, ${what}: a 502`);
      const body = res.body.toString();
      t.match(JSON.parse(body), { code: 'FC_ERR_UPSTREAM', message: new RegExp(`redirected to answered HTTP ${status}\\b`) }, `${status}, ${what}: the cache's own error naming the status`);
      t.notMatch(body, /internal-secret/, `${status}, ${what}: not the target's body`);
      t.equal(res.headers['x-internal'], undefined, `${status}, ${what}: nor its fields`);
    }
    const head = await request(`${url}/sha512/${hex}`, { method: 'HEAD' });
    await head.body.dump();
    t.equal(head.statusCode, 502, `${status}, HEAD: a 502`);
    t.equal(head.headers['x-internal'], undefined, `${status}, HEAD: not the target's fields`);
  }
});

t.test('privateRedirects: refuse: a redirect to a loopback, private, link-local or reserved address (Teredo\'s embedded ones too) is the cache\'s 502, the target never asked; by default a loopback upstream\'s are followed', async (t) => {
  const big = blob(3 * 1024 * 1024);
  const dirs = t.testdir({ refuse: {}, auto: {} });
  const pair = await tooltoolPair(t, new Map([[big.hex, big.body]]));
  const storagePort = new URL(pair.storage).port;
  let to = '';
  const redirecting = await listen(t, (_req, res) => void res.writeHead(302, { location: `http://${to}/s3/sha512/${big.hex}?X-Amz-Signature=s3cret` }).end());
  // the storage answers on all of these it can be reached at; the others are refused before any connection
  const refused = [
    [`127.0.0.1:${storagePort}`, 'loopback'], [`localhost:${storagePort}`, 'loopback'], [`[::ffff:127.0.0.1]:${storagePort}`, 'loopback'],
    ['169.254.169.254', 'link-local'], ['[fe80::1]', 'link-local'], [`[64:ff9b::7f00:1]:${storagePort}`, 'loopback'], ['[2002:a9fe:a9fe::]', 'link-local'], ['10.1.2.3', 'private'], ['192.168.0.1', 'private'], ['[fd00::1]', 'private'], ['0.0.0.0', 'unspecified'],
    // Teredo, embedding a private server address or a loopback client one (inverted in the last 32 bits); the rest of 2001::/23
    ['[2001:0:a00:1::1]', 'private'], [`[2001:0:808:808:8000:63bf:80ff:fffe]:${storagePort}`, 'loopback'], ['[2001:2::1]', 'reserved'],
  ] as const;
  const cache = await startCache(t, { upstream: redirecting, maxSize: '1MiB', privateRedirects: 'refuse' }, join(dirs, 'refuse'));
  for (const [target, kind] of refused) {
    to = target;
    for (const [what, headers] of [['a fill', {}], ['a range passed through', { range: 'bytes=0-9' }]] as const) {
      // a blob larger than the cache keeps: the range is passed through (its fill too, as the first request fails)
      const res = await get(`${cache.url}/sha512/${big.hex}`, headers);
      t.equal(res.status, 502, `${to}, ${what}: a 502`);
      t.match(JSON.parse(res.body.toString()), { code: 'FC_ERR_UPSTREAM', message: new RegExp(`a redirect to a ${kind} address, refused`) }, `${to}, ${what}: naming why`);
      t.notMatch(res.body.toString(), /s3cret|127\.0\.0\.1|169\.254/, `${to}, ${what}: neither the signed URL nor the address`);
    }
    const head = await request(`${cache.url}/sha512/${big.hex}`, { method: 'HEAD' });
    await head.body.dump();
    t.equal(head.statusCode, 502, `${to}, HEAD: a 502`);
  }
  t.equal(pair.storageSeen.length, 0, 'the target was never asked');

  const byDefault = await startCache(t, { upstream: redirecting, maxSize: '1MiB' }, join(dirs, 'auto'));
  to = `127.0.0.1:${storagePort}`;
  const part = await get(`${byDefault.url}/sha512/${big.hex}`, { range: 'bytes=100-199' });
  t.same([part.status, part.body.equals(big.body.subarray(100, 200))], [206, true], 'by default (auto), an upstream on loopback may redirect to loopback');
});

t.test('a redirect target\'s 416 to a range passed through: the cache\'s own 416 with the size, never the target\'s body or fields', async (t) => {
  const big = blob(3 * 1024 * 1024);
  const target = await listen(t, (req, res) => {
    // the whole blob (the fill, which finds it larger than the cache), a 416 for any range (past its end here)
    if (req.headers.range === undefined) return void res.writeHead(200, { 'content-length': big.body.length }).end(big.body);
    res.writeHead(416, { 'content-range': `bytes */${big.body.length}`, 'x-internal': 'instance-role', 'content-type': 'text/plain' }).end('internal-secret-credentials');
  });
  const upstream = await listen(t, (_req, res) => void res.writeHead(302, { location: `${target}/s3/sha512/${big.hex}?X-Amz-Signature=s3cret` }).end());
  const { url } = await startCache(t, { upstream, maxSize: '1MiB' }, t.testdir());
  const past = `bytes=${big.body.length}-`;
  const res = await get(`${url}/sha512/${big.hex}`, { range: past });
  t.equal(res.status, 416, 'a 416');
  t.equal(res.headers['content-range'], `bytes */${big.body.length}`, 'saying the size, so that the client can ask again');
  t.same(JSON.parse(res.body.toString()), { code: 'FC_ERR_RANGE', message: `range ${past} not satisfiable (size ${big.body.length})` }, 'the cache\'s own body, as a stored object\'s 416');
  t.equal(res.headers['x-internal'], undefined, 'not the target\'s fields');
  t.equal(res.headers['cache-control'], 'no-store');
});

t.test('a redirect target\'s blob: only the fields a blob\'s answer needs reach the client, never the target\'s own (cookies, x-amz-*…)', async (t) => {
  const small = blob(4096);
  const big = blob(3 * 1024 * 1024);
  const blobs = new Map([[small.hex, small.body], [big.hex, big.body]]);
  const own = { 'set-cookie': 'AWSALB=session; Path=/', 'x-amz-request-id': 'req-1', 'x-amz-id-2': 'host-id', 'x-internal': 'instance-role', etag: '"s3-etag"', server: 'AmazonS3' };
  const target = await listen(t, (req, res) => {
    const body = blobs.get(/\/s3\/sha512\/([0-9a-f]+)/.exec(req.url!)?.[1] ?? '');
    if (!body) return void res.writeHead(404).end();
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!range) return void res.writeHead(200, { ...own, 'content-length': body.length, 'content-type': 'binary/octet-stream' }).end(body);
    const [start, end] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)];
    res.writeHead(206, { ...own, 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': end - start + 1, 'accept-ranges': 'bytes' }).end(body.subarray(start, end + 1));
  });
  const upstream = await listen(t, (req, res) => void res.writeHead(302, { location: `${target}/s3${req.url}?X-Amz-Signature=s3cret` }).end());
  const { url } = await startCache(t, { upstream, maxSize: '1MiB' }, t.testdir());
  const answers = [
    ['a fill', await get(`${url}/sha512/${small.hex}`)],
    ['a fill, with credentials', await get(`${url}/sha512/${big.hex}`, { authorization: 'Bearer secret' })],
    ['a range passed through', await get(`${url}/sha512/${big.hex}`, { range: 'bytes=100-199' })],
  ] as const;
  const [, part] = answers[2];
  t.same([part.status, part.headers['content-range'], part.body.equals(big.body.subarray(100, 200))], [206, `bytes 100-199/${big.body.length}`, true], 'the range served');
  const head = await request(`${url}/sha512/${big.hex}`, { method: 'HEAD' });
  await head.body.dump();
  for (const [what, res] of [...answers, ['a HEAD', { headers: head.headers as IncomingHttpHeaders }]] as const) {
    for (const name of ['set-cookie', 'x-amz-request-id', 'x-amz-id-2', 'x-internal', 'server']) t.equal(res.headers[name], undefined, `${what}: not the target's ${name}`);
    t.match(res.headers.etag, /^"sha512:/, `${what}: the cache's own ETag`);
  }
});

/**
 * A HEAD and a GET of `blobUrl` through a cache whose upstream bodies stall: the cache's body
 * timeout is a minute, so an answer within 10 s is one that did not wait for them.
 */
async function answeredPastStalls(t: Test, blobUrl: string, body: Buffer, says: { readonly head: string; readonly get: string }): Promise<void> {
  const head = await request(blobUrl, { method: 'HEAD', headersTimeout: 10_000 });
  await head.body.dump();
  t.equal(head.statusCode, 200, says.head);
  const res = await request(blobUrl, { headersTimeout: 10_000 });
  t.ok(Buffer.from(await res.body.arrayBuffer()).equals(body), says.get);
}

t.test('a redirect or a range-deaf target whose body announces more than is worth reading and stalls: cut at once, as undici\'s dump cuts it, never waited for', async (t) => {
  const { hex, body } = blob(4096);
  const stalled: ServerResponse[] = []; // answers that send part of their body, then nothing
  t.teardown(() => stalled.forEach((res) => res.destroy()));
  const stall = (res: ServerResponse, status: number, fields: Record<string, string | number>, first: Buffer): void => {
    res.writeHead(status, { ...fields, 'content-length': 10 * 1024 * 1024 });
    if (res.req.method === 'HEAD') return void res.end(); // no body to stall
    res.write(first);
    stalled.push(res);
  };
  // a storage host that ignores Range: the whole object, announced, its first bytes and no more
  const storage = await listen(t, (req, res) => {
    if (req.headers.range) return void stall(res, 200, { 'content-type': 'binary/octet-stream' }, body.subarray(0, 16));
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  // a tooltool server whose 302 announces a long page and stalls after its first line
  const tooltool = await listen(t, (req, res) => void stall(res, 302, { location: `${storage}/s3${req.url}` }, Buffer.from('<html>redirecting\n')));
  const { url } = await startCache(t, { upstream: tooltool }, t.testdir());
  await answeredPastStalls(t, `${url}/sha512/${hex}`, body, {
    head: 'a HEAD: the redirect followed past its stalled body, the target\'s first bytes read and the rest cut',
    get: 'a GET: the blob, the redirect\'s stalled body cut',
  });
});

t.test('a redirect whose body of unstated length (chunked) stalls after its first chunk: cut after a second, never waited for', async (t) => {
  const { hex, body } = blob(4096);
  const stalled: ServerResponse[] = [];
  t.teardown(() => stalled.forEach((res) => res.destroy()));
  const storage = await listen(t, (req, res) => {
    const range = req.headers.range === 'bytes=0-0';
    res.writeHead(range ? 206 : 200, range ? { 'content-range': `bytes 0-0/${body.length}`, 'content-length': 1 } : { 'content-length': body.length });
    res.end(range ? body.subarray(0, 1) : body);
  });
  // a tooltool server whose 302 has no length (chunked): its first line, then nothing
  const tooltool = await listen(t, (req, res) => {
    res.writeHead(302, { location: `${storage}/s3${req.url}` });
    if (req.method === 'HEAD') return void res.end();
    res.write('<html>redirecting\n');
    stalled.push(res);
  });
  const { url } = await startCache(t, { upstream: tooltool }, t.testdir());
  await answeredPastStalls(t, `${url}/sha512/${hex}`, body, {
    head: 'a HEAD: the redirect followed past its stalled chunked body',
    get: 'a GET: the blob, the redirect\'s stalled chunked body cut',
  });
});
