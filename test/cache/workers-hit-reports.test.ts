// `fleetcache cache --workers 2`: a worker tells the primary of its hits, which orders the
// primary's LRU index. A lookup that finds an entry in the index, or on disk, and then takes
// it for a miss (its sidecar names another body: a crash between the two renames of a
// replacement) is no hit: reported, it made the entry the most recently used, and a pair
// that no worker serves outlived the entries that do serve.
import { existsSync, readFileSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { httpId } from '../../src/cache/disk-store.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { blocksOf, fetchHash } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

const kept = { 'cache-control': 'max-age=600' };

/** Every worker's pending reports (hits, commits) reach the primary before /-/stats answers. */
async function flushReports(url: string): Promise<void> {
  const res = await request(`${url}/-/stats`);
  await res.body.dump();
}

t.test('two workers: a lookup that misses on a damaged pair does not make it the most recently used in the primary', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  for (const name of ['a', 'b', 'c', 'd']) up.objects.set(`/mir/${name}`, { body: Buffer.from(`object ${name}`), headers: { etag: `"${name}"`, ...kept } });
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  const config = path.join(dir, 'cache.yaml');
  writeFileSync(config, `upstream: ${upUrl}\nmirrors:\n  m:\n    url: ${upUrl}/mir/\n`);
  const fileOf = (name: string): string => path.join(data, httpId(`mirror:m:/${name}`));

  // a, b and c stored by a first cache
  const first = await startServerProcess(t, ['cache', '--config', config, '--listen', '127.0.0.1:0', '--data', data], { FLEETCACHE_LOG_LEVEL: 'warn' });
  for (const name of ['a', 'b', 'c']) t.equal((await fetchHash(`${first.url}/mirror/m/${name}`)).xcache, 'MISS');
  await first.stop();
  for (const name of ['a', 'b', 'c']) t.ok(existsSync(fileOf(name)) && existsSync(`${fileOf(name)}.json`), `${name} stored`);
  // The least recently used first at the next start (its index is rebuilt in atime order): a, then b, then c.
  const now = Date.now() / 1000;
  for (const [i, name] of ['a', 'b', 'c'].entries()) utimesSync(fileOf(name), now - 3600 + i * 60, now - 3600);
  // a: a crash between the two renames of a replacement, its sidecar naming a body never renamed into place
  const lost = path.join(dir, 'lost-body');
  writeFileSync(lost, 'object a, version 2');
  const sidecar = JSON.parse(readFileSync(`${fileOf('a')}.json`, 'utf8')) as Record<string, unknown>;
  writeFileSync(`${lost}.json`, JSON.stringify({ ...sidecar, size: statSync(lost).size, ino: statSync(lost).ino }));
  renameSync(`${lost}.json`, `${fileOf('a')}.json`);
  // From now on a's answers are not kept: no commit replaces the pair (which would make it the most recently used rightly).
  up.objects.set('/mir/a', { body: Buffer.from('object a'), headers: { 'cache-control': 'no-store' } });

  // Room for three entries (each a block for its body and one for its sidecar): a fourth evicts the least recently used.
  const maxSize = 3 * (blocksOf(data, 1) + blocksOf(data, statSync(`${fileOf('b')}.json`).size));
  const cache = await startServerProcess(t, ['cache', '--config', config, '--listen', '127.0.0.1:0', '--data', data, '--workers', '2', '--max-size', String(maxSize)], { FLEETCACHE_LOG_LEVEL: 'warn' });
  // a asked of both workers (fresh connections), neither knowing it yet: each finds the pair and misses
  const asked = up.count('/mir/a');
  for (let i = 0; i < 4; i++) {
    const a = await fetchHash(`${cache.url}/mirror/m/a`, {}, { fresh: true });
    t.equal(a.status, 200);
    t.equal(a.xcache, 'MISS', 'the pair is not served');
  }
  t.equal(up.count('/mir/a'), asked + 4, 'every request of a went upstream');
  await flushReports(cache.url);

  // d stored: over the budget, the primary evicts its least recently used entry, a
  t.equal((await fetchHash(`${cache.url}/mirror/m/d`, {}, { fresh: true })).xcache, 'MISS');
  await flushReports(cache.url);
  await eventually('one entry evicted', () => ['a', 'b', 'c'].filter((name) => !existsSync(fileOf(name))).length === 1, 5000);
  t.notOk(existsSync(fileOf('a')), 'a, the least recently used (its lookups were misses), was evicted');
  t.ok(existsSync(fileOf('b')) && existsSync(fileOf('c')), 'b and c were kept');
  t.notMatch(cache.stderr(), /dropping unreadable cache entry/, 'the pair was not taken for damage by the workers');
});
