// VCDIFF encode of whole files with xdelta3-wasm (decoding streams, in vcdiff-decode.ts).
// xdelta3-wasm only exports the in-memory API, so base, target and output live in wasm
// memory for the length of one encode (files are read straight into it: no second copy in JS).
// The memory a job needs is computed up front from how xdelta3 sizes its tables; the
// compression level is lowered when a large base would not fit in 4 GiB (and lowered again
// should the job run out of memory anyway), and a job that cannot fit fails clearly.
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { DigestMismatchError, FleetError } from '../errors.js';
import { isOutOfMemory, MAX_MEMORY_BYTES, Xd3Instance } from './wasm.js';

/**
 * A file on disk (read into wasm memory directly) or bytes already in memory. A file with a
 * `digest` (sha256:<hex>) is hashed once read and refused with FC_ERR_DIGEST_MISMATCH when it
 * does not match: a cached copy is checked without reading it twice.
 */
export type DeltaInput = { readonly path: string; readonly digest?: string } | Uint8Array;

const COMPLEVEL_SHIFT = 20;
/** Per-window Adler-32 of the target, checked on decode (native xdelta3 sets it too). */
const XD3_ADLER32 = 1 << 10;
const WINSIZE = 1 << 23; // XD3_DEFAULT_WINSIZE, used by xd3_encode_memory
const ALLOCSIZE = 1 << 14; // XD3_ALLOCSIZE: the smallest source window
const SLACK = 96 * 1024 * 1024; // iopt and section buffers, code tables, malloc overhead
/** xdelta3's "large step" (source checksum stride) per level: see xdelta3-cfgs.h. */
const LARGE_STEP: Record<number, number> = { 1: 26, 2: 15, 3: 8, 4: 8, 5: 8, 6: 3, 7: 2, 8: 2, 9: 2 };
/**
 * xdelta3-wasm is built with 32-bit offsets: xd3_set_source rounds the source window up to
 * a power of two in a 32-bit loop, which never ends for a source above 2 GiB.
 */
export const MAX_BASE_BYTES = 2 ** 31;

async function sizeOf(input: DeltaInput): Promise<number> {
  return input instanceof Uint8Array ? input.length : (await stat(input.path)).size;
}

/** xd3_pow2_roundup / xd3_xoff_roundup. */
function ceilPow2(n: number): number {
  let i = 1;
  while (n > i) i *= 2;
  return i;
}

/** Entries of a checksum table sized for `slots` (xd3_size_hashtable: largest power of two ≤ slots). */
function tableEntries(slots: number): number {
  for (let bits = 3; bits <= 31; bits++) if (slots < 2 ** bits) return 2 ** (bits - 1);
  return 2 ** 31;
}

/**
 * Bytes of xdelta3's source checksum table at `level`. xd3_encode_memory makes the whole
 * base one source window, and xd3_set_source rounds that window up to a power of two, so a
 * base just above 128 MiB gets the table of a 256 MiB one (4 bytes per `large step` bytes).
 */
export function largeTableBytes(baseSize: number, level: number): number {
  const window = Math.max(ceilPow2(baseSize), ALLOCSIZE);
  return 4 * tableEntries(Math.floor(window / (LARGE_STEP[level] ?? 2)));
}

/** Largest possible VCDIFF for a target of `size` bytes (all ADDs, per-window headers). */
export function encodeOutputMax(size: number): number {
  return size + Math.ceil(size / 64) + 64 * 1024;
}

/** Bytes of wasm memory an encode needs at `level` (source, target, output, tables). */
export function encodeMemoryNeed(baseSize: number, targetSize: number, level: number): number {
  const window = Math.max(Math.min(targetSize, WINSIZE), 8);
  // target checksum table, its chain (xd3_slist per byte of the rounded window), input buffer
  const small = 4 * tableEntries(window) + 4 * ceilPow2(window) + window;
  return baseSize + targetSize + encodeOutputMax(targetSize) + largeTableBytes(baseSize, level) + small + SLACK;
}

