// DiskStore.adoptUnreported, the primary's walk of the shards after a worker died: the
// complete bodies the index lacks are indexed (what the dead worker committed and had not
// reported yet), nothing else is; the dead worker's temp files go, and the claims linked
// to them, never a live worker's. Two walks at once adopt each body once; bodies the walk's
// own adoptions evict are not adopted again. The files are written here as the workers
// would leave them.
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { pino } from 'pino';
import { DiskStore, casId, httpId, type EntryMeta } from '../../src/cache/disk-store.js';
import { eventually } from '../helpers/wait.js';

const silent = pino({ level: 'silent' });
const dead = 'deadbeef0001';
const live = 'cafe00000002';

/** Writes `body` at `file` (its directory made), with `mode`. */
function put(file: string, body: string, mode = 0o644): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, body, { mode });
  return file;
}

t.test('adoptUnreported indexes the complete bodies the index lacks, nothing else, and removes only the dead worker\'s temp files and claims', async (t) => {
  const dir = t.testdir();
  const store = new DiskStore(dir, 1e9, silent);
  await store.open();
  const at = (id: string): string => path.join(dir, id);
  const meta = (key: string, size: number): EntryMeta => ({ key, status: 200, headers: { etag: '"v1"' }, size, storedAt: Date.now() });

  // already indexed: committed through this store
  const known = httpId('GET /artifacts/r/j/known');
  store.commitSmall(known, Buffer.from('known'), meta('GET /artifacts/r/j/known', 5));
  const before = { count: store.count, bytes: store.bytes };

  // committed by the dead worker, never reported: a /cas blob, an http body and its sidecar
  const blob = casId({ algo: 'sha256', hex: 'a1'.repeat(32) });
  put(at(blob), 'a blob body');
  const page = httpId('GET /artifacts/r/j/page');
  put(at(page), 'a page');
  // (a sidecar of more blocks than one: its size counts, not a block taken for it)
  put(`${at(page)}.json`, JSON.stringify({ ...meta('GET /artifacts/r/j/page', 6), headers: { etag: '"v1"', 'x-large': 'x'.repeat(256 * 1024) } }));
  // not bodies: a live worker's claim under a blob's own name (no permission bits yet), an http body without its sidecar
  const claimed = casId({ algo: 'sha256', hex: 'b2'.repeat(32) });
  put(at(claimed), '', 0o000);
  const orphan = httpId('GET /artifacts/r/j/orphan');
  put(at(orphan), 'no sidecar');

  // the dead worker's temp files, in tmp/ and in a shard; a live worker's beside them
  const deadTmp = put(path.join(dir, 'tmp', `${dead}-1`), 'half');
  const liveTmp = put(path.join(dir, 'tmp', `${live}-1`), 'half');
  const shard = path.dirname(at(page));
  const deadSmall = put(path.join(shard, `.tmp-${dead}-2`), 'half a small commit');
  // a dead fill's claim with its owner link (FillClaim.owner): both go
  const deadClaim = put(path.join(shard, '.tmp-fill-dead'), 'half a body');
  const deadLink = path.join(shard, `.tmp-${dead}-3-.tmp-fill-dead`);
  linkSync(deadClaim, deadLink);
  // a link of the dead worker's to a claim name another fill holds now (another file): the claim stays
  const reclaimed = put(path.join(shard, '.tmp-fill-again'), 'a live fill');
  const staleLink = put(path.join(shard, `.tmp-${dead}-4-.tmp-fill-again`), 'the dead fill\'s bytes');
  // a live worker's claim and its link
  const liveClaim = put(path.join(shard, '.tmp-fill-live'), 'a live fill');
  const liveLink = path.join(shard, `.tmp-${live}-5-.tmp-fill-live`);
  linkSync(liveClaim, liveLink);

  t.equal(await store.adoptUnreported(dead), 2, 'the blob and the page adopted');
  t.equal(store.count, before.count + 2, 'counted once each, the known entry not again');
  t.ok(store.bytes > before.bytes, 'their bytes counted');
  t.equal(await store.adoptUnreported(dead), 0, 'a second walk adopts nothing');

  for (const file of [deadTmp, deadSmall, deadClaim, deadLink, staleLink]) t.notOk(existsSync(file), `${path.basename(file)}: removed`);
  for (const file of [liveTmp, reclaimed, liveClaim, liveLink, at(claimed)]) t.ok(existsSync(file), `${path.basename(file)}: kept`);

  // What a store opened on the same files counts (its open indexes every complete body): the same.
  const reopened = new DiskStore(dir, 1e9, silent);
  await reopened.open();
  t.same({ count: reopened.count, bytes: reopened.bytes }, { count: store.count, bytes: store.bytes }, 'the index holds what a fresh open finds');
});

