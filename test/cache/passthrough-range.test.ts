// A Range request the cache passes through (an object larger than the cache, a disk that
// refuses writes) gets its 206 from upstream, as from a stored copy: the passthrough sent
// upstream no Range, and the client got the whole object (200), which `curl -C -` refuses
// to resume with. Against a real origin, which answers ranges.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { mountTmpfs } from '../helpers/tmpfs.js';
import { startCache } from './harness.js';

const MiB = 1024 * 1024;

async function ranged(url: string, headers: Record<string, string>) {
  const res = await request(url, { headers });
  return { status: res.statusCode, range: res.headers['content-range'], xcache: res.headers['x-cache'], body: Buffer.from(await res.body.arrayBuffer()) };
}

t.test('an object larger than the cache: a range of it is a 206 of those bytes', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} }); // one call: a second would wipe the first's
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const blob = randomBytes(3 * MiB);
  const hex = await uploadBlob(origin.url, blob);
  const { app, url } = await startCache(t, { upstream: origin.url, maxSize: '1MiB' }, join(dir, 'cache'));
  const part = await ranged(`${url}/cas/sha256/${hex}`, { range: 'bytes=1000-1999' });
  t.same([part.status, part.range, part.xcache], [206, `bytes 1000-1999/${blob.length}`, 'MISS']);
  t.ok(part.body.equals(blob.subarray(1000, 2000)), 'its bytes');
  await app.cache.fills.drain();
  t.equal(app.cache.metrics.stats().kinds.cas!.bytesUpstream, 1000, 'only those from upstream: the object, never kept, was not fetched whole');
  const stale = await ranged(`${url}/cas/sha256/${hex}`, { range: 'bytes=1000-1999', 'if-range': '"sha256:0000"' });
  t.same([stale.status, stale.body.length], [200, blob.length], 'an If-Range that does not hold: the whole object');
  t.equal(createHash('sha256').update(stale.body).digest('hex'), hex);
});

const isRoot = process.getuid?.() === 0;
t.test('a disk that refuses the fill: the range is asked for instead of the whole answer in hand', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('8m', 'range');
  const origin = await startOrigin(t);
  const blob = randomBytes(16 * MiB); // twice the disk
  const hex = await uploadBlob(origin.url, blob);
  const { url } = await startCache(t, { upstream: origin.url, maxSize: '1GiB' }, join(dir, 'data'));
  t.teardown(unmount); // after the cache's teardown (tap runs them last first)
  writeFileSync(join(dir, 'filler'), Buffer.alloc(6 * MiB));
  const part = await ranged(`${url}/cas/sha256/${hex}`, { range: `bytes=${10 * MiB}-` });
  t.same([part.status, part.range], [206, `bytes ${10 * MiB}-${blob.length - 1}/${blob.length}`]);
  t.ok(part.body.equals(blob.subarray(10 * MiB)), 'its bytes');
});
