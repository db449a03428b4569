// The local base cache of push: a cached base is only used when it still hashes to what it
// was, and several pushes may share one cache at the same time.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Test } from 'tap';
import { packToFile } from '../../src/pack/packer.js';
import { pullProject } from '../../src/project-upload/pull.js';
import { baseCachePath } from '../../src/project-upload/base-cache.js';
import { pushProject } from '../../src/project-upload/push.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { describeTree } from '../helpers/tree.js';

async function setup(t: Test) {
  const dir = t.testdir();
  const { url } = await startOrigin(t, { dataDir: join(dir, 'origin-data') });
  const project = join(dir, 'project');
  mkdirSync(join(project, 'src'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(project, 'src', `m${i}.txt`), Array.from({ length: 500 }, (_, j) => `line ${i} ${j} ${(i * j) % 13}\n`).join(''));
  writeFileSync(join(project, 'blob.bin'), randomBytes(256 << 10));
  const baseCache = join(dir, 'bases');
  return { dir, url, project, baseCache, common: { dir: project, project: 'p', origin: url, token: TEST_TOKEN, baseCache } };
}

t.test('the base cache a push makes is its user\'s alone (the project\'s tars, files only their owner reads included)', async (t) => {
  const { dir, common } = await setup(t);
  // as ~/.cache/fleetcache/bases on a first push, ~/.cache missing too
  const baseCache = join(dir, 'home', '.cache', 'fleetcache', 'bases');
  await pushProject({ ...common, baseCache, run: 'r1' });
  t.ok(readdirSync(baseCache).some((f) => f.endsWith('.tar')), 'the project tar is cached');
  for (const d of [baseCache, join(dir, 'home', '.cache', 'fleetcache'), join(dir, 'home', '.cache')]) t.equal(statSync(d).mode & 0o777, 0o700, `${d.slice(dir.length)} made 0700`);
});

t.test('a damaged cached base is fetched again, not used', async (t) => {
  const { dir, url, project, baseCache, common } = await setup(t);
  const first = await pushProject({ ...common, run: 'r1' });
  const cached = baseCachePath(baseCache, first.manifest.base.digest);
  // the cached file ends up with other bytes (here those of the next run: a delta against
  // them is nearly empty, and useless against the real base)
  writeFileSync(join(project, 'src', 'm3.txt'), 'changed\n');
  await packToFile(project, cached);
  const second = await pushProject({ ...common, run: 'r2' });
  t.ok(second.manifest.delta, 'still a delta');
  t.equal(second.bytesReceived, first.manifest.base.size, 'the base was fetched again');
  const out = join(dir, 'out');
  await pullProject({ project: 'p', run: 'r2', from: url, dir: out });
  t.same(describeTree(out), describeTree(project), 'the run rebuilds');

  // the repaired copy is trusted again
  writeFileSync(join(project, 'src', 'm4.txt'), 'changed too\n');
  const third = await pushProject({ ...common, run: 'r3' });
  t.equal(third.bytesReceived, 0);
});

t.test('a cached base without a recorded digest (older cache, crash) is fetched again', async (t) => {
  const { baseCache, project, common } = await setup(t);
  const first = await pushProject({ ...common, run: 'r1' });
  const cached = baseCachePath(baseCache, first.manifest.base.digest);
  writeFileSync(`${cached}.sha256`, 'garbage\n');
  writeFileSync(join(project, 'src', 'm3.txt'), 'changed\n');
  const second = await pushProject({ ...common, run: 'r2' });
  t.equal(second.bytesReceived, first.manifest.base.size);
  t.same(readdirSync(baseCache).sort(), [`${cached.split('/').pop()}`, `${cached.split('/').pop()}.sha256`], 'no temporary files left');
});

t.test('pushes sharing one base cache fetch the same base at the same time', async (t) => {
  const { dir, url, project, common } = await setup(t);
  // 1 MiB: downloads of several chunks, which the three pushes interleave (4 MiB spent CPU on no more)
  writeFileSync(join(project, 'big.bin'), randomBytes(1 << 20));
  await pushProject({ ...common, run: 'r0' });
  writeFileSync(join(project, 'src', 'm3.txt'), 'changed\n');
  const shared = join(dir, 'shared-cache');
  // level 1: the fetch is what they share, not the encode (level 9 took 1 s more CPU for the three)
  const pushes = await Promise.all(['a', 'b', 'c'].map((run) => pushProject({ ...common, run, baseCache: shared, level: 1 })));
  for (const p of pushes) t.ok(p.manifest.delta, `${p.run}: a delta`);
  t.same(readdirSync(shared).filter((name) => name.includes('partial')), [], 'no temporary files left');
  const out = join(dir, 'out-c');
  await pullProject({ project: 'p', run: 'c', from: url, dir: out });
  t.same(describeTree(out), describeTree(project));
});

/** A project of the same shape as every other made here (same names and sizes: same tar size), its own bytes. */
function projectOfShape(root: string): void {
  mkdirSync(join(root, 'src'), { recursive: true });
  for (let i = 0; i < 4; i++) writeFileSync(join(root, 'src', `m${i}.bin`), randomBytes(64 << 10));
}

/** Sets the mtime (the last use, to the base cache) of `file` to `minutes` ago. */
function usedAgo(file: string, minutes: number): void {
  const then = new Date(Date.now() - minutes * 60_000);
  utimesSync(file, then, then);
}

t.test('the base cache keeps the most recently used bases within its bound, and those in use', async (t) => {
  const { dir, common } = await setup(t);
  const pushOf = (name: string, run: string, baseCacheSize?: number) => {
    const root = join(dir, name);
    if (!existsSync(root)) projectOfShape(root);
    return pushProject({ ...common, dir: root, project: name, run, ...(baseCacheSize ? { baseCacheSize } : {}) });
  };
  const [a, b, c] = [await pushOf('a', 'r1'), await pushOf('b', 'r1'), await pushOf('c', 'r1')];
  const tar = (p: { manifest: { base: { digest: string } } }) => baseCachePath(common.baseCache, p.manifest.base.digest);
  const size = statSync(tar(a)).size;
  t.same([b, c].map((p) => statSync(tar(p)).size), [size, size], 'every tar has the same size');
  // used hours ago, a first
  [a, b, c].forEach((p, i) => usedAgo(tar(p), 180 - 60 * i));
  // a leftover of a push that died, and a fresh one of a push at work; a digest long without its tar
  const stale = join(common.baseCache, `${'0'.repeat(64)}.tar.0123456789ab.partial`);
  const fresh = join(common.baseCache, `${'1'.repeat(64)}.tar.0123456789ab.partial`);
  const orphan = join(common.baseCache, `${'2'.repeat(64)}.tar.sha256`);
  for (const file of [stale, fresh, orphan]) writeFileSync(file, 'x');
  usedAgo(stale, 2 * 24 * 60);
  usedAgo(orphan, 60);

  // a's base is used again (a delta against it), which makes it the most recently used
  writeFileSync(join(dir, 'a', 'src', 'm0.bin'), randomBytes(1024));
  const a2 = await pushOf('a', 'r2');
  t.ok(a2.manifest.delta, 'a delta against the cached base');
  t.ok(statSync(tar(a)).mtimeMs > Date.now() - 60_000, 'its use is on record');
  t.same(a2.pruned, { removed: 0, freedBytes: 0, maxBytes: 10 * 1024 ** 3 }, 'nothing removed under the default bound');
  t.notOk(existsSync(stale), 'a stale temporary file is removed');
  t.ok(existsSync(fresh), 'a fresh one is left to its push');
  t.notOk(existsSync(orphan), 'a digest long without its tar is removed');

  // room for the new base and one more: the most recently used (a's) stays, b's and c's go
  usedAgo(tar(a), 30);
  const d = await pushOf('d', 'r1', 2.5 * size);
  t.same(d.pruned, { removed: 2, freedBytes: 2 * size, maxBytes: 2.5 * size });
  t.same([a, b, c, d].map((p) => existsSync(tar(p))), [true, false, false, true]);
  t.same([b, c].map((p) => existsSync(`${tar(p)}.sha256`)), [false, false], 'their digests went with them');

  // a bound below one base: the push's own base stays, and so does d's, used minutes ago
  // (another push may be about to read it); a's, used half an hour ago, goes
  const e = await pushOf('e', 'r1', 1);
  t.same(e.pruned, { removed: 1, freedBytes: size, maxBytes: 1 });
  t.same([a, d, e].map((p) => existsSync(tar(p))), [false, true, true]);

  // a removed base is fetched again when it is needed
  writeFileSync(join(dir, 'b', 'src', 'm0.bin'), randomBytes(1024));
  const b2 = await pushOf('b', 'r2');
  t.ok(b2.manifest.delta);
  t.equal(b2.bytesReceived, b.manifest.base.size, "b's base came from the origin again");
});

t.test("pruning touches only the base cache's own files, and follows no symlink", async (t) => {
  const { dir, project, common } = await setup(t);
  const outside = join(dir, 'outside.txt');
  writeFileSync(outside, 'not the cache\'s\n');
  usedAgo(outside, 5 * 24 * 60);
  mkdirSync(common.baseCache, { recursive: true });
  const foreign = ['2024.tar', 'cafe.tar', 'notes.partial', 'mylist.tar.sha256', 'README'];
  for (const name of foreign) {
    writeFileSync(join(common.baseCache, name), 'a user file\n');
    usedAgo(join(common.baseCache, name), 5 * 24 * 60);
  }
  const hex = 'a'.repeat(64);
  const links = [`${hex}.tar`, `${hex}.tar.0123456789ab.partial`, `${'b'.repeat(64)}.tar.sha256`];
  for (const name of links) symlinkSync(outside, join(common.baseCache, name));
  const pushed = await pushProject({ ...common, dir: project, run: 'r1', baseCacheSize: 1 });
  t.same(pushed.pruned.removed, 0, 'nothing counted as a base');
  const own = basename(baseCachePath(common.baseCache, pushed.manifest.base.digest));
  t.same(readdirSync(common.baseCache).filter((name) => !name.startsWith(own)).sort(), [...foreign, ...links].sort(), 'every foreign file and link is still there');
  t.ok(existsSync(outside), "the links' target too");
});
