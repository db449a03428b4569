import t from 'tap';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCompression } from '../../src/delta/compress.js';
import { shiftedWindows, VCDIFF_HEADER, vcdiffWindows } from '../../src/delta/vcdiff.js';
import { decodeVcdiff } from '../../src/delta/vcdiff-decode.js';
import { compressToBuffer, encodeToBuffer, inspectVcdiff } from '../helpers/delta.js';
import { withMemoryPages } from '../../src/delta/wasm.js';
import { WINDOW_BYTES } from '../../src/delta/xdelta.js';
import { inflateDelta } from './trees.js';

/** A base and an edited copy: some bytes changed, inserted and removed. */
function pair(size: number): { base: Buffer; target: Buffer } {
  const base = randomBytes(size);
  const target = Buffer.concat([base.subarray(0, size / 4), randomBytes(3000), base.subarray(size / 4 + 100, size / 2), Buffer.from('edit'), base.subarray(size / 2 + 10)]);
  return { base, target };
}

/** The streaming decoder reads its base from a file: bytes are written to one first. */
async function decode(base: Uint8Array | { path: string }, vcdiff: Uint8Array): Promise<Buffer> {
  const dir = base instanceof Uint8Array ? mkdtempSync(join(tmpdir(), 'fc-xdelta-test-')) : undefined;
  try {
    const path = dir ? join(dir, 'base') : (base as { path: string }).path;
    if (dir) writeFileSync(path, base as Uint8Array);
    const windows: Buffer[] = [];
    await decodeVcdiff(path, vcdiff, async (w) => void windows.push(Buffer.from(w)));
    return Buffer.concat(windows);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

t.test('round trip above the 16 MiB memory of xdelta3-wasm as shipped', async (t) => {
  // 8 MiB each: with the source table of level 9 the encode needs several times 16 MiB (24 MiB
  // each, three times the CPU, proved no more)
  const { base, target } = pair(8 << 20);
  const { vcdiff, level, memoryBytes } = await encodeToBuffer(base, target);
  t.equal(level, 9);
  t.ok(memoryBytes > 2 * 16 * 2 ** 20, `wasm memory ${memoryBytes} bytes`);
  t.ok(vcdiff.length < 20_000, `delta is small (${vcdiff.length})`);
  t.equal(inspectVcdiff(vcdiff).targetSize, target.length);
  t.same(await decode(base, vcdiff), target);
});

t.test('the level reaches xdelta3 as flags (9 << 20)', async (t) => {
  const base = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `line ${i % 977} ${(i * 7919) % 10007}\n`).join(''));
  const target = Buffer.from(base.toString().replace(/line 5/g, 'LINE 5'));
  const fast = await encodeToBuffer(base, target, { level: 1 });
  const slow = await encodeToBuffer(base, target, { level: 9 });
  t.not(Buffer.compare(fast.vcdiff, slow.vcdiff), 0, 'levels give different deltas');
  t.ok(slow.vcdiff.length <= fast.vcdiff.length, `level 9 ${slow.vcdiff.length} <= level 1 ${fast.vcdiff.length}`);
  t.same(await decode(base, fast.vcdiff), target);
  t.same(await decode(base, slow.vcdiff), target);
});


t.test('memory section rewrite', async (t) => {
  // (module (memory 1 2)) as bytes
  const mod = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 4, 1, 1, 1, 2]);
  const out = withMemoryPages(mod, 300);
  t.same([...out.subarray(8)], [5, 6, 1, 1, 0xac, 0x02, 0xac, 0x02]);
  t.throws(() => withMemoryPages(mod.subarray(0, 8), 300), /no memory section/);
});

t.test('corrupt and hostile deltas fail cleanly', async (t) => {
  const { base, target } = pair(1 << 20);
  const { vcdiff } = await encodeToBuffer(base, target);
  const flipped = Buffer.from(vcdiff);
  flipped[flipped.length - 20] = (flipped[flipped.length - 20] as number) ^ 0xff;
  await t.rejects(decode(base, flipped), { code: 'FC_ERR_DELTA' }, 'flipped byte');
  await t.rejects(decode(base, vcdiff.subarray(0, vcdiff.length - 7)), { code: 'FC_ERR_DELTA' }, 'truncated');
  await t.rejects(decode(randomBytes(1 << 20), vcdiff), { code: 'FC_ERR_DELTA' }, 'wrong base (adler32)');
  await t.rejects(decode(base, Buffer.from('not a delta')), { code: 'FC_ERR_DELTA', message: /bad magic/ });
  await t.rejects(encodeToBuffer(base, target, { level: 12 }), { code: 'FC_ERR_USAGE' });
});

