// push's gzip in a worker thread (src/project-upload/gzip-thread.ts): what it writes
// gunzips to the input and has the digest and size it reports; a missing input is an error
// with its code; an abort stops it.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { gzipFileInThread } from '../../src/project-upload/gzip-thread.js';

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
