import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { request } from 'undici';
import { fetchAssets } from '../../src/assets/fetch.js';
import { formatManifest, type ManifestRecord } from '../../src/assets/manifest.js';
import { uploadAssets } from '../../src/assets/upload.js';
import { startOrigin } from '../helpers/origin.js';
import { BlobServer, compress, makeTar, serveBlobs, sha512 } from './helpers.js';
import { readQuotedList } from '../helpers/quoted-list.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

const A = randomBytes(300 * 1024);
const B = Buffer.from('plain text asset\n');
const C = randomBytes(5000);

function record(filename: string, data: Buffer, extra: Partial<ManifestRecord> = {}): ManifestRecord {
  return { filename, size: data.length, algorithm: 'sha512', digest: sha512(data), unpack: false, visibility: 'public', ...extra };
}

async function archive(): Promise<Buffer> {
  return compress(await makeTar([{ name: 'tool/bin/cc', body: 'compiler', mode: 0o755 }, { name: 'tool/lib/x', body: 'lib' }]), 'gz');
}

/** An origin holding `files` (uploaded with assets upload) and a manifest naming them. */
async function originWith(t: Test, files: [ManifestRecord, Buffer][]) {
  const root = t.testdir({ src: {}, data: {} });
  const origin = await startOrigin(t, { dataDir: join(root, 'data') });
  for (const [r, data] of files) await writeFile(join(root, 'src', r.filename), data);
  const manifest = join(root, 'src', 'manifest.tt');
  await writeFile(manifest, formatManifest(files.map(([r]) => r)));
  const uploaded = await uploadAssets({ manifestPath: manifest, origin: origin.url, token: origin.token, dir: join(root, 'src') });
  t.ok(uploaded.every((u) => u.uploaded), 'assets upload PUT every file');
  t.ok((await uploadAssets({ manifestPath: manifest, origin: origin.url, token: origin.token, dir: join(root, 'src') })).every((u) => !u.uploaded), 'a second upload skips them all');
  return { root, origin, manifest };
}

function partials(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.includes('fleetcache-part'));
}

