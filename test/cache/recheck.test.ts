// A GET of a blob with Cache-Control: no-cache has the stored copy hashed again: one damaged
// on disk since its fill (bit rot) is dropped and fetched anew, small or large. At most once
// a minute per blob, so that no client can make the cache read a large blob whole at will.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { casId } from '../../src/cache/disk-store.js';
import { startCache } from './harness.js';
import { UpstreamFixture } from './upstream-fixture.js';

async function get(url: string, headers: Record<string, string> = {}): Promise<{ xcache: string; body: Buffer }> {
  const res = await request(url, { headers });
  return { xcache: String(res.headers['x-cache']), body: Buffer.from(await res.body.arrayBuffer()) };
}

/** A cache in front of an upstream with one blob of `size` bytes: the blob's URL, its file on disk, and how to damage it there. */
async function oneBlob(t: Test, size: number) {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  const dir = t.testdir();
  const { app, url } = await startCache(t, { upstream: upUrl }, dir);
  const { hex, body } = up.addBlob(size);
  const file = path.join(dir, casId({ algo: 'sha256', hex }));
  const damage = (at: number): void => {
    const bytes = readFileSync(file);
    bytes[at]! ^= 0xff;
    writeFileSync(file, bytes);
  };
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