/** The highest level ≤ `wanted` whose encode fits in `limit` bytes of wasm memory; throws when none does. */
export function chooseLevel(baseSize: number, targetSize: number, wanted: number, limit: number = MAX_MEMORY_BYTES): number {
  if (baseSize > MAX_BASE_BYTES) {
    throw new FleetError('FC_ERR_DELTA', `base (${baseSize} bytes) is larger than xdelta3-wasm supports (${MAX_BASE_BYTES} bytes: it uses 32-bit offsets)`);
  }
  for (let level = wanted; level >= 1; level--) {
    if (encodeMemoryNeed(baseSize, targetSize, level) <= limit) return level;
  }
  throw new FleetError(
    'FC_ERR_DELTA',
    `base (${baseSize} bytes) and target (${targetSize} bytes) are too large for xdelta3-wasm: an encode needs ` +
      `${encodeMemoryNeed(baseSize, targetSize, 1)} bytes of wasm memory, the limit is ${limit}`,
  );
}

/** The next level below `level` with a smaller source table, if any. */
function smallerLevel(level: number): number | undefined {
  const step = LARGE_STEP[level] ?? 2;
  for (let l = level - 1; l >= 1; l--) if ((LARGE_STEP[l] ?? 2) > step) return l;
  return undefined;
}

async function load(xd: Xd3Instance, input: DeltaInput, size: number, what: string): Promise<{ ptr: number; view: Uint8Array }> {
  const area = xd.alloc(size, what);
  if (input instanceof Uint8Array) {
    area.view.set(input);
    return area;
  }
  const fh = await open(input.path, 'r');
  try {
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(area.view, done, Math.min(size - done, 16 << 20), done);
      if (bytesRead === 0) throw new FleetError('FC_ERR_DELTA', `${input.path}: file shrank while reading (${done} of ${size} bytes)`);
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  if (input.digest !== undefined) {
    const got = `sha256:${createHash('sha256').update(area.view).digest('hex')}`;
    if (got !== input.digest) throw new DigestMismatchError(input.digest, got);
  }
  return area;
}

export interface EncodeResult {
  /** The raw VCDIFF (no secondary compression), a copy outside wasm memory. */
  readonly vcdiff: Buffer;
  /** The xdelta3 level actually used (lowered for very large inputs). */
  readonly level: number;
}

/**
 * The level used when none is asked for, by base size. Level 9's time grows faster than the
 * base (its source table outgrows the CPU caches) while its deltas stay within a few percent
 * of level 6's: measured on a 200 MiB pack with 1 file in 5 edited, level 9 took 18.6 s
 * (184 KB), level 6 11.6 s (198 KB), level 4 5.6 s (271 KB); at 64 MiB, 4.7 s against 3.6 s
 * for a 2% larger delta. A push waits for this encode before any machine starts.
 */
export function defaultLevel(baseSize: number): number {
  if (baseSize <= 64 * 2 ** 20) return 9;
  return baseSize <= 256 * 2 ** 20 ? 6 : 4;
}

/** How the CLI flags describe defaultLevel(). */
export const DEFAULT_LEVEL_HELP = 'xdelta3 level 1-9 (default: by base size, 9 up to 64 MiB, 6 up to 256 MiB, 4 above)';

/**
 * VCDIFF of `target` against `base`, at xdelta3 level `level` (1–9, default defaultLevel()),
 * lowered to the highest level that fits in wasm memory. Should a job still run out of memory
 * (the host refuses a large wasm memory, or xdelta3 needs more than computed), it is retried
 * at the next level with a smaller source table.
 */
export async function encodeDelta(base: DeltaInput, target: DeltaInput, options: { level?: number } = {}): Promise<EncodeResult> {
  const baseSize = await sizeOf(base);
  const wanted = options.level ?? defaultLevel(baseSize);
  if (!Number.isInteger(wanted) || wanted < 1 || wanted > 9) throw new FleetError('FC_ERR_USAGE', `delta level must be 1-9, got ${wanted}`);
  const targetSize = await sizeOf(target);
  let level = chooseLevel(baseSize, targetSize, wanted);
  for (;;) {
    try {
      return { vcdiff: await encodeAt(base, baseSize, target, targetSize, level), level };
    } catch (err) {
      const lower = smallerLevel(level);
      if (!isOutOfMemory(err) || lower === undefined) throw err;
      level = lower;
    }
  }
}

async function encodeAt(base: DeltaInput, baseSize: number, target: DeltaInput, targetSize: number, level: number): Promise<Buffer> {
  const xd = await Xd3Instance.create(encodeMemoryNeed(baseSize, targetSize, level));
  const source = await load(xd, base, baseSize, 'base');
  const input = await load(xd, target, targetSize, 'target');
  const out = xd.encode(input, source, encodeOutputMax(targetSize), (level << COMPLEVEL_SHIFT) | XD3_ADLER32);
  return Buffer.from(out);
}