t.test('several records: good ones land, an archive unpacks, wrong size and wrong digest fail cleanly', async (t) => {
  const tgz = await archive();
  const { root, origin } = await originWith(t, [
    [record('a.bin', A), A],
    [record('b.txt', B), B],
    [record('tool.tar.gz', tgz, { unpack: true }), tgz],
    [record('c.bin', C), C],
  ]);
  // A mirror that serves wrong bytes for one digest, tried before the origin.
  const liar = new BlobServer();
  const liarUrl = await liar.start();
  t.teardown(() => liar.stop());
  const wrongDigest = record('wrong-digest.bin', C, { digest: sha512('something else') });
  liar.blobs.set(wrongDigest.digest, C);
  const manifest = join(root, 'fetch.tt');
  await writeFile(manifest, formatManifest([
    record('a.bin', A),
    record('b.txt', B),
    record('tool.tar.gz', tgz, { unpack: true }),
    record('short.bin', C, { size: C.length + 1 }),
    record('long.bin', C, { size: C.length - 1 }),
    wrongDigest,
  ]));
  const dest = join(root, 'dest');
  const progress: string[] = [];
  const res = await fetchAssets({ manifestPath: manifest, urls: [liarUrl, `${origin.url}/`], dest, onProgress: (p) => p.done && progress.push(p.filename) });
  const by = new Map(res.files.map((f) => [f.filename, f]));
  t.equal(res.failed, 3);
  t.ok(readFileSync(join(dest, 'a.bin')).equals(A));
  t.ok(readFileSync(join(dest, 'b.txt')).equals(B));
  t.equal(by.get('a.bin')!.source, 'download');
  t.equal(by.get('a.bin')!.url, `${origin.url}/`);
  t.equal(by.get('a.bin')!.bytesDownloaded, A.length);
  t.equal(by.get('tool.tar.gz')!.unpacked, 'tar.gz');
  t.equal(readFileSync(join(dest, 'tool/bin/cc'), 'utf8'), 'compiler');
  t.equal(statSync(join(dest, 'tool/bin/cc')).mode & 0o111, 0o111, 'executable bit kept');
  t.equal(by.get('short.bin')!.error?.code, 'FC_ERR_SIZE_MISMATCH');
  t.equal(by.get('long.bin')!.error?.code, 'FC_ERR_SIZE_MISMATCH');
  t.equal(by.get('wrong-digest.bin')!.error?.code, 'FC_ERR_DIGEST_MISMATCH');
  t.match(by.get('wrong-digest.bin')!.error?.message, /every URL failed/);
  // each mismatch names the request whose answer it was: which server sent the wrong bytes
  t.match(by.get('wrong-digest.bin')!.error?.message, `GET ${liarUrl}/sha512/${wrongDigest.digest}: digest mismatch: expected sha512:${wrongDigest.digest}, got sha512:${sha512(C)}`);
  t.match(by.get('short.bin')!.error?.message, `GET ${origin.url}/sha512/${sha512(C)}: size mismatch: expected ${C.length + 1} bytes, got ${C.length}`);
  t.match(by.get('long.bin')!.error?.message, `GET ${origin.url}/sha512/${sha512(C)}: size mismatch: expected ${C.length - 1} bytes, got `);
  for (const name of ['short.bin', 'long.bin', 'wrong-digest.bin']) t.notOk(existsSync(join(dest, name)), `${name} never appears`);
  t.same(partials(dest), [], 'no partial file is left');
  t.same(progress, ['a.bin', 'b.txt', 'tool.tar.gz']);
  t.equal(res.bytesDownloaded, A.length + B.length + tgz.length + C.length * 3, 'failed attempts count as traffic (short, long, wrong digest)');

  // A present, valid file is kept without any request; a present archive is unpacked again.
  const before = liar.requests.length;
  const again = await fetchAssets({ manifestPath: manifest, urls: [liarUrl], dest, files: ['a.bin', 'tool.tar.gz'] });
  t.equal(again.failed, 0);
  t.same(again.files.map((f) => f.source), ['present', 'present', 'present', 'skipped', 'skipped', 'skipped']);
  t.equal(again.files[2]!.unpacked, 'tar.gz');
  t.equal(liar.requests.length, before, 'no request for present files');
  const unknown = await fetchAssets({ manifestPath: manifest, urls: [liarUrl], dest, files: ['nope'] });
  t.same(unknown.unknownFiles, ['nope'], 'a name no record has is ignored, as tooltool ignores it');
  t.equal(unknown.failed, 0);
  t.equal(liar.requests.length, before, 'and nothing is downloaded');
});

