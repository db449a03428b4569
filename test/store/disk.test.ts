import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DiskBlobStore } from '../../src/store/disk.js';
import { putAbortedAfter, storeTests } from './conformance.js';
import { runCli } from '../helpers/cli.js';

storeTests(t, async (t) => {
  const store = new DiskBlobStore(t.testdir());
  await store.open();
  return store;
});

t.test('open removes leftover temporary files and keeps committed objects', async (t) => {
  const dir = t.testdir();
  const first = new DiskBlobStore(dir);
  await first.open();
  const res = await first.put(Readable.from([randomBytes(1000)]));
  // A crash mid-write leaves a temp file behind: it must never be served and is cleaned at start.
  await mkdir(join(dir, 'tmp'), { recursive: true });
  await writeFile(join(dir, 'tmp', 'crashed-upload'), randomBytes(500));
  const second = new DiskBlobStore(dir);
  await second.open();
  t.same(await readdir(join(dir, 'tmp')), []);
  t.ok(await second.has(res.digest));
});

t.test('an aborted put leaves no temporary file', async (t) => {
  const dir = t.testdir();
  const store = new DiskBlobStore(dir);
  await store.open();
  await putAbortedAfter(t, store, 20);
  t.same(await readdir(join(dir, 'tmp')), []);
});

t.test('has: a blob path that cannot be looked at is an error, not an absence (only ENOENT/ENOTDIR are)', async (t) => {
  const store = new DiskBlobStore(t.testdir());
  await store.open();
  const d = { algo: 'sha256' as const, hex: 'cd'.repeat(32) };
  t.equal(await store.has(d), false, 'absent');
  await mkdir(join(store.pathOf(d), '..'), { recursive: true });
  // root reads any mode: a link to itself fails the lookup (ELOOP) as EACCES or EIO would
  await symlink(store.pathOf(d), store.pathOf(d));
  await t.rejects(store.has(d), { code: 'ELOOP' });
});

t.test('list, and so verify --remove, leaves alone the files in the store that are not blobs', async (t) => {
  const dir = t.testdir();
  const store = new DiskBlobStore(dir);
  await store.open();
  const blob = await store.put(Readable.from([randomBytes(1000)]));
  const shard = join(store.pathOf(blob.digest), '..');
  const wrongShard = (blob.digest.hex.startsWith('00') ? 'ff' : '00') + blob.digest.hex.slice(2);
  // what an operator or an editor may leave beside the blobs: none is a blob at its own path
  const strays = [
    join(shard, 'NOTES.txt'),
    join(shard, `${blob.digest.hex}.swp`),
    join(shard, blob.digest.hex.toUpperCase()),
    join(shard, blob.digest.hex.slice(0, 40)),
    join(shard, wrongShard),
    // a copy in a shard its name only starts with (list would give its size and age for the blob's)
    join(shard, '..', blob.digest.hex.slice(0, 1), blob.digest.hex),
    join(shard, '..', blob.digest.hex.slice(0, 3), blob.digest.hex),
    join(dir, 'cas.v1', 'sha512', blob.digest.hex.slice(0, 2), blob.digest.hex),
  ];
  for (const stray of strays) {
    await mkdir(join(stray, '..'), { recursive: true });
    await writeFile(stray, 'kept by hand\n');
  }
  const listed: string[] = [];
  for await (const b of store.list()) listed.push(`${b.digest.algo}:${b.digest.hex}`);
  t.same(listed, [`sha256:${blob.digest.hex}`], 'only the blob is listed');

  const verify = await runCli(['verify', '--data', dir, '--remove']);
  t.equal(verify.code, 0, verify.stderr);
  t.match(verify.stdout, /^checked 1 blobs, 1000 bytes: 0 damaged, 0 removed\n$/);
  for (const stray of strays) t.ok(existsSync(stray), `${stray} is still there`);
  t.ok(await store.has(blob.digest));
});
