import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NotFoundError } from '../../src/errors.js';
import { isMissingObjectError, S3BlobStore, type S3StoreOptions } from '../../src/store/s3.js';
import { startS3rver, S3RVER_CREDENTIALS, writeObjectsDirectly } from '../helpers/s3rver.js';
import { verifyStore } from '../../src/origin/verify.js';
import { putAbortedAfter, storeTests } from './conformance.js';
import { closeWithConnections, listenOnLoopback, serveOnLoopback } from '../helpers/loopback-server.js';

const server = await startS3rver(t);
let stores = 0;

function storeAt(prefix: string, more: Partial<S3StoreOptions> = {}): S3BlobStore {
  return new S3BlobStore({
    endpoint: server.endpoint, bucket: server.bucket, region: 'us-east-1', forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS, prefix, ...more,
  });
}

const raw = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
t.teardown(() => raw.destroy());

/** Passes a request on to s3rver and its answer back: the proxies below look at requests on the way. */
function forwardToServer(req: IncomingMessage, res: ServerResponse): void {
  const target = new URL(server.endpoint);
  const forward = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  req.pipe(forward);
}

async function keysUnder(prefix: string): Promise<string[]> {
  const page = await raw.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key ?? '');
}

// Each conformance test gets its own prefix in the one bucket: stores are independent.
storeTests(t, async () => {
  const store = storeAt(`conf-${++stores}`);
  await store.open();
  return store;
});

t.test('isMissingObjectError: 404s are misses, nothing else (a 403 is refused credentials: see s3-storage.test.ts)', async (t) => {
  t.ok(isMissingObjectError({ name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }));
  t.ok(isMissingObjectError({ name: 'NotFound', $metadata: { httpStatusCode: 404 } }));
  t.notOk(isMissingObjectError({ name: 'Forbidden', $metadata: { httpStatusCode: 403 } }));
  t.notOk(isMissingObjectError({ name: 'InternalError', $metadata: { httpStatusCode: 500 } }));
  t.notOk(isMissingObjectError({ name: 'SlowDown', $metadata: { httpStatusCode: 503 } }));
  t.notOk(isMissingObjectError(new Error('socket hang up')));
  t.notOk(isMissingObjectError(undefined));
});

t.test('multipart upload: parts are hashed, verified and committed under cas/', async (t) => {
  const store = storeAt('multi', { partSize: 5 * 1024 * 1024 });
  await store.open();
  const data = randomBytes(5 * 1024 * 1024 + 123); // two parts, the last a short one
  const digest = { algo: 'sha256' as const, hex: createHash('sha256').update(data).digest('hex') };
  const chunks = Array.from({ length: Math.ceil(data.length / 65536) }, (_, i) => data.subarray(i * 65536, (i + 1) * 65536));
  const res = await store.put(Readable.from(chunks), { expected: digest });
  t.same(res, { digest, size: data.length, created: true });
  t.same(await keysUnder('multi/'), [`multi/cas/sha256/${digest.hex.slice(0, 2)}/${digest.hex}`], 'temporary key removed');
  const tail: Buffer[] = [];
  for await (const c of await store.createReadStream(digest, { start: data.length - 100, end: data.length - 1 })) tail.push(c as Buffer);
  t.ok(Buffer.concat(tail).equals(data.subarray(data.length - 100)));
  const again = await store.put(Readable.from([data]));
  t.equal(again.created, false);
});

t.test('a digest mismatch in a multipart upload leaves no key at all', async (t) => {
  const store = storeAt('mismatch', { partSize: 5 * 1024 * 1024 });
  await store.open();
  const data = randomBytes(6 * 1024 * 1024);
  const wrong = { algo: 'sha256' as const, hex: '0'.repeat(64) };
  await t.rejects(store.put(Readable.from([data]), { expected: wrong }), { code: 'FC_ERR_DIGEST_MISMATCH' });
  t.same(await keysUnder('mismatch/'), []);
});

t.test('an aborted put removes its temporary key', async (t) => {
  const store = storeAt('abort');
  await store.open();
  await putAbortedAfter(t, store, 50);
  t.same(await keysUnder('abort/'), []);
});