t.test('URL fallback: a 404 server first, then the origin', async (t) => {
  const { root, origin, manifest } = await originWith(t, [[record('a.bin', A), A], [record('b.txt', B), B]]);
  const empty = new BlobServer();
  const emptyUrl = await empty.start();
  t.teardown(() => empty.stop());
  const res = await fetchAssets({ manifestPath: manifest, urls: [`${emptyUrl}/tooltool`, origin.url], dest: join(root, 'dest') });
  t.equal(res.failed, 0);
  t.same(res.files.map((f) => f.url), [origin.url, origin.url]);
  t.same(empty.requests.map((r) => r.url), [`/tooltool/sha512/${sha512(A)}`, `/tooltool/sha512/${sha512(B)}`], 'one GET per record at the 404 server, path prefix kept');
  // tooltool's urljoin(base + "/", …): a query on the base is dropped, "a//" is "a/"
  const bases = [`${emptyUrl}/?token=x`, `${emptyUrl}/mirror//`];
  await fetchAssets({ manifestPath: manifest, urls: [...bases, origin.url], dest: join(root, 'dest-bases'), files: ['a.bin'] });
  t.same(empty.requests.slice(2).map((r) => r.url), [`/sha512/${sha512(A)}`, `/mirror/sha512/${sha512(A)}`], 'as Python\'s urljoin builds them');
  t.same(res.files[0]!.warnings, [`GET ${emptyUrl}/tooltool/sha512/${sha512(A)}: HTTP 404`], 'the warning names the URL once');
  const redirecting = createServer((req, res) => void res.writeHead(302, { location: `${emptyUrl}/elsewhere${req.url}` }).end());
  const redirectingUrl = await serveOnLoopback(t, redirecting);
  const redirected = await fetchAssets({ manifestPath: manifest, urls: [redirectingUrl, origin.url], dest: join(root, 'dest-redirected'), files: ['b.txt'] });
  t.same(redirected.files.find((f) => f.filename === 'b.txt')?.warnings, [`${redirectingUrl}/sha512/${sha512(B)}: GET ${emptyUrl}/elsewhere/sha512/${sha512(B)}: HTTP 404`], 'after a redirect, the URL asked and the one that answered');
  const h = empty.requests[0]!.headers;
  t.equal(h['accept-encoding'], 'identity');
  t.notOk(h.range);
  t.notOk(h.authorization, 'no token given, none sent');
  t.ok(readFileSync(join(root, 'dest', 'b.txt')).equals(B));

  const none = await fetchAssets({ manifestPath: manifest, urls: [emptyUrl, 'http://127.0.0.1:1'], dest: join(root, 'dest2') });
  t.equal(none.failed, 2);
  t.equal(none.files[0]!.error?.code, 'FC_ERR_UPSTREAM', 'a refused connection outranks a 404');
  t.same(readdirSync(join(root, 'dest2')), []);
});

t.test('a warm cache folder makes zero requests; a corrupt entry heals', async (t) => {
  const tgz = await archive();
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  const recs: [ManifestRecord, Buffer][] = [[record('a.bin', A), A], [record('tool.tar.gz', tgz, { unpack: true }), tgz], [record('c.bin', C), C]];
  for (const [r, data] of recs) server.blobs.set(r.digest, data);
  const root = t.testdir({});
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest(recs.map(([r]) => r)));
  const cacheFolder = join(root, 'tooltool-cache');

  const cold = await fetchAssets({ manifestPath: manifest, urls: [url], cacheFolder, dest: join(root, 'd1') });
  t.equal(cold.failed, 0);
  t.equal(server.requests.length, 3);
  t.same(readdirSync(cacheFolder).sort(), recs.map(([r]) => r.digest).sort(), 'flat folder of bare hex digests');
  t.equal(statSync(cacheFolder).mode & 0o777, 0o700);
  t.ok(readFileSync(join(cacheFolder, sha512(A))).equals(A));

  const old = new Date(Date.now() - 3600_000);
  utimesSync(join(cacheFolder, sha512(A)), old, old);
  const warm = await fetchAssets({ manifestPath: manifest, urls: [url], cacheFolder, dest: join(root, 'd2') });
  t.equal(server.requests.length, 3, 'zero requests with a warm cache folder');
  t.same(warm.files.map((f) => f.source), ['cache', 'cache', 'cache']);
  t.equal(warm.bytesDownloaded, 0);
  t.equal(warm.bytesFromCache, A.length + tgz.length + C.length);
  t.ok(readFileSync(join(root, 'd2', 'a.bin')).equals(A));
  t.equal(readFileSync(join(root, 'd2', 'tool/lib/x'), 'utf8'), 'lib', 'unpacked from the cached archive');
  t.ok(statSync(join(cacheFolder, sha512(A))).mtimeMs > old.getTime() + 1000, 'a cache hit touches the entry');

  writeFileSync(join(cacheFolder, sha512(C)), 'corrupted');
  const healed = await fetchAssets({ manifestPath: manifest, urls: [url], cacheFolder, dest: join(root, 'd3') });
  t.equal(healed.failed, 0);
  t.equal(server.requests.length, 4, 'only the corrupt entry is fetched again');
  t.match(healed.files[2]!.warnings[0], /was invalid and was removed/);
  t.ok(readFileSync(join(cacheFolder, sha512(C))).equals(C), 'the entry is good again');
  t.same(partials(join(root, 'd3')), []);
  t.same(partials(cacheFolder), []);
});

