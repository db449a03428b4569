// What a client may rely on once it has a fill's whole answer: the fill's upstream bytes
// are in /-/stats, and a name or mirror object is stored (a request right after, one that
// must revalidate, finds the entry and asks upstream conditionally, then keeps the answer).
import t from 'tap';
import { request } from 'undici';
import { fetchHash, startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

async function bytesUpstream(url: string): Promise<number> {
  const s = (await (await request(`${url}/-/stats`)).body.json()) as { total: { bytesUpstream: number } };
  return s.total.bytesUpstream;
}

t.test('a fill\'s upstream bytes are counted before its client has the whole body', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  let expected = 0;
  for (let i = 0; i < 5; i++) {
    const size = 2 * 1024 * 1024 + i;
    const { hex } = up.addBlob(size);
    t.equal((await fetchHash(`${url}/cas/sha256/${hex}`)).hash, hex);
    expected += size;
    t.equal(await bytesUpstream(url), expected, `blob ${i + 1}: counted as the body ended`);
  }
});

t.test('a mirror object is stored before its client has the whole answer: a no-cache request right after revalidates it', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: `${upUrl}/mir/` } } }, t.testdir());
  for (let i = 0; i < 5; i++) {
    const path = `/mir/o${i}`;
    up.objects.set(path, { body: Buffer.alloc(300_000, i), headers: { etag: '"v1"', 'cache-control': 'max-age=60' } });
    t.equal((await fetchHash(`${url}/mirror/m/o${i}`)).xcache, 'MISS');
    up.objects.set(path, { body: Buffer.alloc(400_000, i + 1), headers: { etag: '"v2"', 'cache-control': 'max-age=60' } });
    const anew = await fetchHash(`${url}/mirror/m/o${i}`, { 'cache-control': 'no-cache' });
    const asked = up.requests.filter((r) => r.url === path);
    t.same([anew.etag, anew.size], ['"v2"', 400_000], `o${i}: the no-cache request gets the new version`);
    t.equal(asked[1]?.headers['if-none-match'], '"v1"', `o${i}: asked with the stored version's validator`);
    const next = await fetchHash(`${url}/mirror/m/o${i}`);
    t.same([next.etag, next.xcache, up.count(path)], ['"v2"', 'HIT', 2], `o${i}: the new version is kept`);
  }
});