t.test('open removes stale temporary keys only; list ignores foreign keys', async (t) => {
  // A temporary key from a crashed put; a fresh one must survive open (another origin
  // sharing the bucket may be uploading it), an old one goes.
  await raw.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'stale/tmp/crashed-upload', Body: 'partial' }));
  await raw.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'stale/cas/sha256/zz/not-a-digest', Body: 'x' }));
  await storeAt('stale').open();
  t.same(await keysUnder('stale/tmp/'), ['stale/tmp/crashed-upload']);
  await new Promise((resolve) => setTimeout(resolve, 1100)); // LastModified has a one-second grain
  const store = storeAt('stale', { tmpMaxAgeMs: 0 });
  await store.open();
  t.same(await keysUnder('stale/tmp/'), []);
  for await (const s of store.list()) t.fail(`unexpected ${s.digest.hex}`);
  await t.rejects(store.stat({ algo: 'sha256', hex: 'ab'.repeat(32) }), NotFoundError);
});

t.test('a storage that refuses an upload is a 503, whatever its size; a body the client cut is still an abort', async (t) => {
  // Every request refused, as a bucket policy or wrong credentials would: a one-part upload
  // and a multipart one (whose failure stops the reading of the body) say the same.
  const refusing = createServer((req, res) => {
    req.resume();
    res.writeHead(403, { 'content-type': 'application/xml' }).end('<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>denied</Message></Error>');
  });
  const store = new S3BlobStore({
    endpoint: await serveOnLoopback(t, refusing), bucket: 'b', region: 'us-east-1', forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
  });
  for (const size of [1024 * 1024, 24 * 1024 * 1024]) {
    const data = randomBytes(size);
    // in 64 KiB chunks, as a request's body comes
    const chunks = Array.from({ length: size / 65536 }, (_, i) => data.subarray(i * 65536, (i + 1) * 65536));
    await t.rejects(store.put(Readable.from(chunks)), { code: 'FC_ERR_UNAVAILABLE', message: /denied/ }, `${size} bytes`);
  }
  const cut = new Readable({ read() {} });
  cut.push(randomBytes(10_000));
  setTimeout(() => cut.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })), 50);
  await t.rejects(storeAt('cut').put(cut), { code: 'FC_ERR_ABORTED' });
  t.same(await keysUnder('cut/'), []);
});

t.test('a server that is down is a 503, not a miss', async (t) => {
  const store = new S3BlobStore({
    endpoint: 'http://127.0.0.1:9', bucket: 'b', region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS,
  });
  await t.rejects(store.has({ algo: 'sha256', hex: 'ab'.repeat(32) }), { code: 'FC_ERR_UNAVAILABLE' });
});

t.test('a storage that stops answering (a connection that hangs, a body that stalls) is a 503 or a stream error after the idle time-out, never a wait without end', async (t) => {
  const sockets = new Set<Socket>();
  // Takes each connection and never answers: a hung endpoint, a load balancer with no backend.
  const silent = createNetServer((socket) => { sockets.add(socket); });
  // Answers a GET's head and its first bytes, then nothing more.
  const stalling = createServer((_req, res) => {
    sockets.add(res.socket!);
    res.writeHead(200, { 'content-length': '1000' });
    res.write(Buffer.alloc(10));
  });
  for (const s of [silent, stalling]) await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
    stalling.close();
  });
  // short, but the stalling server's head must come within it even on a loaded machine
  const at = (srv: { address(): unknown }, idleTimeoutMs = 300) => new S3BlobStore({
    endpoint: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, bucket: 'b', region: 'us-east-1', forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS, idleTimeoutMs,
  });
  const digest = { algo: 'sha256', hex: 'ab'.repeat(32) } as const;
  await t.rejects(at(silent).open(), { code: 'FC_ERR_UNAVAILABLE' }, 'an origin starting on it fails, and says why');
  await t.rejects(at(silent).has(digest), { code: 'FC_ERR_UNAVAILABLE' });
  const body = await at(stalling, 2000).createReadStream(digest);
  await t.rejects((async () => { for await (const chunk of body) void chunk; })(), /timed out/);
});