t.test('a symlink in the cache folder is never read nor written through: the entry is fetched and a regular file replaces the link', async (t) => {
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  const recs = [record('a.bin', A), record('b.txt', B), record('c.bin', C)];
  server.blobs.set(sha512(A), A).set(sha512(B), B).set(sha512(C), C);
  const root = t.testdir({ outside: { 'b-wrong': 'not b' } });
  const outside = join(root, 'outside');
  writeFileSync(join(outside, 'a-copy'), A);
  const old = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000); // whole seconds: mtimeMs reads them back exactly
  for (const name of ['a-copy', 'b-wrong']) utimesSync(join(outside, name), old, old);
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest(recs));
  const cacheFolder = join(root, 'cache');
  await mkdir(cacheFolder);
  symlinkSync(join(outside, 'a-copy'), join(cacheFolder, sha512(A))); // the right bytes, outside
  symlinkSync(join(outside, 'b-wrong'), join(cacheFolder, sha512(B))); // wrong bytes, outside
  symlinkSync(join(outside, 'c-new'), join(cacheFolder, sha512(C))); // dangling: a write through it would land outside

  const res = await fetchAssets({ manifestPath: manifest, urls: [url], cacheFolder, dest: join(root, 'dest') });
  t.equal(res.failed, 0);
  t.same(res.files.map((f) => f.source), ['download', 'download', 'download'], 'no linked entry is used');
  t.equal(server.requests.length, 3);
  t.same(readdirSync(outside).sort(), ['a-copy', 'b-wrong'], 'nothing is created outside the cache folder');
  t.equal(readFileSync(join(outside, 'b-wrong'), 'utf8'), 'not b', 'nor written');
  for (const name of ['a-copy', 'b-wrong']) t.equal(statSync(join(outside, name)).mtimeMs, old.getTime(), `${name} is not touched`);
  for (const [r, data] of [[recs[0]!, A], [recs[1]!, B], [recs[2]!, C]] as const) {
    const entry = join(cacheFolder, r.digest);
    t.ok(lstatSync(entry).isFile(), `${r.filename}: the link is replaced by a regular file`);
    t.ok(readFileSync(entry).equals(data));
    t.ok(readFileSync(join(root, 'dest', r.filename)).equals(data));
  }
});

t.test('internal visibility: 401 without a token, bytes with it', async (t) => {
  const { root, origin, manifest } = await originWith(t, [[record('secret.bin', C, { visibility: 'internal' }), C], [record('b.txt', B), B]]);
  const anon = await request(`${origin.url}/sha512/${sha512(C)}`);
  await anon.body.dump();
  t.equal(anon.statusCode, 401, 'the origin refuses an anonymous GET of an internal asset');

  const without = await fetchAssets({ manifestPath: manifest, urls: [origin.url], dest: join(root, 'anon') });
  t.equal(without.files[0]!.error?.code, 'FC_ERR_UNAUTHORIZED');
  t.notOk(existsSync(join(root, 'anon', 'secret.bin')));
  t.equal(without.files[1]!.source, 'download', 'public assets still come without a token');

  const withToken = await fetchAssets({ manifestPath: manifest, urls: [origin.url], dest: join(root, 'auth'), token: origin.token });
  t.equal(withToken.failed, 0);
  t.ok(readFileSync(join(root, 'auth', 'secret.bin')).equals(C));

  await mkdir(join(root, 'bad'));
  await writeFile(join(root, 'bad', 'secret.bin'), C);
  await writeFile(join(root, 'bad', 'b.txt'), 'not the manifest content');
  await t.rejects(uploadAssets({ manifestPath: manifest, origin: origin.url, token: origin.token, dir: join(root, 'bad') }), /mismatch/, 'upload verifies local files first');
});