t.test('a second walk started during a first (two workers died one after the other) over the same unreported bodies: each body adopted by one walk, counted once', async (t) => {
  const dir = t.testdir();
  const store = new DiskStore(dir, 1e9, silent);
  await store.open();
  // All in one shard, gone through one stat at a time: the second walk passes over what the
  // first adopted without waiting, catches up with it, and meets bodies the first is stat()ing.
  const blobs = Array.from({ length: 256 }, (_, i) => casId({ algo: 'sha256', hex: `ab${createHash('sha256').update(String(i)).digest('hex').slice(2)}` }));
  for (const id of blobs) put(path.join(dir, id), `body ${id}`);
  const first = store.adoptUnreported(dead);
  for (let turns = 0; store.count === 0 && turns < 100_000; turns++) await new Promise(setImmediate);
  const second = store.adoptUnreported(live);
  const walks = await Promise.all([first, second]);
  t.equal(walks[0] + walks[1], blobs.length, `adopted ${walks.join(' + ')}: once each`);
  t.equal(store.count, blobs.length, 'all indexed');
});

t.test('indexed bodies that the walk\'s own adoptions evict (the budget is full) are not adopted again, being unlinked or gone', async (t) => {
  const dir = t.testdir();
  const blob = (i: number): string => casId({ algo: 'sha256', hex: `cd${createHash('sha256').update(`evicted ${i}`).digest('hex').slice(2)}` });
  const data = path.join(dir, 'data');
  const probe = new DiskStore(path.join(dir, 'probe'), 1e9, silent);
  await probe.open();
  const ids = Array.from({ length: 16 }, (_, i) => blob(i));
  const size = (id: string): number => Buffer.byteLength(`body ${id}`);
  const budget = ids.slice(0, ids.length / 2).reduce((sum, id) => sum + probe.footprint(id, size(id), undefined), 0);
  const store = new DiskStore(data, budget, silent);
  await store.open();
  for (const id of ids) put(path.join(data, id), `body ${id}`);
  // The walk goes through the shard in readdir's order: the first half listed is unreported,
  // the second half indexed, filling the budget, the first listed of them the most recently
  // used. Each adoption evicts one, the last listed first; the walk meets the first listed
  // just after evicting it (its unlink under way), the others once unlinked.
  const shard = path.dirname(path.join(data, ids[0]!));
  const listed = readdirSync(shard).map((n) => path.relative(data, path.join(shard, n)));
  const unreported = listed.slice(0, listed.length / 2);
  const indexed = listed.slice(listed.length / 2);
  for (const id of indexed.toReversed()) store.adopt(id, size(id), Date.now());
  t.equal(store.count, indexed.length, 'the budget holds the indexed half');

  t.equal(await store.adoptUnreported(dead), unreported.length, 'the unreported half adopted');
  t.equal(store.count, unreported.length, 'and only it: the evicted ones not again');
  await eventually('the evicted bodies unlinked', () => indexed.every((id) => !existsSync(path.join(data, id))), 5000);
  const reopened = new DiskStore(data, budget, silent);
  await reopened.open();
  t.same({ count: reopened.count, bytes: reopened.bytes }, { count: store.count, bytes: store.bytes }, 'the index holds what a fresh open finds');
});
