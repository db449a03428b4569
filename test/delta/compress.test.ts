// compressDelta's brotli: a fast pass first, the slow one (quality 11 up to 1 MiB, about
// 1 s per MiB; 9 above) only where it can pay; deltaChunks reads what it wrote.
import t from 'tap';
import { createCipheriv, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { compressDelta, QuickSizeCounter } from '../../src/delta/compress.js';
import { compressToBuffer } from '../helpers/delta.js';
import { VCDIFF_HEADER } from '../../src/delta/vcdiff.js';
import { inflateDelta } from './trees.js';

/**
 * A VCDIFF of source lines that compresses: `lines` of them. Quality 11 spends about 1.3 s per
 * MB of it, so where that pass runs the text is small (2,500 lines, 70 KB): what is decided
 * does not depend on the size below the slow pass's 1 MiB bound.
 */
const sourceText = (lines: number): Buffer => Buffer.concat([VCDIFF_HEADER, Buffer.from(Array.from({ length: lines }, (_, i) => `line ${i} of a source file ${i % 7}\n`).join(''))]);

const brotliAt = (bytes: Buffer, quality: number, sizeHint = bytes.length): Buffer =>
  brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: quality, [constants.BROTLI_PARAM_LGWIN]: 24, [constants.BROTLI_PARAM_SIZE_HINT]: sizeHint } });

t.test('a delta that does not compress skips the slow pass; one that does gets it', async (t) => {
  const file = join(t.testdir(), 'delta');
  const random = Buffer.concat([VCDIFF_HEADER, randomBytes(1 << 20)]);
  const out = await compressToBuffer(random, 'brotli');
  t.same(out, brotliAt(random, 5), 'the fast pass, as it is');
  t.same(await inflateDelta(file, out), random);
  const text = sourceText(2_500);
  const slow = await compressToBuffer(text, 'brotli');
  t.same(slow, brotliAt(text, 11), 'quality 11 where it compresses');
  t.same(await inflateDelta(file, slow), text);
});

t.test('a fast pass counted by the caller is not run again: the slow pass alone where the delta compresses, the fast pass alone where it does not', async (t) => {
  const dir = t.testdir();
  const [input, output] = [join(dir, 'vcdiff'), join(dir, 'out')];
  const text = sourceText(2_500);
  const random = Buffer.concat([VCDIFF_HEADER, randomBytes(1 << 20)]);
  for (const [bytes, kept, what] of [[text, 11, 'text'], [random, 5, 'random']] as const) {
    writeFileSync(input, bytes);
    const fastPassSize = brotliAt(bytes, 5).length;
    const expected = brotliAt(bytes, kept);
    t.same(await compressDelta(input, output, 'brotli'), { size: expected.length, passes: what === 'text' ? 2 : 1 }, `${what}: uncounted, the fast pass is run first`);
    t.same(await compressDelta(input, output, 'brotli', fastPassSize), { size: expected.length, passes: 1 }, `${what}: counted, one pass`);
    t.same(readFileSync(output), expected, `${what}: the same bytes as uncounted`);
  }
});

t.test('a delta above 1 MiB gets quality 9 in its slow pass, not 11 (seconds per MiB on the way of a push)', async (t) => {
  const lines = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => `line ${i} of a source file ${(i * 7919) % 1013}\n`).join(''));
  const large = Buffer.concat([VCDIFF_HEADER, lines(60_000)]);
  t.ok(large.length > 1024 * 1024, `${large.length} bytes`);
  const out = await compressToBuffer(large, 'brotli');
  t.same(out, brotliAt(large, 9), 'quality 9');
  t.ok(out.length < brotliAt(large, 5).length, 'smaller than the fast pass');
  t.same(await inflateDelta(join(t.testdir(), 'delta'), out), large);
});