t.test('a truncated body is never kept; the next URL serves it; size null checks the digest only', async (t) => {
  const { root, origin } = await originWith(t, [[record('a.bin', A), A]]);
  // Promises the whole length, sends half, then drops the connection.
  const cut = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': A.length });
    res.write(A.subarray(0, A.length / 2), () => res.destroy());
  });
  const cutUrl = await serveOnLoopback(t, cut);
  const manifest = join(root, 'nosize.tt');
  await writeFile(manifest, formatManifest([record('a.bin', A, { size: null })]));
  const dest = join(root, 'dest');
  const res = await fetchAssets({ manifestPath: manifest, urls: [cutUrl, origin.url], dest });
  t.equal(res.failed, 0);
  t.equal(res.files[0]!.url, origin.url);
  t.equal(res.files[0]!.warnings[0]!.split(cutUrl).length, 2, `the warning names the URL once: ${res.files[0]!.warnings[0]}`);
  t.ok(readFileSync(join(dest, 'a.bin')).equals(A));
  t.same(readdirSync(dest), ['a.bin'], 'no partial file from the truncated attempt');

  const only = await fetchAssets({ manifestPath: manifest, urls: [cutUrl], dest: join(root, 'dest2') });
  t.equal(only.failed, 1);
  t.same(readdirSync(join(root, 'dest2')), [], 'nothing at all when the only URL truncates');
  const request = `GET ${cutUrl}/${record('a.bin', A).algorithm}/${record('a.bin', A).digest}`;
  t.match(only.files[0]!.error, { code: 'FC_ERR_UPSTREAM', message: `${request}: `, cause: { request: { method: 'GET', url: request.slice(4) } } }, 'the cut names its request, as a mismatch does');
});

t.test('a file name as long as the file system allows is fetched (the temp name stays short)', async (t) => {
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  server.blobs.set(sha512(B), B);
  const root = t.testdir({});
  const long = `${'n'.repeat(250)}.bin`; // 254 bytes: legal, but no room for a prefix and suffix around it
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest([record(long, B)]));
  const res = await fetchAssets({ manifestPath: manifest, urls: [url], dest: join(root, 'dest'), cacheFolder: join(root, 'cache') });
  t.equal(res.failed, 0, res.files[0]!.error?.message ?? 'no error');
  t.ok(readFileSync(join(root, 'dest', long)).equals(B));
  t.same(partials(join(root, 'dest')), []);
});

t.test('a cache folder that cannot be used only warns; the download still counts', async (t) => {
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  server.blobs.set(sha512(B), B);
  const root = t.testdir({ 'not-a-dir': 'a file where the cache folder should be' });
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest([record('b.txt', B)]));
  const res = await fetchAssets({ manifestPath: manifest, urls: [url], dest: join(root, 'dest'), cacheFolder: join(root, 'not-a-dir') });
  t.equal(res.failed, 0, res.files[0]!.error?.message ?? 'no error');
  t.equal(res.files[0]!.source, 'download');
  t.match(res.files[0]!.warnings.join('\n'), /cannot add to cache folder/);
  t.ok(readFileSync(join(root, 'dest', 'b.txt')).equals(B));
});

t.test("a record with Python's hashlib spelling is fetched from <base>/<that name>/<digest> and verified", async (t) => {
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  const digest = createHash('sha3-256').update(B).digest('hex');
  server.blobs.set(digest, B);
  const root = t.testdir({});
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest([record('b.txt', B, { algorithm: 'sha3_256', digest })]));
  const res = await fetchAssets({ manifestPath: manifest, urls: [url], dest: join(root, 'dest') });
  t.equal(res.failed, 0, res.files[0]!.error?.message ?? 'no error');
  t.same(server.requests.map((r) => r.url), [`/sha3_256/${digest}`]);
  t.ok(readFileSync(join(root, 'dest', 'b.txt')).equals(B));
});

