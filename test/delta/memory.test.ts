// How much wasm memory an encode takes: one xdelta3 instance sized for the largest call (a
// source segment of at most SEGMENT_BYTES, a target window of at most WINDOW_BYTES) serves
// every window, so the memory is bounded whatever the size of the project. xdelta3 rounds a
// segment up to a power of two before sizing its source checksum table; underestimating
// that made encodes fail with ENOMEM when the whole base was one segment.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { decodeVcdiffToFile } from '../../src/delta/vcdiff-decode.js';
import { defaultLevel, encodeMemoryBound, largeTableBytes, SEGMENT_BYTES, WINDOW_BYTES } from '../../src/delta/xdelta.js';
import { encodeToBuffer } from '../helpers/delta.js';
import { MAX_MEMORY_BYTES, Xd3Instance } from '../../src/delta/wasm.js';
import { sha256 } from './trees.js';

const MiB = 2 ** 20;

t.test('the source table is sized from the segment rounded up to a power of two', async (t) => {
  // level 9: one 4-byte slot per 2 bytes of the rounded segment
  t.equal(largeTableBytes(SEGMENT_BYTES, 9), 64 * MiB, 'the largest segment, 32 MiB');
  t.equal(largeTableBytes(16 * MiB, 9), 32 * MiB, 'exactly 16 MiB');
  t.equal(largeTableBytes(16 * MiB + 1, 9), 64 * MiB, 'one byte more: the table of 32 MiB');
  t.equal(largeTableBytes(SEGMENT_BYTES, 1), 4 * MiB, 'level 1: step 26');
});

t.test('the bound: a few hundred MiB at most, whatever the project', async (t) => {
  t.equal(SEGMENT_BYTES, 32 * MiB);
  t.equal(WINDOW_BYTES, 16 * MiB);
  t.equal(defaultLevel(0, true), 9);
  t.equal(defaultLevel(64 * 2 ** 20, false), 9, 'level 9 up to 64 MiB');
  t.equal(defaultLevel(64 * 2 ** 20 + 1, true), 6, 'level 6 above for tars: windows mapped by entries');
  t.equal(defaultLevel(64 * 2 ** 20 + 1, false), 4, 'level 4 for other inputs: mapped by position, slow at higher levels');
  t.ok(encodeMemoryBound(9) < 220 * MiB, `level 9: ${(encodeMemoryBound(9) / MiB).toFixed(1)} MiB`);
  for (let level = 1; level < 9; level++) t.ok(encodeMemoryBound(level) <= encodeMemoryBound(level + 1), `level ${level}: ${(encodeMemoryBound(level) / MiB).toFixed(1)} MiB`);
});

t.test('an instance of the largest size can allocate (all 65536 pages could not)', async (t) => {
  const xd = await Xd3Instance.create(MAX_MEMORY_BYTES);
  t.ok(xd.alloc(64 * MiB, 'probe').ptr > 0);
  t.throws(() => xd.alloc(2 ** 32, 'probe'), { code: 'FC_ERR_DELTA', message: /cannot allocate/ }, 'a 4 GiB malloc is refused, not wrapped to 0');
});

/** Writes a tar of `entries` (tar-stream, as the packer) to `file`. */
async function writeTar(file: string, entries: ReadonlyArray<readonly [string, Buffer]>): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(file));
  for (const [name, content] of entries) pack.entry({ name, size: content.length }, content);
  pack.finalize();
  await done;
}

t.test('a target four windows long encodes at level 9 within the bound, in one instance', async (t) => {
  const dir = t.testdir();
  // a 16 MiB file that grows by 6 MiB near its start (its first window gets a segment widened
  // by the growth: above 16 MiB, so xdelta3 rounds it up to 32 MiB), then 16 files of 1 MiB,
  // one in 8 edited: four windows (the encode at level 9 costs CPU by the target's size: 102
  // MiB in seven windows proved no more)
  const big = randomBytes(16 * MiB);
  const small = Array.from({ length: 16 }, () => randomBytes(MiB));
  const base: Array<[string, Buffer]> = [['a/big.bin', big], ...small.map((b, i): [string, Buffer] => [`b/${i}.bin`, b])];
  const target: Array<[string, Buffer]> = [
    // (zeros: level 9 takes about 1 s per MiB of random bytes that match nothing)
    ['a/big.bin', Buffer.concat([big.subarray(0, MiB), Buffer.alloc(6 * MiB), big.subarray(MiB)])],
    ...small.map((b, i): [string, Buffer] => [`b/${i}.bin`, i % 8 === 0 ? Buffer.concat([b.subarray(0, 1000), Buffer.from('edit'), b.subarray(1000)]) : b]),
  ];
  await writeTar(join(dir, 'base.tar'), base);
  await writeTar(join(dir, 'target.tar'), target);

  const { vcdiff, level, memoryBytes, windows } = await encodeToBuffer({ path: join(dir, 'base.tar') }, { path: join(dir, 'target.tar') }, { level: 9 });
  t.equal(level, 9, 'no fallback to a lower level: the memory was computed right');
  t.ok(windows >= 4, `${windows} windows for a ${22 + 16} MiB target`);
  t.ok(memoryBytes <= encodeMemoryBound(9) + 65536, `wasm memory ${(memoryBytes / MiB).toFixed(1)} MiB, bound ${(encodeMemoryBound(9) / MiB).toFixed(1)} MiB`);
  t.ok(memoryBytes > encodeMemoryBound(9) - 16 * MiB, 'the largest segment was used (the bound is reached, not exceeded)');
  t.ok(vcdiff.length < 20_000, `delta ${vcdiff.length} bytes`);
  const decoded = await decodeVcdiffToFile(join(dir, 'base.tar'), vcdiff, join(dir, 'out.tar'));
  t.equal(decoded.digests['sha256'], await sha256(join(dir, 'target.tar')));
});
