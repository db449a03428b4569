// DiskStore.adoptUnreported, the primary's walk of the shards after a worker died: the
// complete bodies the index lacks are indexed (what the dead worker committed and had not
// reported yet), nothing else is; the dead worker's temp files go, and the claims linked
// to them, never a live worker's. The files are written here as the workers would leave them.
import { existsSync, linkSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { pino } from 'pino';
import { DiskStore, casId, httpId, type EntryMeta } from '../../src/cache/disk-store.js';

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