t.test("a base URL's path is joined as tooltool's urljoin joins it: the request path Python's urljoin makes, empty segments dropped", async (t) => {
  const { server, url } = await serveBlobs(t, B);
  const root = t.testdir({});
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest([record('b.txt', B)]));
  const bases = ['/tooltool//v1/', '//tooltool/v1', '/tooltool/./v1/', '/a/../tooltool/', '/tooltool/?x=1'];
  // tooltool adds the slash a base lacks, then urljoin(base, '<algorithm>/<digest>'): Python's own answer
  const python = spawnSync('python3', ['-c', 'import sys, urllib.parse\nfor b in sys.argv[2:]: print(urllib.parse.urlsplit(urllib.parse.urljoin(b if b.endswith("/") else b + "/", sys.argv[1])).path)', `sha512/${sha512(B)}`, ...bases.map((b) => `${url}${b}`)], { encoding: 'utf8' });
  t.equal(python.status, 0, python.stderr);
  const expected = python.stdout.trim().split('\n');
  for (const [i, base] of bases.entries()) {
    const before = server.requests.length;
    const res = await fetchAssets({ manifestPath: manifest, urls: [`${url}${base}`], dest: join(root, `dest${i}`) });
    t.equal(res.failed, 0, `${base}: fetched`);
    t.same(server.requests.slice(before).map((r) => r.url), [expected[i]], `${base}: asked for ${expected[i]}`);
  }
});

t.test('a symlink at the file name is used like tooltool does: kept when its target is valid, replaced (not followed) when not', async (t) => {
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  server.blobs.set(sha512(B), B);
  server.blobs.set(sha512(C), C);
  const root = t.testdir({ store: { 'b.txt': B.toString(), 'stale.bin': 'an old version' }, dest: {} });
  const dest = join(root, 'dest');
  symlinkSync(join(root, 'store', 'b.txt'), join(dest, 'b.txt'));
  symlinkSync(join(root, 'store', 'stale.bin'), join(dest, 'c.bin'));
  symlinkSync(join(root, 'store', 'missing'), join(dest, 'dangling.bin'));
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest([record('b.txt', B), record('c.bin', C), record('dangling.bin', C)]));
  const res = await fetchAssets({ manifestPath: manifest, urls: [url], dest });
  t.equal(res.failed, 0, res.files.map((f) => f.error?.message).join('; '));
  t.same(res.files.map((f) => f.source), ['present', 'download', 'download']);
  t.ok(lstatSync(join(dest, 'b.txt')).isSymbolicLink(), 'a valid link is kept');
  t.notOk(lstatSync(join(dest, 'c.bin')).isSymbolicLink(), 'an invalid link is replaced by the file');
  t.ok(readFileSync(join(dest, 'c.bin')).equals(C));
  t.equal(readFileSync(join(root, 'store', 'stale.bin'), 'utf8'), 'an old version', "the link's target is never written");
  t.ok(readFileSync(join(dest, 'dangling.bin')).equals(C));
  t.notOk(existsSync(join(root, 'store', 'missing')), 'nothing written through a dangling link');
});