t.test('interop with Debian xdelta3 -S none, both ways; -S djw refused clearly', async (t) => {
  const dir = t.testdir();
  const { base, target } = pair(2 << 20);
  writeFileSync(join(dir, 'base'), base);
  writeFileSync(join(dir, 'target'), target);
  // ours → native
  const { vcdiff } = await encodeToBuffer({ path: join(dir, 'base') }, { path: join(dir, 'target') });
  writeFileSync(join(dir, 'ours.vcdiff'), vcdiff);
  execFileSync('xdelta3', ['-d', '-f', '-s', join(dir, 'base'), join(dir, 'ours.vcdiff'), join(dir, 'native-out')]);
  t.same(readFileSync(join(dir, 'native-out')), target, 'native xdelta3 decodes our delta');
  // native → ours (-B 4 MiB: above the base, the delta of the default 64 MiB source window,
  // without the 0.4 s -9 spends sizing its tables for 64 MiB)
  execFileSync('xdelta3', ['-e', '-9', '-B', '4194304', '-S', 'none', '-f', '-s', join(dir, 'base'), join(dir, 'target'), join(dir, 'native.vcdiff')]);
  t.same(await decode({ path: join(dir, 'base') }, readFileSync(join(dir, 'native.vcdiff'))), target, 'we decode native -S none');
  // -1: the refusal reads the header's secondary compressor (the same bytes at -9), and -9 spent 2 s of CPU here
  execFileSync('xdelta3', ['-e', '-1', '-S', 'djw', '-f', '-s', join(dir, 'base'), join(dir, 'target'), join(dir, 'djw.vcdiff')]);
  await t.rejects(decode(base, readFileSync(join(dir, 'djw.vcdiff'))), { code: 'FC_ERR_DELTA', message: /secondary compression \(djw\).*-S none/ });
});

t.test('secondary compression round trips and is detected', async (t) => {
  const file = join(t.testdir(), 'delta');
  const { base, target } = pair(1 << 20);
  const { vcdiff } = await encodeToBuffer(base, target);
  for (const c of ['none', 'gzip', 'brotli'] as const) {
    const packed = await compressToBuffer(vcdiff, c);
    t.equal(detectCompression(packed), c);
    t.same(await inflateDelta(file, packed), vcdiff, c);
  }
  await t.rejects(inflateDelta(file, Buffer.from('garbage that is not brotli')), { code: 'FC_ERR_DELTA', message: /not valid brotli data/ });
  await t.rejects(inflateDelta(file, (await compressToBuffer(vcdiff, 'gzip')).subarray(0, 1000)), { code: 'FC_ERR_DELTA', message: /not valid gzip data/ }, 'a cut gzip stream');
});