t.test('delete with credentials the storage refuses (403) fails: the object is there, and retention must not take it for gone', async (t) => {
  const store = storeAt('refused');
  const { digest } = await store.put(Readable.from([Buffer.from('a blob freed by retention')]));
  const refused = storeAt('refused', { credentials: { accessKeyId: 'ROTATED', secretAccessKey: 'rotated-wrongly' } });
  await t.rejects(refused.delete(digest), { code: 'FC_ERR_UNAVAILABLE' });
  t.ok(await store.has(digest), 'still stored');
  t.equal(await store.delete(digest), true);
  t.equal(await store.delete(digest), false, 'a key that is not there is still absent');
});

t.test('keys under cas/ that are not a blob\'s own (a copy <hex>.bak, an upper-case name) are not listed, so verify --remove keeps them', async (t) => {
  const store = storeAt('foreign');
  const { digest } = await store.put(Readable.from([Buffer.from('a real blob')]));
  const hex = 'ab'.repeat(32);
  const foreign = [`foreign/cas/sha256/ab/${hex}.bak`, `foreign/cas/sha256/AB/${hex.toUpperCase()}`, 'foreign/cas/sha256/ab/abc'];
  for (const Key of foreign) await raw.send(new PutObjectCommand({ Bucket: server.bucket, Key, Body: 'an operator\'s file' }));
  const listed: string[] = [];
  for await (const s of store.list()) listed.push(s.digest.hex);
  t.same(listed, [digest.hex]);
  const result = await verifyStore(store, { remove: true });
  t.same(result.damaged, []);
  t.same((await keysUnder('foreign/')).sort(), [store.keyOf(digest), ...foreign].sort(), 'nothing deleted');
});

t.test('list pages through more than 1000 keys (ListObjectsV2 answers 1000 at most)', async (t) => {
  const store = storeAt('many');
  const want: string[] = [];
  for (let i = 0; i < 1005; i++) want.push(createHash('sha256').update(`object ${i}`).digest('hex'));
  // written into s3rver's directory (a put each would take minutes, a PutObject each 12 s of
  // CPU): list reads keys, not bytes, and s3rver lists them as any other
  writeObjectsDirectly(server, want.map((hex) => store.keyOf({ algo: 'sha256', hex })), 'x');
  const listed: string[] = [];
  for await (const s of store.list()) listed.push(s.digest.hex);
  t.equal(listed.length, want.length);
  t.same(listed.sort(), want.sort());
});

