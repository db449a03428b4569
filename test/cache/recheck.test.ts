// A GET of a blob with Cache-Control: no-cache has the stored copy hashed again: one damaged
// on disk since its fill (bit rot) is dropped and fetched anew, small or large. At most once
// a minute per blob, so that no client can make the cache read a large blob whole at will.
import { readFileSync } from 'node:fs';
import path, { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { randomBytes } from 'node:crypto';
import { casId, httpId } from '../../src/cache/disk-store.js';
import { startOrigin } from '../helpers/origin.js';
import { fetchArtifacts } from '../../src/artifacts/download.js';
import { uploadArtifacts } from '../../src/artifacts/upload.js';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';
import { rotInPlace } from '../helpers/bit-rot.js';

async function get(url: string, headers: Record<string, string> = {}): Promise<{ xcache: string; body: Buffer }> {
  const res = await request(url, { headers });
  return { xcache: String(res.headers['x-cache']), body: Buffer.from(await res.body.arrayBuffer()) };
}

/** A cache in front of an upstream with one blob of `size` bytes: the blob's URL, its file on disk, and how to damage it there. */
async function oneBlob(t: Test, size: number) {
  const { up, upUrl } = await startUpstream(t);
  const dir = t.testdir();
  const { app, url } = await startCache(t, { upstream: upUrl }, dir);
  const { hex, body } = up.addBlob(size);
  const file = path.join(dir, casId({ algo: 'sha256', hex }));
  const damage = (at: number): void => void rotInPlace(file, at);
  return { up, app, hex, body, file, damage, blob: `${url}/cas/sha256/${hex}` };
}

t.test('no-cache re-hashes a stored blob: a damaged copy is fetched anew, once a minute at most', async (t) => {
  const { up, app, hex, body, file, damage: damageAt, blob } = await oneBlob(t, 200_000);
  const damage = (): void => damageAt(1000);
  t.equal((await get(blob)).xcache, 'MISS');
  await app.cache.fills.drain();
  damage();
  t.equal((await get(blob)).xcache, 'HIT', 'a plain GET is served from disk, unchecked');
  const checked = await get(blob, { 'cache-control': 'no-cache' });
  t.equal(checked.xcache, 'MISS', 'no-cache: the damaged copy is dropped and fetched again');
  t.ok(checked.body.equals(body), 'the right bytes');
  await app.cache.fills.drain();
  t.ok(readFileSync(file).equals(body), 'a good copy on disk again');
  t.equal(up.count(`/cas/sha256/${hex}`), 2);

  damage();
  t.equal((await get(blob, { pragma: 'no-cache' })).xcache, 'HIT', 'hashed a moment ago: not again within the minute');
  t.equal(up.count(`/cas/sha256/${hex}`), 2);
});

t.test('no-cache requests that come while a copy is hashed wait for that hash', async (t) => {
  const size = 32 * 1024 * 1024;
  const { app, body, damage, blob } = await oneBlob(t, size);
  await get(blob);
  await app.cache.fills.drain();
  damage(size - 1);
  const both = await Promise.all([get(blob, { 'cache-control': 'no-cache' }), get(blob, { 'cache-control': 'no-cache' })]);
  t.ok(both.every((r) => r.body.equals(body)), 'neither got the damaged copy');
});

t.test("no-cache re-hashes a stored name against its ETag (the digest of its bytes): a damaged copy, which every 304 confirms, is fetched anew", async (t) => {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const { app, url } = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  // a name with a type of its own has a hash of it in its ETag besides the digest (name-etag.ts)
  for (const [name, headers] of [['art.bin', {}], ['typed.bin', { 'content-type': 'application/x-typed' }]] as const) {
    const body = randomBytes(300_000);
    const put = await request(`${origin.url}/artifacts/run1/job1/${name}`, { method: 'PUT', body, headers: { authorization: `Bearer ${origin.token}`, ...headers } });
    await put.body.dump();
    const artifact = `${url}/artifacts/run1/job1/${name}`;
    t.equal((await get(artifact)).xcache, 'MISS');
    await app.cache.fills.drain();
    const file = path.join(dir, 'cache', httpId(`GET /artifacts/run1/job1/${name}`));
    rotInPlace(file, 1000);
    const unchecked = await get(artifact);
    t.equal(unchecked.xcache, 'HIT', 'revalidated (304) and served from disk');
    t.notOk(unchecked.body.equals(body), 'the damaged copy: a 304 compares ETags, not bytes');
    const checked = await get(artifact, { 'cache-control': 'no-cache' });
    t.equal(checked.xcache, 'MISS', `${name}: no-cache: the copy is hashed, dropped and fetched again`);
    t.ok(checked.body.equals(body), 'the right bytes');
    await app.cache.fills.drain();
    t.ok(readFileSync(file).equals(body), 'a good copy on disk again');
  }
});

t.test('fetching artifacts through a cache whose copy is damaged: the file is asked for again with no-cache, and arrives whole', async (t) => {
  const dir = t.testdir({ task: { 'log.bin': randomBytes(300_000) } });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const { app, url } = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  await uploadArtifacts({ url: origin.url, token: origin.token, run: 'run1', job: 'job1', cwd: join(dir, 'task'), paths: ['log.bin'] });
  await fetchArtifacts({ from: url, run: 'run1', job: 'job1', dest: join(dir, 'first') });
  await app.cache.fills.drain();
  const file = join(dir, 'cache', httpId('GET /artifacts/run1/job1/log.bin'));
  rotInPlace(file, 1000);
  await fetchArtifacts({ from: url, run: 'run1', job: 'job1', dest: join(dir, 'second') });
  t.ok(readFileSync(join(dir, 'second', 'job1', 'log.bin')).equals(readFileSync(join(dir, 'task', 'log.bin'))), 'the right bytes');
});
