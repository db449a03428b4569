// Project trees for the windowed-encode tests: made up from a seed (text and binary files in
// nested directories), evolved the way projects change between two runs, packed with our
// packer, the encoder's plan for two files, and round trips of a delta through both
// decoders (ours and Debian's xdelta3 -d).
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { deltaChunks, type Compression } from '../../src/delta/compress.js';
import { OpenInput } from '../../src/delta/delta-input.js';
import { planWindows, type WindowPlan } from '../../src/delta/plan.js';
import { decodeVcdiffToFile } from '../../src/delta/vcdiff-decode.js';
import { SEGMENT_BYTES, WINDOW_BYTES } from '../../src/delta/xdelta.js';
import { packToFile } from '../../src/pack/packer.js';

export type Files = Map<string, Buffer>;

/** xorshift32: the same numbers for the same seed, in [0, 1). */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

const WORDS = ['const', 'return', 'function', 'await', 'import', 'export', 'value', 'options', 'cache', 'window', 'segment', 'base', 'target', 'error', '{', '}', '(', ')', ';', '=>'];

/**
 * Source-like text of about `size` bytes: lines picked from a pool (made once per generator),
 * each followed by a number below 1000, joined by newlines. The lines are copied into one
 * buffer as bytes made once: the tests make tens of MiB of text, and building each line as a
 * string, then joining them, took three times the CPU (1.2 s for 34 MiB).
 */
export function text(rand: () => number, size: number): Buffer {
  const pool = pools.get(rand) ?? pools.set(rand, makePool(rand)).get(rand)!;
  const out = Buffer.allocUnsafe(size + pool.longest + 5);
  let at = 0; // where the next line starts: past this line's newline
  while (at < size) {
    const line = pool.lines[Math.floor(rand() * pool.lines.length)]!;
    out.set(line, at);
    at += line.length;
    const end = NUMBERS[Math.floor(rand() * 1000)]!;
    out.set(end, at);
    at += end.length;
  }
  return out.subarray(0, Math.min(size, Math.max(0, at - 1))); // the last newline is not the text's
}

/** ` 0\n` to ` 999\n`: what ends a line. */
const NUMBERS = Array.from({ length: 1000 }, (_, n) => Buffer.from(` ${n}\n`));

interface Pool {
  readonly lines: Buffer[];
  readonly longest: number;
}

const pools = new WeakMap<() => number, Pool>();

function makePool(rand: () => number): Pool {
  const lines = Array.from({ length: 20_000 }, () => {
    const words = Array.from({ length: 2 + Math.floor(rand() * 10) }, () => WORDS[Math.floor(rand() * WORDS.length)]);
    return Buffer.from(`${'  '.repeat(Math.floor(rand() * 4))}${words.join(' ')} ${Math.floor(rand() * 100_000)}`, 'latin1');
  });
  return { lines, longest: Math.max(...lines.map((l) => l.length)) };
}

/** About `bytes` of files: `dirs` directories, text mostly, one file in 8 binary. */
export function makeProject(rand: () => number, bytes: number, dirs = 12): Files {
  const files: Files = new Map();
  let total = 0;
  for (let i = 0; total < bytes; i++) {
    const size = Math.floor(2 ** (8 + rand() * 10)); // 256 B to 256 KiB
    const path = `pkg-${Math.floor(rand() * dirs)}/src/file-${i}.${i % 8 === 0 ? 'bin' : 'js'}`;
    files.set(path, i % 8 === 0 ? randomBytes(size) : text(rand, size));
    total += size;
  }
  return files;
}

/** A few lines changed or inserted. */
function edit(rand: () => number, content: Buffer): Buffer {
  let out = content;
  for (let e = 0; e < 1 + Math.floor(rand() * 3); e++) {
    const at = Math.floor(rand() * out.length);
    out = Buffer.concat([out.subarray(0, at), Buffer.from(`\n// edited ${Math.floor(rand() * 1e9)}\n`), out.subarray(Math.min(out.length, at + Math.floor(rand() * 40)))]);
  }
  return out;
}

/**
 * The next version of a project: one file in 5 edited, 2% removed, 2% added, 1% renamed in
 * their directory and 1% moved to another one (so they sit elsewhere in the tar).
 */
export function evolve(rand: () => number, files: Files): Files {
  const out: Files = new Map();
  const paths = [...files.keys()];
  for (const [path, content] of files) {
    const r = rand();
    if (r < 0.02) continue;
    if (r < 0.03) out.set(path.replace(/file-/, 'renamed-'), content);
    else if (r < 0.04) out.set(`pkg-moved/${path.replace(/\//g, '-')}`, content);
    else if (r < 0.24) out.set(path, edit(rand, content));
    else out.set(path, content);
  }
  for (let i = 0; i < paths.length * 0.02; i++) out.set(`pkg-${i % 5}/src/added-${i}.js`, text(rand, Math.floor(2 ** (8 + rand() * 8))));
  return out;
}

/** Writes `files` under `dir` and packs them into `tar` with our packer. */
export async function packFiles(dir: string, files: Files, tar: string): Promise<void> {
  for (const [path, content] of files) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  await packToFile(dir, tar);
}

export function sha256(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** Rebuilds `target` from `base` and `vcdiff` with our decoder and with xdelta3 -d; true when both match. */
export async function roundTrips(dir: string, base: string, target: string, vcdiff: Uint8Array): Promise<{ ours: boolean; native: boolean }> {
  const expected = await sha256(target);
  const ours = await decodeVcdiffToFile(base, vcdiff, join(dir, 'ours.out'));
  writeFileSync(join(dir, 'delta.vcdiff'), vcdiff);
  execFileSync('xdelta3', ['-d', '-f', '-s', base, join(dir, 'delta.vcdiff'), join(dir, 'native.out')]);
  return { ours: ours.digests['sha256'] === expected, native: (await sha256(join(dir, 'native.out'))) === expected };
}

/** The plan the encoder makes for these two files (with windows of `window` bytes, as encodeDelta's windowBytes). */
export async function planOf(base: string, target: string, window = WINDOW_BYTES): Promise<WindowPlan[]> {
  const b = await OpenInput.open({ path: base }, 'base');
  const n = await OpenInput.open({ path: target }, 'target');
  try {
    return planWindows(n.size, n.index, b.size, b.index, { window, segment: SEGMENT_BYTES });
  } finally {
    await b.close();
    await n.close();
  }
}

/** The VCDIFF that deltaChunks reads from `packed`, written to `file` first. */
export async function inflateDelta(file: string, packed: Uint8Array, compression?: Compression, size?: number): Promise<Buffer> {
  writeFileSync(file, packed);
  const chunks: Buffer[] = [];
  for await (const chunk of deltaChunks(file, compression, size)) chunks.push(chunk);
  return Buffer.concat(chunks);
}
