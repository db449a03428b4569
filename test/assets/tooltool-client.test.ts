// A client written from shared/tooltool.md §3.1–3.3 (not from tooltool's code): for each
// record, in manifest order, one plain GET of urljoin(base + '/', '<algo>/<digest>') on a
// fresh connection, with exactly the real client's headers, and the body taken as is.
// It must get exactly the bytes, from the origin and through a regional cache.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { buildCacheServer } from '../../src/cache/server.js';
import { DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { formatManifest, parseManifest, type ManifestRecord } from '../../src/assets/manifest.js';
import { uploadAssets } from '../../src/assets/upload.js';
import { fetchAssets } from '../../src/assets/fetch.js';
import { writeFile } from 'node:fs/promises';
import { startOrigin } from '../helpers/origin.js';
import { compress, makeTar, sha512 } from './helpers.js';

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One GET as Python-urllib sends it for tooltool (Connection: close, no keep-alive). */
function tooltoolGet(base: string, record: ManifestRecord, region?: string, authorization?: string): Promise<Answer> {
  const url = new URL(`${record.algorithm}/${record.digest}${region ? `?region=${region}` : ''}`, base.endsWith('/') ? base : `${base}/`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: 'GET',
      agent: false,
      headers: {
        'Accept-Encoding': 'identity',
        Host: url.host,
        'User-Agent': 'Python-urllib/3.11',
        Connection: 'close',
        ...(authorization ? { Authorization: authorization } : {}),
      },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('the spec client gets exactly the bytes from the origin and through the cache', async (t) => {
  const root = t.testdir({ src: {}, origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  // Text-like content compresses well: any gzip on the way would show.
  const files: [string, Buffer][] = [
    ['text.txt', Buffer.from('tooltool '.repeat(20_000))],
    ['random.bin', randomBytes(256 * 1024)],
    ['tool.tar.xz', compress(await makeTar([{ name: 'tool/x', body: 'x' }]), 'xz')],
    ['empty', Buffer.alloc(0)],
  ];
  const records: ManifestRecord[] = files.map(([filename, data]) => ({ filename, size: data.length, algorithm: 'sha512', digest: sha512(data), unpack: false, visibility: 'public' }));
  for (const [name, data] of files) await writeFile(join(root, 'src', name), data);
  const manifest = join(root, 'src', 'manifest.tt');
  await writeFile(manifest, formatManifest(records));
  await uploadAssets({ manifestPath: manifest, origin: origin.url, token: origin.token, dir: join(root, 'src') });

  const cacheUrl = await startCache(t, origin.url, join(root, 'cache'));

  // The client reads the manifest the way tooltool does and fetches in manifest order.
  const { records: parsed } = parseManifest(formatManifest(records), 'manifest.tt');
  for (const [label, base] of [['origin', origin.url], ['cache (cold)', cacheUrl], ['cache (warm)', `${cacheUrl}/`]] as const) {
    for (const [i, r] of parsed.entries()) {
      const answer = await tooltoolGet(base, r, i % 2 ? 'us-east-1' : undefined);
      t.equal(answer.status, 200, `${label}: ${r.filename} 200`);
      t.ok(answer.body.equals(files[i]![1]), `${label}: ${r.filename} exact bytes`);
      t.notOk(answer.headers['content-encoding'], `${label}: ${r.filename} not compressed`);
      t.equal(sha512(answer.body), r.digest);
    }
  }

  // fleetcache's own client through the cache, as the runner will call it.
  const viaCache = await fetchAssets({ manifestPath: manifest, urls: [cacheUrl], dest: join(root, 'dest'), cacheFolder: join(root, 'tt-cache') });
  t.equal(viaCache.failed, 0, 'fetchAssets through the cache');
  t.equal(viaCache.bytesDownloaded, files.reduce((n, [, d]) => n + d.length, 0));

  const unknown: ManifestRecord = { ...records[0]!, digest: sha512('never uploaded') };
  for (const base of [origin.url, cacheUrl]) {
    const answer = await tooltoolGet(base, unknown);
    t.equal(answer.status, 404, `${base}: an unknown digest is 404, not 5xx, so the client tries its next URL`);
  }
});

async function startCache(t: Test, upstream: string, dataDir: string): Promise<string> {
  const cache = await buildCacheServer({ region: 'test', upstream, dataDir, maxSize: 64 * 1024 ** 2, timeouts: DEFAULT_TIMEOUTS, mirrors: new Map(), logLevel: 'silent' });
  await cache.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => cache.close());
  const addr = cache.server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

t.test('internal assets: the spec client needs its Bearer token at the origin and the cache', async (t) => {
  const root = t.testdir({ src: {}, origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  const data = randomBytes(10_000);
  const record: ManifestRecord = { filename: 'internal.bin', size: data.length, algorithm: 'sha512', digest: sha512(data), unpack: false, visibility: 'internal' };
  await writeFile(join(root, 'src', 'internal.bin'), data);
  await writeFile(join(root, 'src', 'manifest.tt'), formatManifest([record]));
  await uploadAssets({ manifestPath: join(root, 'src', 'manifest.tt'), origin: origin.url, token: origin.token, dir: join(root, 'src') });
  t.equal((await tooltoolGet(origin.url, record)).status, 401, 'no token: 401');
  t.equal((await tooltoolGet(origin.url, record, undefined, 'Bearer wrong')).status, 403, 'wrong token: 403');
  const ok = await tooltoolGet(origin.url, record, undefined, `Bearer ${origin.token}`);
  t.equal(ok.status, 200);
  t.ok(ok.body.equals(data));
  const cacheUrl = await startCache(t, origin.url, join(root, 'cache'));
  t.equal((await tooltoolGet(cacheUrl, record)).status, 401, 'cache, no token: 401');
  const viaCache = await tooltoolGet(cacheUrl, record, 'eu', `Bearer ${origin.token}`);
  t.equal(viaCache.status, 200, 'cache, token: 200');
  t.ok(viaCache.body.equals(data));
  t.equal((await tooltoolGet(cacheUrl, record)).status, 401, 'cache, no token, after the fill: still 401');
});

t.test('a malformed digest on the tooltool alias is a 404 at the origin and through the cache, as tooltool\'s server answers; /cas keeps its 400', async (t) => {
  // tooltool's server looks the digest up first, so a malformed one is not found; `mach artifact
  // toolchain` retries a 400 (a proxy's, it says) with a minute's sleep between tries.
  const root = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  const cacheUrl = await startCache(t, origin.url, join(root, 'cache'));
  const good = sha512('any asset');
  const malformed: Array<Pick<ManifestRecord, 'algorithm' | 'digest'>> = [
    { algorithm: 'sha512', digest: good.slice(0, 100) },
    { algorithm: 'sha512', digest: `${good.slice(1)}z` },
    { algorithm: 'sha256', digest: good },
  ];
  for (const base of [origin.url, cacheUrl]) {
    for (const record of malformed) {
      const label = `${base === origin.url ? 'origin' : 'cache'} /${record.algorithm}/${record.digest.slice(-4)} (${record.digest.length} characters)`;
      const answer = await tooltoolGet(base, { filename: 'x', size: null, unpack: false, ...record });
      t.same([answer.status, JSON.parse(answer.body.toString()).code], [404, 'FC_ERR_NOT_FOUND'], `${label}: 404`);
      const cas = await tooltoolGet(`${base}/cas/`, { filename: 'x', size: null, unpack: false, ...record });
      t.same([cas.status, JSON.parse(cas.body.toString()).code], [400, 'FC_ERR_BAD_DIGEST'], `${label} under /cas: 400`);
    }
  }
});