t.test('an endpoint that is no S3 API (a web console answering 200 or 404 with its page, a JSON API), a bucket of another region, or credentials refused are a configuration error at open, naming the field', async (t) => {
  const answers = [
    { status: 200, type: 'text/html', body: '<!doctype html><html><body>Object storage console</body></html>', said: /^origin\.yaml: storage\.endpoint: http:\/\/127\.0\.0\.1:\d+ answered the listing of bucket "b" with a 200 that is no S3 listing: is it the address of the S3 API/ },
    { status: 200, type: 'application/json', body: '{"status":"ok"}', said: /^origin\.yaml: storage\.endpoint: .* with a 200 that is no S3 listing/ },
    { status: 404, type: 'text/html', body: '<html>not found</html>', said: /^origin\.yaml: storage\.endpoint: .* with HTTP 404 with no S3 error/ },
    // what S3 says to a secret key that is not the access key's, and to credentials without s3:ListBucket (s3rver checks neither)
    { status: 403, type: 'application/xml', body: '<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error>', said: /^origin\.yaml: storage\.secretAccessKeyEnv: .* refused the signature: the secret key in the variable storage\.secretAccessKeyEnv names is not the access key's$/ },
    { status: 403, type: 'application/xml', body: '<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>', said: /^origin\.yaml: storage\.accessKeyIdEnv: .* refused to list bucket "b": the credentials need s3:ListBucket on it/ },
    // what AWS says to a request signed for another region than the bucket's (s3rver checks no region)
    { status: 400, type: 'application/xml', body: '<?xml version="1.0"?><Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region \'us-east-1\' is wrong; expecting \'eu-west-1\'</Message><Region>eu-west-1</Region></Error>', said: /^origin\.yaml: storage\.region: .* refused the request's region us-east-1: The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'$/ },
    { status: 301, type: 'application/xml', body: '<?xml version="1.0"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message></Error>', said: /^origin\.yaml: storage\.region: .* says bucket "b" is not in region us-east-1/ },
  ];
  for (const a of answers) {
    const page = createServer((req, res) => {
      req.resume();
      res.writeHead(a.status, { 'content-type': a.type }).end(a.body);
    });
    const store = new S3BlobStore({
      endpoint: await listenOnLoopback(page), bucket: 'b', region: 'us-east-1', forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS, configFile: 'origin.yaml',
    });
    await t.rejects(store.open(), { code: 'FC_ERR_CONFIG', message: a.said }, `HTTP ${a.status}`);
    await t.rejects((async () => { for await (const s of store.list()) void s; })(), { code: 'FC_ERR_CONFIG' }, `HTTP ${a.status}: verify's listing`);
    await closeWithConnections(page);
  }
});

t.test('a put whose limit 10,000 parts would not hold uploads larger parts: a body past 80 GiB (maxBlobSize above it) no longer fails at its 10,001st part', async (t) => {
  // In front of s3rver, a proxy that notes the size of each part uploaded.
  const parts: number[] = [];
  const proxy = createServer((req, res) => {
    if (new URL(req.url ?? '/', 'http://x').searchParams.has('partNumber')) parts.push(Number(req.headers['content-length']));
    forwardToServer(req, res);
  });
  const partSize = 5 * 1024 * 1024;
  const store = storeAt('parts', { partSize, endpoint: await serveOnLoopback(t, proxy) });
  // 10,000 parts of 6 MiB hold the limit, 10,000 of the configured 5 MiB would not
  const wanted = 6 * 1024 * 1024;
  // a whole part and a byte, the two uploaded at once (largest first below): the whole
  // part's size is the part size chosen
  const largestFirst = () => [...parts].sort((a, b) => b - a);
  await store.put(Readable.from([randomBytes(wanted + 1)]), { maxSize: 10_000 * wanted });
  t.same(largestFirst(), [wanted, 1]);
  parts.length = 0;
  await store.put(Readable.from([randomBytes(partSize + 1)]));
  t.same(largestFirst(), [partSize, 1], 'no limit: the configured part size');
});

t.test("the sweep of old temporary keys skips those of this store's puts still in progress: an upload longer than the sweep age lost its key just before its copy", async (t) => {
  // In front of s3rver, a proxy that holds the copy of a put's temporary key to its final
  // key until released: the moment a sweep may come, its key past the age (on S3 a
  // multipart upload's key is as old as the upload, a day for one that took a day).
  let release = () => {};
  const released = new Promise<void>((resolve) => { release = resolve; });
  let copyHeld = () => {};
  const held = new Promise<void>((resolve) => { copyHeld = resolve; });
  const proxy = createServer((req, res) => {
    if (req.headers['x-amz-copy-source'] === undefined) return forwardToServer(req, res);
    copyHeld();
    void released.then(() => forwardToServer(req, res));
  });
  // a day is no time at all here
  const store = storeAt('inflight', { endpoint: await serveOnLoopback(t, proxy), tmpMaxAgeMs: 0 });
  await store.open();
  const data = randomBytes(10_000);
  const put = store.put(Readable.from([data]));
  await held;
  await new Promise((resolve) => setTimeout(resolve, 1100)); // LastModified has a one-second grain
  t.equal((await keysUnder('inflight/tmp/')).length, 1, 'the temporary key, older than the sweep age');
  await store.removeLeftovers();
  t.equal((await keysUnder('inflight/tmp/')).length, 1, 'kept by the sweep');
  release();
  const { digest, created } = await put;
  t.equal(created, true);
  const got: Buffer[] = [];
  for await (const c of await store.createReadStream(digest)) got.push(c as Buffer);
  t.ok(Buffer.concat(got).equals(data), 'committed whole');
  t.same(await keysUnder('inflight/tmp/'), [], 'the temporary key removed by its put');
  // a key of no put of this store's, as old, is still swept
  await raw.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'inflight/tmp/crashed-upload', Body: 'partial' }));
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await store.removeLeftovers();
  t.same(await keysUnder('inflight/tmp/'), []);
});
