// purgeCacheFolder (tooltool's purge): oldest modification time first, only the folder's
// own files, stopping as soon as enough is free. The free space is counted here (each
// deleted file frees its size) so that the order and the stop are exact on any filesystem;
// test/assets/tooltool-cli.test.ts checks the real statfs on a tmpfs.
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GIGABYTE, purgeCacheFolder } from '../../src/assets/purge.js';

/** A cache folder: `files` name → [size, mtime in seconds]; plus a sub-directory and a link to a file outside. */
function cacheFolder(dir: string, files: Record<string, [number, number]>): void {
  for (const [name, [size, mtime]] of Object.entries(files)) {
    writeFileSync(join(dir, name), Buffer.alloc(size));
    utimesSync(join(dir, name), mtime, mtime);
  }
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'old'), 'kept');
  utimesSync(join(dir, 'sub', 'old'), 1, 1);
  utimesSync(join(dir, 'sub'), 1, 1);
}

const FILES: Record<string, [number, number]> = { c: [300, 1000], a: [100, 3000], d: [400, 2000], b: [200, 4000] };

t.test('without a size, every file goes, sub-directories stay', async (t) => {
  const dir = t.testdir();
  cacheFolder(dir, FILES);
  const res = await purgeCacheFolder({ folder: dir, freeSpace: () => Promise.reject(new Error('a full purge does not look')) });
  t.same(res.removed.map((f) => f.name), ['c', 'd', 'a', 'b'], 'oldest first');
  t.same(readdirSync(dir), ['sub']);
  t.ok(existsSync(join(dir, 'sub', 'old')));
});

t.test('with a size: oldest first until that much is free, then stop', async (t) => {
  const dir = t.testdir();
  cacheFolder(dir, FILES);
  // Deleting is what frees space here: the sizes of the files gone.
  const freed = () => Object.keys(FILES).filter((n) => !existsSync(join(dir, n))).reduce((sum, n) => sum + FILES[n]![0], 0);
  const res = await purgeCacheFolder({ folder: dir, gigabytes: 1, freeSpace: async () => GIGABYTE - 500 + freed() });
  t.same(res.removed.map((f) => f.name), ['c', 'd'], 'c (300) is not enough, c and d (700) are');
  t.same(readdirSync(dir).sort(), ['a', 'b', 'sub']);
  t.equal(res.freeBefore, GIGABYTE - 500);
  t.equal(res.freeAfter, GIGABYTE + 200);
});

t.test('enough free already: nothing is deleted', async (t) => {
  const dir = t.testdir();
  cacheFolder(dir, FILES);
  const res = await purgeCacheFolder({ folder: dir, gigabytes: 0.5, freeSpace: async () => GIGABYTE });
  t.same(res.removed, []);
  t.equal(readdirSync(dir).length, 5);
});

t.test('a link to a file counts as a file (its target\'s mtime), and only the link goes', async (t) => {
  const root = t.testdir({ cache: {}, 'target.bin': 'outside' });
  utimesSync(join(root, 'target.bin'), 10, 10);
  symlinkSync(join(root, 'target.bin'), join(root, 'cache', 'link'));
  symlinkSync(join(root, 'missing'), join(root, 'cache', 'dangling'));
  const res = await purgeCacheFolder({ folder: join(root, 'cache') });
  t.same(res.removed.map((f) => f.name), ['link']);
  t.ok(existsSync(join(root, 'target.bin')));
  t.same(readdirSync(join(root, 'cache')), ['dangling'], 'a dangling link is no file: left, as tooltool leaves it');
});

t.test('a missing folder is a clear error', async (t) => {
  const dir = t.testdir();
  await t.rejects(purgeCacheFolder({ folder: join(dir, 'nope') }), { code: 'FC_ERR_NOT_FOUND', message: /cache folder .*nope does not exist/ });
});
