// The streaming VCDIFF decoder against Debian's xdelta3: deltas made by it with the settings
// that change the layout (window sizes, source window, no checksum, no source) rebuild the
// same bytes; hand-made deltas decode as xdelta3 -d decodes them; corrupt ones fail with
// FC_ERR_DELTA and nothing else; memory stays one window whatever the size of the result.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { pipeline } from 'node:stream/promises';
import { runInNewContext } from 'node:vm';
import { constants, createGzip } from 'node:zlib';
import { FleetError } from '../../src/errors.js';
import { adler32, decodeVcdiff, decodeVcdiffToFile, MAX_WINDOW_BYTES } from '../../src/delta/vcdiff-decode.js';
import { deltaChunks } from '../../src/delta/compress.js';
import { inspectVcdiff } from '../helpers/delta.js';

const execFileAsync = promisify(execFile);

async function decodeToBuffer(basePath: string, vcdiff: Uint8Array | AsyncIterable<Uint8Array>): Promise<Buffer> {
  const windows: Buffer[] = [];
  await decodeVcdiff(basePath, vcdiff, async (w) => void windows.push(Buffer.from(w)));
  return Buffer.concat(windows);
}

/** `bytes` as a stream of chunks of 1 to 97 bytes, a different cut for each `seed`. */
async function* chunked(bytes: Uint8Array, seed: number): AsyncGenerator<Uint8Array> {
  for (let at = 0, i = seed; at < bytes.length; i++) {
    const n = 1 + ((i * 7919) % 97);
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

/** The outcome of a decode, to compare the whole delta's with the stream's: the bytes, or the error (its code if a FleetError). */
async function outcome(decode: Promise<Buffer>): Promise<{ bytes?: string; code?: string; message?: string }> {
  try {
    return { bytes: createHash('sha256').update(await decode).digest('hex') };
  } catch (err) {
    return { code: err instanceof FleetError ? err.code : `not a FleetError (${(err as Error).name})`, message: (err as Error).message };
  }
}

/** Text-like content with repeats (RUNs, overlapping copies) and an edited copy of it. */
function textPair(lines: number): { base: Buffer; target: Buffer } {
  const text = Array.from({ length: lines }, (_, i) => `${'='.repeat(i % 40)} line ${i % 331} ${(i * 7919) % 10007} ${'ab'.repeat(i % 13)}\n`).join('');
  const base = Buffer.from(text);
  const target = Buffer.from(text.replace(/line 1/g, 'LINE one').replace(/(\d{4}) /g, '$1  ') + 'xyz'.repeat(5000));
  return { base, target };
}

t.test('rebuilds what Debian xdelta3 encodes, for every layout setting', async (t) => {
  const dir = t.testdir();
  const p = (name: string) => join(dir, name);
  // sizes that still give several windows at -W 16384 and copies across a -B 512 KiB window
  const random = randomBytes(1 << 20);
  const edited = Buffer.concat([random.subarray(0, 300_000), randomBytes(5000), random.subarray(300_777), Buffer.alloc(70_000, 0x41)]);
  const text = textPair(15_000);
  const cases: Array<[string, Buffer, Buffer]> = [
    ['random', random, edited],
    ['text', text.base, text.target],
    ['empty target', text.base, Buffer.alloc(0)],
    ['empty base', Buffer.alloc(0), text.target],
  ];
  // -B 2 MiB at -9: above every base here, so the same delta as the default source window
  // of 64 MiB (byte for byte, checked below), without the 0.4 s of CPU that -9 spends sizing
  // its tables for 64 MiB, in each of its encodes
  const settings: Array<[string, string[]]> = [
    ['-9', ['-9', '-B', '2097152']],
    ['-1', ['-1']],
    ['-0 (no compression)', ['-0']],
    ['-W 16384 (many target windows)', ['-9', '-B', '2097152', '-W', '16384']],
    ['-B 524288 (small source window, the least xdelta3 takes)', ['-9', '-B', '524288']],
    // the checksum is the point here, not the level (-9 spent 0.5-0.7 s per case)
    ['-n (no checksum)', ['-1', '-n']],
  ];
  // the 28 encodes are what takes the time (0.5-0.9 s each at -9): they run side by side, a
  // delta file of their own each, and are decoded and checked in order once all are written
  const encodes: Array<{ name: string; label: string; base: string; target: Buffer; args: string[] }> = [];
  for (const [c, [name, base, target]] of cases.entries()) {
    writeFileSync(p(`base-${c}`), base);
    writeFileSync(p(`target-${c}`), target);
    for (const [s, [label, flags]] of settings.entries()) {
      encodes.push({ name, label: `xdelta3 ${label}`, base: p(`base-${c}`), target, args: ['-e', '-f', '-S', 'none', ...flags, '-s', p(`base-${c}`), p(`target-${c}`), p(`delta-${c}-${s}`)] });
    }
    // no source at all: only ADD, RUN and copies inside the target
    encodes.push({ name, label: 'no source', base: p(`base-${c}`), target, args: ['-e', '-f', '-S', 'none', '-9', p(`target-${c}`), p(`delta-${c}-none`)] });
  }
  // the one encode at xdelta3's default source window, to compare with
  encodes.push({ name: 'random', label: 'xdelta3 -9 (default -B)', base: p('base-0'), target: edited, args: ['-e', '-f', '-S', 'none', '-9', '-s', p('base-0'), p('target-0'), p('delta-0-default')] });
  const pending = [...encodes];
  const encodeNext = async (): Promise<void> => {
    for (let next = pending.shift(); next; next = pending.shift()) await execFileAsync('xdelta3', next.args);
  };
  await Promise.all(Array.from({ length: availableParallelism() }, encodeNext));
  t.same(readFileSync(p('delta-0-default')), readFileSync(p('delta-0-0')), '-9 with -B 2 MiB writes what -9 writes');
  for (const { name, label, base, target, args } of encodes) {
    const got = await decodeToBuffer(base, readFileSync(args.at(-1)!));
    t.ok(got.equals(target), `${name}, ${label}`);
  }
});

/** An RFC 3284 integer. */
function varint(n: number): number[] {
  const out = [n & 0x7f];
  for (let rest = Math.floor(n / 128); rest > 0; rest = Math.floor(rest / 128)) out.unshift((rest & 0x7f) | 0x80);
  return out;
}

/** A one-window delta without source, built by hand: header, window, three sections. */
function handMade(targetLength: number, data: number[], instructions: number[], addresses: number[], windowIndicator = 0): Buffer {
  const body = [...varint(targetLength), 0, ...varint(data.length), ...varint(instructions.length), ...varint(addresses.length), ...data, ...instructions, ...addresses];
  return Buffer.from([0xd6, 0xc3, 0xc4, 0x00, 0x00, windowIndicator, ...varint(body.length), ...body]);
}

t.test('hand-made deltas decode as xdelta3 -d decodes them', async (t) => {
  const dir = t.testdir({ base: '' });
  const p = (name: string) => join(dir, name);
  // code 4: ADD 3; code 24: COPY 8 in mode 0 (VCD_SELF), overlapping what it writes.
  // code 0: RUN, its size (5) in the instructions; code 175 (163 + 12 × mode 1): ADD 1, then
  // COPY 4 in mode 1 (VCD_HERE: the address is 6 - 4 = 2, counted back from the position).
  const cases: Array<[string, Buffer]> = [
    ['overlapping self copy', handMade(11, [0x61, 0x62, 0x63], [4, 24], [0])],
    ['run, then a copy addressed from here', handMade(10, [0x7a, 0x78], [0, 5, 175], [4])],
  ];
  for (const [name, delta] of cases) {
    writeFileSync(p('delta'), delta);
    execFileSync('xdelta3', ['-d', '-f', '-s', p('base'), p('delta'), p('native-out')]);
    const native = readFileSync(p('native-out'));
    t.ok(native.length > 0, `${name}: xdelta3 accepts it (${JSON.stringify(native.toString())})`);
    t.same(await decodeToBuffer(p('base'), delta), native, name);
  }
});

t.test('adler32 is the checksum xdelta3 writes', async (t) => {
  const dir = t.testdir();
  const target = Buffer.concat([randomBytes(100_003), Buffer.alloc(50_000, 0xff)]);
  writeFileSync(join(dir, 'target'), target);
  execFileSync('xdelta3', ['-e', '-f', '-S', 'none', '-W', '65536', join(dir, 'target'), join(dir, 'delta')]);
  const delta = readFileSync(join(dir, 'delta'));
  // the first window's checksum: after the three section lengths, big-endian
  t.equal(inspectVcdiff(delta).windows, 3);
  const first = target.subarray(0, 65536);
  const sum = adler32(first);
  const bytes = Buffer.from([sum >>> 24, (sum >>> 16) & 0xff, (sum >>> 8) & 0xff, sum & 0xff]);
  t.ok(delta.subarray(0, 40).includes(bytes), `adler32 ${sum.toString(16)} found in the first window header`);
  t.equal(adler32(Buffer.alloc(0)), 1);
  t.equal(adler32(Buffer.from('Wikipedia')), 0x11e60398, 'the textbook example');
});

t.test('corrupt deltas fail with FC_ERR_DELTA, never another error', async (t) => {
  const dir = t.testdir();
  // 120 KB, several windows at -W 16384: each of the 600 decodes below rebuilds up to all of it
  const { base, target } = textPair(2500);
  writeFileSync(join(dir, 'base'), base);
  writeFileSync(join(dir, 'target'), target);
  execFileSync('xdelta3', ['-e', '-f', '-S', 'none', '-9', '-W', '16384', '-s', join(dir, 'base'), join(dir, 'target'), join(dir, 'delta')]);
  const delta = readFileSync(join(dir, 'delta'));
  let refused = 0;
  let streamedAlike = 0;
  for (let i = 0; i < 300; i++) {
    const bad = Buffer.from(delta);
    const at = 5 + ((i * 7919) % (bad.length - 5));
    bad[at] = (bad[at] as number) ^ (1 << (i % 8));
    // decoded (possible: a bit no check covers; pull then checks the digest) or FC_ERR_DELTA
    const whole = await outcome(decodeToBuffer(join(dir, 'base'), bad));
    if (whole.bytes === undefined) {
      if (whole.code !== 'FC_ERR_DELTA') t.fail(`byte ${at}: ${whole.code}: ${whole.message}`);
      refused++;
    }
    // read as a stream, cut anywhere, the same delta gives the same bytes or the same error
    const streamed = await outcome(decodeToBuffer(join(dir, 'base'), chunked(bad, i)));
    if (JSON.stringify(streamed) === JSON.stringify(whole)) streamedAlike++;
    else t.same(streamed, whole, `byte ${at} flipped, streamed`);
  }
  t.equal(streamedAlike, 300, 'each corrupt delta streamed fails (or not) as it does whole');
  for (const cut of [0, 3, 4, 5, 6, 20, 100, delta.length - 3, delta.length - 1]) {
    t.same(await outcome(decodeToBuffer(join(dir, 'base'), chunked(delta.subarray(0, cut), cut))), await outcome(decodeToBuffer(join(dir, 'base'), delta.subarray(0, cut))), `cut at ${cut}, streamed as whole`);
  }
  t.same(await decodeToBuffer(join(dir, 'base'), chunked(delta, 1)), await decodeToBuffer(join(dir, 'base'), delta), 'the intact delta streamed');
  t.ok(refused >= 290, `${refused} of 300 flipped bits refused (window checksums and section lengths catch nearly all)`);
  await t.rejects(decodeToBuffer(join(dir, 'base'), delta.subarray(0, delta.length - 3)), { code: 'FC_ERR_DELTA', message: /truncated/ });
  writeFileSync(join(dir, 'short'), base.subarray(0, 1000));
  await t.rejects(decodeToBuffer(join(dir, 'short'), delta), { code: 'FC_ERR_DELTA', message: /wrong base/ });
  await t.rejects(decodeToBuffer(join(dir, 'base'), handMade(4, [], [20], [0])), { code: 'FC_ERR_DELTA', message: /not yet decoded/ }, 'a copy of nothing');
  await t.rejects(decodeToBuffer(join(dir, 'base'), handMade(3, [1, 2, 3], [5], [])), { code: 'FC_ERR_DELTA', message: /past the window/ }, 'ADD 4 into 3 bytes');
  await t.rejects(decodeToBuffer(join(dir, 'base'), handMade(MAX_WINDOW_BYTES + 1, [], [], [])), { code: 'FC_ERR_DELTA', message: /above the/ });
  await t.rejects(decodeToBuffer(join(dir, 'base'), handMade(1, [0x61], [2], [], 0x02)), { code: 'FC_ERR_DELTA', message: /VCD_TARGET/ });
});

t.test('memory is a window, not the result: 96 MiB rebuilt with under 48 MiB of buffers', async (t) => {
  const dir = t.testdir();
  const MiB = 1 << 20;
  // written in 1 MiB pieces, so the test itself never holds the files
  const baseFd = openSync(join(dir, 'base'), 'w');
  const targetFd = openSync(join(dir, 'target'), 'w');
  const expected = createHash('sha256');
  for (let i = 0; i < 96; i++) {
    const piece = randomBytes(MiB);
    writeSync(baseFd, piece);
    if (i % 10 === 3) piece.fill(0x20, 1000, 1100);
    writeSync(targetFd, piece);
    expected.update(piece);
  }
  closeSync(baseFd);
  closeSync(targetFd);
  execFileSync('xdelta3', ['-e', '-f', '-S', 'none', '-1', '-s', join(dir, 'base'), join(dir, 'target'), join(dir, 'delta')]);
  const delta = readFileSync(join(dir, 'delta'));
  const got = createHash('sha256');
  const before = process.memoryUsage().arrayBuffers;
  let peak = 0;
  const size = await decodeVcdiff(join(dir, 'base'), delta, async (window) => {
    got.update(window);
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
  });
  t.equal(size, 96 * MiB);
  t.equal(got.digest('hex'), expected.digest('hex'));
  t.ok(peak < 48 * MiB, `buffers grew by ${(peak / MiB).toFixed(1)} MiB while rebuilding 96 MiB`);
});

t.test('a delta read from its file is held a window at a time: 64 MiB of VCDIFF with under 32 MiB of buffers', async (t) => {
  const dir = t.testdir({ base: '' });
  const MiB = 1 << 20;
  // 16 windows of 4 MiB of new bytes (one ADD each): the VCDIFF is as large as the result.
  // What is held while streaming is a few windows (40-48 MiB with windows of 8 MiB, 128 MiB
  // in all); held whole, the VCDIFF alone is twice the bound.
  const WINDOW = 4 * MiB;
  const instructions = [1, ...varint(WINDOW)]; // code 1: ADD, its size in the instructions
  const headerOf = (body: number) => Buffer.from([0, ...varint(body), ...varint(WINDOW), 0, ...varint(WINDOW), ...varint(instructions.length), 0]);
  const fd = openSync(join(dir, 'delta'), 'w');
  writeSync(fd, Buffer.from([0xd6, 0xc3, 0xc4, 0x00, 0x00]));
  const expected = createHash('sha256');
  for (let i = 0; i < 16; i++) {
    const data = randomBytes(WINDOW);
    const tail = [...varint(WINDOW), 0, ...varint(WINDOW), ...varint(instructions.length), 0];
    writeSync(fd, headerOf(tail.length + data.length + instructions.length));
    writeSync(fd, data);
    writeSync(fd, Buffer.from(instructions));
    expected.update(data);
  }
  closeSync(fd);
  // a gzip file of stored blocks (level 0), as large as the VCDIFF: read and inflated as any
  // other gzip, made in a fraction of a second (`gzip -1` spent 3 s on 128 MiB of random bytes)
  await pipeline(createReadStream(join(dir, 'delta')), createGzip({ level: constants.Z_NO_COMPRESSION }), createWriteStream(join(dir, 'delta.gz')));
  t.ok(statSync(join(dir, 'delta.gz')).size > 64 * MiB, 'the gzip file is as large as the VCDIFF');
  const digest = expected.digest('hex');
  // what is held, not what the collector has yet to free: collected before each look
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (const [file, compression] of [['delta', 'none'], ['delta.gz', 'gzip']] as const) {
    const got = createHash('sha256');
    gc();
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const size = await decodeVcdiff(join(dir, 'base'), deltaChunks(join(dir, file), compression, statSync(join(dir, 'delta')).size), async (window) => {
      got.update(window);
      gc();
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    });
    t.equal(size, 64 * MiB, compression);
    t.equal(got.digest('hex'), digest, `${compression}: the bytes`);
    t.ok(peak < 32 * MiB, `${compression}: ${(peak / MiB).toFixed(1)} MiB more buffers held while reading 64 MiB of VCDIFF`);
  }
});

t.test('decodeVcdiffToFile stops past the size expected: a few bytes of VCDIFF cannot fill the disk', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'base'), 'a base\n');
  writeFileSync(join(dir, 'target'), Buffer.alloc(16 << 20)); // 16 MiB of zeros: a run per window (two of xdelta3's 8 MiB windows)
  execFileSync('xdelta3', ['-e', '-f', '-S', 'none', '-s', join(dir, 'base'), join(dir, 'target'), join(dir, 'd.vcdiff')]);
  const vcdiff = readFileSync(join(dir, 'd.vcdiff'));
  t.ok(vcdiff.length < 4096, `${vcdiff.length} bytes of VCDIFF`);
  await t.rejects(decodeVcdiffToFile(join(dir, 'base'), vcdiff, join(dir, 'out'), [], 10_240), { code: 'FC_ERR_SIZE_MISMATCH' });
  t.ok(statSync(join(dir, 'out')).size <= 10_240, `nothing past the expected size was written (${statSync(join(dir, 'out')).size} bytes)`);
  t.ok(inspectVcdiff(vcdiff).windows >= 2, `${inspectVcdiff(vcdiff).windows} windows`);
  const whole = await decodeVcdiffToFile(join(dir, 'base'), vcdiff, join(dir, 'out'), [], 16 << 20);
  t.equal(whole.size, 16 << 20, 'the expected size decodes');
});