t.test('naming files limits only the download: every record is still checked, taken from the cache folder and unpacked', async (t) => {
  // tooltool's `fetch FILE...`: steps 1 (present? invalid is deleted), 2 (cache folder) and 5 (unpack) run for every record.
  const cachedTgz = compress(await makeTar([{ name: 'cached/VERSION', body: 'from the cache folder' }]), 'gz');
  const hereTgz = compress(await makeTar([{ name: 'here/VERSION', body: 'already present' }]), 'gz');
  const wanted = Buffer.from('the only file downloaded');
  const recs: [ManifestRecord, Buffer][] = [
    [record('wanted.bin', wanted), wanted],
    [record('stale.bin', C), C],
    [record('cached.tar.gz', cachedTgz, { unpack: true }), cachedTgz],
    [record('here.tar.gz', hereTgz, { unpack: true }), hereTgz],
    [record('absent.bin', A), A],
  ];
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  for (const [r, data] of recs) server.blobs.set(r.digest, data);
  const root = t.testdir({
    dest: { 'stale.bin': 'an old version', 'here.tar.gz': t.fixture('file', hereTgz), here: { leftover: 'from an older unpack' } },
    cache: { [sha512(cachedTgz)]: t.fixture('file', cachedTgz) },
  });
  const dest = join(root, 'dest');
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest(recs.map(([r]) => r)));
  const res = await fetchAssets({ manifestPath: manifest, urls: [url], dest, cacheFolder: join(root, 'cache'), files: ['wanted.bin'] });
  t.equal(res.failed, 0, res.files.map((f) => f.error?.message ?? '').join(' ').trim() || 'no error');
  t.same(res.files.map((f) => [f.filename, f.source, f.unpacked ?? '-']), [
    ['wanted.bin', 'download', '-'],
    ['stale.bin', 'skipped', '-'],
    ['cached.tar.gz', 'cache', 'tar.gz'],
    ['here.tar.gz', 'present', 'tar.gz'],
    ['absent.bin', 'skipped', '-'],
  ]);
  t.same(server.requests.map((r) => r.url), [`/sha512/${sha512(wanted)}`], 'only the named file is requested');
  t.ok(readFileSync(join(dest, 'wanted.bin')).equals(wanted));
  t.notOk(existsSync(join(dest, 'stale.bin')), 'an invalid file of a record not named is deleted (step 1), not downloaded');
  t.notOk(existsSync(join(dest, 'absent.bin')));
  t.ok(readFileSync(join(dest, 'cached.tar.gz')).equals(cachedTgz), 'a record not named is copied from the cache folder (step 2)');
  t.equal(readFileSync(join(dest, 'cached', 'VERSION'), 'utf8'), 'from the cache folder', 'and unpacked (step 5)');
  t.equal(readFileSync(join(dest, 'here', 'VERSION'), 'utf8'), 'already present', 'a present archive not named is unpacked again');
  t.notOk(existsSync(join(dest, 'here', 'leftover')), 'after its directory was removed');
  t.same(partials(dest), []);
});

t.test('fetched files and cache-folder entries are mode 0600 whatever the umask, as tooltool leaves them', async (t) => {
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  server.blobs.set(sha512(B), B);
  const root = t.testdir({ cache: {} });
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest([record('b.txt', B)]));
  const cacheFolder = join(root, 'cache');
  const mode = (path: string): string => (statSync(path).mode & 0o7777).toString(8);
  // 022: the usual umask, which leaves 0644 files. 0200: takes the owner's write bit from the mode a file is created with.
  for (const umask of [0o022, 0o200]) {
    const previous = process.umask(umask);
    try {
      rmSync(join(cacheFolder, sha512(B)), { force: true });
      const downloaded = await fetchAssets({ manifestPath: manifest, urls: [url], cacheFolder, dest: join(root, `download-${umask}`) });
      t.equal(downloaded.files[0]!.source, 'download');
      t.equal(mode(join(root, `download-${umask}`, 'b.txt')), '600', `umask ${umask.toString(8)}: the downloaded file`);
      t.equal(mode(join(cacheFolder, sha512(B))), '600', `umask ${umask.toString(8)}: its cache-folder copy`);
      const copied = await fetchAssets({ manifestPath: manifest, urls: [], cacheFolder, dest: join(root, `copy-${umask}`) });
      t.equal(copied.files[0]!.source, 'cache');
      t.equal(mode(join(root, `copy-${umask}`, 'b.txt')), '600', `umask ${umask.toString(8)}: the file copied from the cache folder`);
    } finally {
      process.umask(previous);
    }
  }
});