t.test('stitching: windows moved into the coordinates of a larger base', async (t) => {
  const dir = t.testdir();
  const { base, target } = pair(200_000);
  writeFileSync(join(dir, 'base'), base);
  writeFileSync(join(dir, 'target'), target);
  // Debian's xdelta3 writes an application header (the file names) and, with -W, many windows
  execFileSync('xdelta3', ['-e', '-f', '-S', 'none', '-W', '16384', '-s', join(dir, 'base'), join(dir, 'target'), join(dir, 'native')]);
  const native = readFileSync(join(dir, 'native'));
  const prefix = randomBytes(12_345);
  const stitched = Buffer.concat([VCDIFF_HEADER, ...shiftedWindows(native, prefix.length)]);
  const before = [...vcdiffWindows(native)];
  const after = [...vcdiffWindows(stitched)];
  t.equal(after.length, before.length);
  t.ok(before.length > 5, `${before.length} windows`);
  const moved = after.map((w, i) => (w.sourceLength === 0 ? 'none' : w.sourcePosition - (before[i]?.sourcePosition ?? NaN)));
  t.same(new Set(moved), new Set([prefix.length, ...(moved.includes('none') ? ['none'] : [])]), 'every source segment moved by the prefix');
  t.same(after.map((w) => [w.sourceLength, w.targetLength, w.adler32]), before.map((w) => [w.sourceLength, w.targetLength, w.adler32]), 'nothing else changed');
  const longer = Buffer.concat([prefix, base]);
  t.same(await decode(longer, stitched), target, 'decodes against the base behind the prefix');
  writeFileSync(join(dir, 'longer'), longer);
  writeFileSync(join(dir, 'stitched'), stitched);
  execFileSync('xdelta3', ['-d', '-f', '-s', join(dir, 'longer'), join(dir, 'stitched'), join(dir, 'out')]);
  t.same(readFileSync(join(dir, 'out')), target, 'and so does xdelta3 -d');
  t.throws(() => shiftedWindows(Buffer.from([0xd6, 0xc3, 0xc4, 0, 1, 2]), 0), { code: 'FC_ERR_DELTA', message: /secondary compression/ }, 'what it cannot re-emit is refused');
});

t.test('watchOutput: told of every piece of VCDIFF as written; the encode stops at the end of the window where it answers true', async (t) => {
  // two xdelta3 calls (target windows of 9 MiB, then the rest), each mostly copied: the first
  // written as two VCDIFF windows (8 MiB, then 1 MiB), the encode told to stop in the first of
  // them (two calls of 16 MiB, 20 MiB of target encoded three times, proved no more)
  const { base, target } = pair(10 << 20);
  const windowBytes = 9 << 20;
  const whole = await encodeToBuffer(base, target, { level: 1, windowBytes });
  t.equal(whole.complete, true);
  const windows = [...vcdiffWindows(whole.vcdiff)];
  t.ok(windows.length > 2, `several windows (${windows.length})`);
  const bound = windows[0]!.end - 1; // the first window is past it
  const seen: Buffer[] = [];
  const sizes: number[] = [];
  const cut = await encodeToBuffer(base, target, {
    level: 1,
    windowBytes,
    watchOutput: () => (bytes, size) => {
      seen.push(Buffer.from(bytes));
      sizes.push(size);
      return size > bound;
    },
  });
  t.equal(cut.complete, false, 'said to be cut');
  t.equal(cut.size, cut.vcdiff.length, 'its size is what the file holds');
  t.same(Buffer.concat(seen), cut.vcdiff, 'the watch saw every byte written, in order');
  t.equal(sizes.at(-1), cut.size, 'with the size so far');
  // an xdelta3 call writes its 9 MiB target window as VCDIFF windows of at most 8 MiB: the first call's
  t.ok(cut.size < whole.size, `stopped before the end (${cut.size} of ${whole.size} bytes)`);
  t.ok(windows.some((w) => w.end === cut.size), 'at the end of a window');
  t.same(cut.vcdiff, whole.vcdiff.subarray(0, cut.size), 'what the whole encode begins with');
  const notReached = await encodeToBuffer(base, target, { level: 1, windowBytes, watchOutput: () => () => false });
  t.equal(notReached.complete, true, 'a watch that never answers true stops nothing');
  t.same(notReached.vcdiff, whole.vcdiff);
});

t.test('windowBytes (internal, for tests): the target is encoded in windows of that size, decoded whole; a window out of 1..WINDOW_BYTES is refused', async (t) => {
  const { base, target } = pair(1 << 20);
  const window = 128 << 10;
  const encoded = await encodeToBuffer(base, target, { level: 1, windowBytes: window });
  t.equal(encoded.windows, Math.ceil(target.length / window), `${encoded.windows} xdelta3 calls of at most ${window} bytes`);
  t.same(await decode(base, encoded.vcdiff), target, 'decodes to the target');
  for (const windowBytes of [0, 1.5, WINDOW_BYTES + 1]) {
    await t.rejects(encodeToBuffer(base, target, { windowBytes }), { code: 'FC_ERR_USAGE', message: /delta window must be/ }, `${windowBytes} refused`);
  }
});
