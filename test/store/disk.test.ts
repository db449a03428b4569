import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readdir, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DiskBlobStore } from '../../src/store/disk.js';
import { storeTests } from './conformance.js';

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
  const ac = new AbortController();
  const body = new Readable({ read() {} });
  body.push(randomBytes(10_000));
  const p = store.put(body, { signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await t.rejects(p, { code: 'FC_ERR_ABORTED' });
  t.same(await readdir(join(dir, 'tmp')), []);
});
