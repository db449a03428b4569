// An http entry's two files (body, and the sidecar naming the body's inode) are replaced by
// a commit in two renames, sidecar first; a revalidation's sidecar update and a lookup
// reading the headers of an entry indexed at start can meet such a commit half-way. Neither
// may drop or overwrite the commit's new sidecar. The commit's two renames are done by hand
// here (another worker's, or this process's own done at once with commitSmall), between the
// other operation's steps.
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { pino } from 'pino';
import { DiskStore, httpId, type EntryMeta } from '../../src/cache/disk-store.js';

const key = 'mirror:m:/dists/Release';
const id = httpId(key);
const meta = (etag: string, size: number, extra: Record<string, string> = {}): EntryMeta => ({ key, status: 200, headers: { etag, ...extra }, size, storedAt: Date.now() });
const sidecarOf = (file: string): EntryMeta & { ino?: number } => JSON.parse(readFileSync(`${file}.json`, 'utf8')) as EntryMeta & { ino?: number };

t.test("a 304's sidecar update meeting another worker's replacement between its renames leaves the replacement's sidecar", async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, id);
  const store = new DiskStore(dir, 1e9, pino({ level: 'silent' }));
  await store.open();
  const v1 = meta('"v1"', 9);
  store.commitSmall(id, Buffer.from('version 1'), v1);
  t.same((await store.lookup(id))?.meta, v1);

  // Another worker's commit of version 2, between its renames: the body still in tmp/, its
  // sidecar (naming that body) in place beside version 1's body.
  const next = path.join(dir, 'tmp', 'version-2');
  writeFileSync(next, 'version 2 (longer)');
  const v2 = meta('"v2"', statSync(next).size);
  writeFileSync(`${next}.json`, JSON.stringify({ ...v2, ino: statSync(next).ino }));
  renameSync(`${next}.json`, `${file}.json`);
  // This process's revalidation of version 1 answered 304.
  await store.updateMeta(id, meta('"v1"', 9, { 'x-revalidated': 'yes' }));
  t.match(sidecarOf(file).headers, { etag: '"v2"' }, "the replacement's sidecar was not written over");
  renameSync(next, file); // the replacement's second rename

  t.equal(sidecarOf(file).ino, statSync(file).ino, 'the sidecar names the body in place');
  const other = new DiskStore(dir, 1e9, pino({ level: 'silent' }));
  await other.open();
  t.same((await other.lookup(id))?.meta, v2, 'which a restart serves as version 2');
});

t.test('a sidecar update with no replacement under way still lands, naming its body', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, id);
  const store = new DiskStore(dir, 1e9, pino({ level: 'silent' }));
  await store.open();
  store.commitSmall(id, Buffer.from('version 1'), meta('"v1"', 9));
  const revalidated = meta('"v1"', 9, { 'x-revalidated': 'yes' });
  await store.updateMeta(id, revalidated);
  t.same(sidecarOf(file), { ...revalidated, ino: statSync(file).ino }, 'the update is in place, naming the body');
  t.same((await store.lookup(id))?.meta, revalidated);
  t.same(readFileSync(file, 'utf8'), 'version 1');
});

t.test('a lookup reading the headers of an entry indexed at start, while a commit of this process replaces it, leaves the new files', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, id);
  const log = pino({ level: 'silent' });
  const before = new DiskStore(dir, 1e9, log);
  await before.open();
  before.commitSmall(id, Buffer.from('version 1'), meta('"v1"', 9));

  const store = new DiskStore(dir, 1e9, log);
  await store.open(); // indexed at start: its headers not read yet
  t.ok(store.has(id));
  const v2 = meta('"v2"', 18);
  // The lookup reads the sidecar and stats the body while the commit renames both: it finds
  // one file of each version (or version 2's sidecar against version 1's size).
  const looking = store.lookup(id);
  store.commitSmall(id, Buffer.from('version 2 (longer)'), v2);
  await looking;
  t.ok(existsSync(`${file}.json`), "the commit's sidecar is still there");
  t.ok(existsSync(file), 'and its body');
  t.same((await store.lookup(id))?.meta, v2, 'served as version 2');
  const restarted = new DiskStore(dir, 1e9, log);
  await restarted.open();
  t.same((await restarted.lookup(id))?.meta, v2, 'after a restart too');
});
