// push's gzip in a worker thread (src/project-upload/gzip-thread.ts): what it writes
// gunzips to the input and has the digest and size it reports; a missing input is an error
// with its code; an abort stops it. A tar of one piece starts no thread, and is written the same.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { gzipFile, gzipFileInThread } from '../../src/project-upload/gzip-thread.js';

t.test('writes the gzip of the file and reports its digest and size', async (t) => {
  const dir = t.testdir();
  // compressible and not: 3 MiB, more than one piece
  const input = Buffer.concat([randomBytes(1 << 20), Buffer.alloc(2 << 20, 'spread task\n')]);
  writeFileSync(join(dir, 'in.tar'), input);
  const result = await gzipFileInThread(join(dir, 'in.tar'), join(dir, 'in.tar.gz'));
  const written = readFileSync(join(dir, 'in.tar.gz'));
  t.ok(gunzipSync(written).equals(input), 'gunzips to the input');
  t.same(result, { digest: `sha256:${createHash('sha256').update(written).digest('hex')}`, size: written.length });
  t.ok(written.length < input.length / 2, `compressed (${written.length} bytes)`);
});

t.test('a missing input is an error with its code; an abort stops the thread', async (t) => {
  const dir = t.testdir();
  await t.rejects(gzipFileInThread(join(dir, 'missing.tar'), join(dir, 'out.gz')), { code: 'ENOENT' });
  writeFileSync(join(dir, 'big.tar'), randomBytes(64 << 20));
  const ac = new AbortController();
  const started = Date.now();
  const running = gzipFileInThread(join(dir, 'big.tar'), join(dir, 'big.tar.gz'), ac.signal);
  setTimeout(() => ac.abort(new Error('stopped')), 50);
  await t.rejects(running, { message: 'stopped' });
  t.ok(Date.now() - started < 1000, `stopped within ${Date.now() - started} ms (64 MiB of random bytes take seconds to compress)`);
  await t.rejects(gzipFileInThread(join(dir, 'big.tar'), join(dir, 'x.gz'), ac.signal), { message: 'stopped' }, 'an aborted signal: nothing started');
});

/** The worker threads this process starts while the test runs (Node's 'worker' event). */
function workersStarted(t: Test): { count: number } {
  const started = { count: 0 };
  const count = (): void => void started.count++;
  process.on('worker', count);
  t.teardown(() => process.off('worker', count));
  return started;
}

t.test('a tar of one piece is compressed in this thread, to the bytes the thread writes; a larger one in a thread', async (t) => {
  const dir = t.testdir();
  const small = Buffer.concat([randomBytes(324 << 10), Buffer.alloc(700 << 10, 'spread task\n')]);
  t.equal(small.length, 1 << 20, 'one piece');
  writeFileSync(join(dir, 'small.tar'), small);
  const threaded = await gzipFileInThread(join(dir, 'small.tar'), join(dir, 'threaded.gz'));
  const workers = workersStarted(t);
  const here = await gzipFile(join(dir, 'small.tar'), join(dir, 'here.gz'), small.length);
  t.equal(workers.count, 0, 'no thread started');
  t.same(here, threaded, 'the digest and size the thread reports');
  t.ok(readFileSync(join(dir, 'here.gz')).equals(readFileSync(join(dir, 'threaded.gz'))), 'the bytes the thread writes');
  writeFileSync(join(dir, 'larger.tar'), Buffer.concat([small, Buffer.from('x')]));
  const larger = await gzipFile(join(dir, 'larger.tar'), join(dir, 'larger.gz'), small.length + 1);
  t.equal(workers.count, 1, 'a thread for a tar past one piece');
  t.ok(gunzipSync(readFileSync(join(dir, 'larger.gz'))).equals(readFileSync(join(dir, 'larger.tar'))), 'which gunzips to it');
  t.equal(larger.size, readFileSync(join(dir, 'larger.gz')).length);
});

t.test("in this thread, a missing input is an error with its code; an abort rejects with the signal's reason", async (t) => {
  const dir = t.testdir();
  await t.rejects(gzipFile(join(dir, 'missing.tar'), join(dir, 'out.gz'), 10), { code: 'ENOENT' });
  writeFileSync(join(dir, 'small.tar'), 'spread task\n');
  const ac = new AbortController();
  ac.abort(new Error('stopped'));
  await t.rejects(gzipFile(join(dir, 'small.tar'), join(dir, 'small.gz'), 12, ac.signal), { message: 'stopped' }, 'an aborted signal');
  const later = new AbortController();
  const running = gzipFile(join(dir, 'small.tar'), join(dir, 'small.gz'), 12, later.signal);
  later.abort(new Error('stopped meanwhile'));
  await t.rejects(running, { message: 'stopped meanwhile' }, 'aborted while it runs');
});