t.test('an application header longer than 64 KiB is refused before it is read (a stream parse holds it whole)', async (t) => {
  const dir = t.testdir({ base: 'base' });
  let read = 0;
  async function* delta(): AsyncGenerator<Uint8Array> {
    // magic, header indicator VCD_APPHEADER, then a length of 256 MiB (varint)
    yield Uint8Array.of(0xd6, 0xc3, 0xc4, 0x00, 0x04, 0x81, 0x80, 0x80, 0x80, 0x00);
    for (let i = 0; i < 256; i++) {
      read += 1 << 20;
      yield new Uint8Array(1 << 20);
    }
  }
  await t.rejects(decodeVcdiffToFile(join(dir, 'base'), delta(), join(dir, 'out')), { code: 'FC_ERR_DELTA', message: /application header is 268435456 bytes long, above the 65536/ });
  t.ok(read <= 1 << 20, `refused at its length (${read} bytes read past it)`);
  // xdelta3's own application header (file names) is read as before
  writeFileSync(join(dir, 'target'), 'target bytes');
  execFileSync('xdelta3', ['-e', '-f', '-S', 'none', '-A=some/app header', '-s', join(dir, 'base'), join(dir, 'target'), join(dir, 'with-header')]);
  await decodeVcdiffToFile(join(dir, 'base'), readFileSync(join(dir, 'with-header')), join(dir, 'out'));
  t.equal(readFileSync(join(dir, 'out'), 'utf8'), 'target bytes');
});