t.test('QuickSizeCounter: the fast pass\'s size of what it was given piece by piece, never more so far than at the end', async (t) => {
  const text = sourceText(20_000);
  // Incompressible but fixed: when brotli's fast pass gives its first bytes depends on the
  // data, and about one random input in 30 gave none before the end (a flaky "as it goes").
  const random = Buffer.concat([VCDIFF_HEADER, createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), Buffer.alloc(16)).update(Buffer.alloc(4 << 20))]);
  for (const [input, what] of [[text, 'text'], [random, 'random']] as const) {
    const expected = { brotli: brotliAt(input, 5, text.length).length, gzip: gzipSync(input, { level: 9 }).length, none: input.length };
    for (const compression of ['brotli', 'gzip', 'none'] as const) {
      const counter = new QuickSizeCounter(compression, text.length);
      const counts: number[] = [];
      for (let at = 0; at < input.length; at += 256 * 1024) {
        await counter.write(input.subarray(at, at + 256 * 1024));
        counts.push(counter.counted);
      }
      const final = await counter.end();
      t.equal(final, expected[compression], `${what}, ${compression}: its fast pass`);
      t.ok(counts.every((c, i) => c <= final && c >= (counts[i - 1] ?? 0)), `${what}, ${compression}: the counts so far grow, up to the final size`);
      if (what === 'random' && compression !== 'none') t.ok(counts[counts.length - 2]! > final / 2, `${what}, ${compression}: counted as it goes (${counts.join(', ')})`);
    }
  }
});

/** `settling`, or a rejection after 5 s: a promise that never settles fails its test, not the whole file's timeout. */
function within5s<T>(settling: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('did not settle within 5 s')), 5000)));
  return Promise.race([settling, late]).finally(() => clearTimeout(timer));
}

t.test('QuickSizeCounter after destroy(): a write or an end, or one pending then, rejects with a FleetError saying the count was given up', async (t) => {
  const givenUp = { code: 'FC_ERR_INTERNAL', message: /size count of a VCDIFF was given up/ };
  const input = Buffer.concat([VCDIFF_HEADER, randomBytes(4 << 20)]);
  for (const compression of ['brotli', 'gzip', 'none'] as const) {
    const after = new QuickSizeCounter(compression, input.length);
    await after.write(input.subarray(0, 1024));
    after.destroy();
    await t.rejects(within5s(after.write(input.subarray(1024, 2048))), givenUp, `${compression}: a write after it`);
    await t.rejects(within5s(after.end()), givenUp, `${compression}: an end after it`);

    const pendingEnd = new QuickSizeCounter(compression, input.length);
    await pendingEnd.write(input);
    const ending = within5s(pendingEnd.end());
    pendingEnd.destroy();
    if (compression === 'none') t.equal(await ending, input.length, 'none: nothing pending, the end was counted at once');
    else await t.rejects(ending, givenUp, `${compression}: an end pending then`);
  }
  // the first write is taken in at once; the second waits behind it
  const pendingWrite = new QuickSizeCounter('brotli', input.length);
  const writes = [pendingWrite.write(input), pendingWrite.write(input)].map(within5s);
  pendingWrite.destroy();
  // Whether the compressor took the first in before destroy() depends on timing: one
  // assertion either way (one only when refused made the file's count vary between runs).
  const first = await writes[0]!.then(() => 'taken in', (err: { code?: string }) => `refused with ${err.code}`);
  t.match(first, /^(taken in|refused with FC_ERR_INTERNAL)$/, 'the first taken in, or refused clearly');
  await t.rejects(writes[1]!, givenUp, 'brotli: a write pending then');
});

t.test('a delta that inflates past the size its manifest states is refused as it inflates', async (t) => {
  const file = join(t.testdir(), 'delta');
  // 16 MiB: the size the check stops at is the point, not the bomb's size (each full inflation below costs ~0.2 s per 16 MiB)
  const zeros = Buffer.concat([VCDIFF_HEADER, Buffer.alloc(16 << 20)]);
  for (const compression of ['gzip', 'brotli'] as const) {
    // quality 5: a bomb as small (~100 bytes) as quality 11's, made in a tenth of a second instead of 4 s
    const bomb = compression === 'gzip' ? gzipSync(zeros) : brotliCompressSync(zeros, { params: { [constants.BROTLI_PARAM_QUALITY]: 5 } });
    t.ok(bomb.length < 1 << 16, `${compression}: ${bomb.length} bytes stand for 16 MiB`);
    await t.rejects(inflateDelta(file, bomb, compression, 1000), { code: 'FC_ERR_SIZE_MISMATCH' }, `${compression}: stopped past 1000 bytes`);
    await t.rejects(inflateDelta(file, bomb, compression, zeros.length + 1), { code: 'FC_ERR_SIZE_MISMATCH', message: `size mismatch: expected ${zeros.length + 1} bytes, got ${zeros.length}` }, `${compression}: a size short of the stated one`);
    t.same((await inflateDelta(file, bomb, compression, zeros.length)).length, zeros.length, `${compression}: the stated size`);
  }
});