t.test('up to 10 redirects are followed, as urllib (tooltool\'s client) follows them; the 11th fails the URL', async (t) => {
  const root = t.testdir({});
  const manifest = join(root, 'manifest.tt');
  await writeFile(manifest, formatManifest([record('a.bin', A)]));
  // /hops/N/<algo>/<hex> redirects N times (down to /hops/0/…), then serves the blob
  const server = createServer((req, res) => {
    const m = /^\/hops\/(\d+)\/(.*)$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    const left = Number(m[1]);
    if (left > 0) return void res.writeHead(302, { location: `/hops/${left - 1}/${m[2]!}` }).end();
    res.writeHead(200, { 'content-length': A.length }).end(A);
  });
  const url = await serveOnLoopback(t, server);
  const ten = await fetchAssets({ manifestPath: manifest, urls: [`${url}/hops/10/`], dest: join(root, 'ten') });
  t.equal(ten.failed, 0, ten.files[0]!.error?.message ?? '10 redirects: fetched');
  const eleven = await fetchAssets({ manifestPath: manifest, urls: [`${url}/hops/11/`], dest: join(root, 'eleven') });
  t.equal(eleven.failed, 1, '11 redirects: that URL fails');
});

t.test('messages never show a password in a URL nor the query string of a redirect target (a signature)', async (t) => {
  const { root, manifest } = await originWith(t, [[record('a.bin', A), A]]);
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/redirect/')) res.writeHead(302, { location: '/signed?X-Amz-Signature=SECRETSIG' }).end();
    else res.writeHead(403).end();
  });
  const { port } = new URL(await serveOnLoopback(t, server));
  const res = await fetchAssets({ manifestPath: manifest, urls: [`http://alice:hunter2@127.0.0.1:${port}`, `http://127.0.0.1:${port}/redirect`], dest: join(root, 'dest') });
  t.equal(res.failed, 1);
  const shown = JSON.stringify(res);
  t.match(shown, /GET http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:\d+\/sha512\/\w+: HTTP 403/, 'the URL with its credentials hidden');
  t.match(shown, /GET http:\/\/127\.0\.0\.1:\d+\/signed\?…: HTTP 403/, 'the redirect target without its query');
  t.notMatch(shown, /hunter2|SECRETSIG/);
});

t.test('the URL a file came from is reported with its credentials hidden (it is printed, and goes to the runner)', async (t) => {
  const { root, origin, manifest } = await originWith(t, [[record('a.bin', A), A]]);
  const base = origin.url.replace('http://', 'http://alice:hunter2@');
  const res = await fetchAssets({ manifestPath: manifest, urls: [base], dest: join(root, 'dest') });
  t.equal(res.failed, 0);
  t.equal(res.files[0]!.url, `${origin.url.replace('http://', 'http://***:***@')}/`);
  t.notMatch(JSON.stringify(res), /hunter2/);
});

t.test('a file no URL serves names each URL\'s reason once, quoted: one holding "; " reads as one reason', async (t) => {
  const server = new BlobServer(); // holds nothing: every URL answers 404
  const url = await server.start();
  t.teardown(() => server.stop());
  const dir = t.testdir();
  const manifest = join(dir, 'manifest.tt');
  await writeFile(manifest, formatManifest([record('missing.bin', C)]));
  // tooltool appends the region to the URL as given: a reason naming the URL holds its "; "
  const res = await fetchAssets({ manifestPath: manifest, urls: [`${url}/a/`, `${url}/b/`], region: 'eu; west', dest: join(dir, 'dest') });
  const message = res.files[0]!.error?.message ?? '';
  const list = /^missing\.bin: every URL failed: (.*)$/s.exec(message)?.[1];
  const reasons = list === undefined ? undefined : readQuotedList(list);
  t.equal(reasons?.length, 2, `one reason per URL: ${message}`);
  t.match(reasons?.[0], /^GET http:\/\/127\.0\.0\.1:\d+\/a\/.*\?region=eu; west: HTTP 404$/, 'the first URL\'s reason whole, its "; " included');
});
