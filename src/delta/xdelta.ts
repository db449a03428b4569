// VCDIFF encode/decode of whole files with xdelta3-wasm. xdelta3-wasm only exports the
// in-memory API, so base, target and output live in wasm memory for the length of one job
// (files are read straight into it and written straight out of it: no second copy in JS).
// The memory a job needs is computed up front; the compression level is lowered when a
// large base would not fit in 4 GiB, and a job that cannot fit fails with a clear message.
import { open, stat } from 'node:fs/promises';
import { FleetError } from '../errors.js';
import { inspectVcdiff } from './vcdiff.js';
import { MAX_MEMORY_BYTES, Xd3Instance } from './wasm.js';

/** A file on disk (read into wasm memory directly) or bytes already in memory. */
export type DeltaInput = { readonly path: string } | Uint8Array;

const COMPLEVEL_SHIFT = 20;
/** Per-window Adler-32 of the target, checked on decode (native xdelta3 sets it too). */
const XD3_ADLER32 = 1 << 10;
const WINSIZE = 1 << 23; // XD3_DEFAULT_WINSIZE, used by xd3_encode_memory
const SLACK = 96 * 1024 * 1024; // small-match tables, section buffers, malloc overhead
/** xdelta3's "large step" (source checksum stride) per level: see xdelta3-cfgs.h. */
const LARGE_STEP: Record<number, number> = { 1: 26, 2: 15, 3: 8, 4: 8, 5: 8, 6: 3, 7: 2, 8: 2, 9: 2 };

async function sizeOf(input: DeltaInput): Promise<number> {
  return input instanceof Uint8Array ? input.length : (await stat(input.path)).size;
}

function floorPow2(n: number): number {
  return n < 8 ? 8 : 2 ** Math.floor(Math.log2(n));
}

/** Largest possible VCDIFF for a target of `size` bytes (all ADDs, per-window headers). */
export function encodeOutputMax(size: number): number {
  return size + Math.ceil(size / 64) + 64 * 1024;
}

/** Bytes of wasm memory an encode needs at `level` (source, target, output, tables). */
export function encodeMemoryNeed(baseSize: number, targetSize: number, level: number): number {
  const largeTable = 4 * floorPow2(baseSize / (LARGE_STEP[level] ?? 3));
  const window = Math.min(targetSize, WINSIZE);
  const smallTables = 8 * floorPow2(Math.max(window, 8)) * 2;
  return baseSize + targetSize + encodeOutputMax(targetSize) + largeTable + smallTables + SLACK;
}

export function decodeMemoryNeed(baseSize: number, deltaSize: number, targetSize: number): number {
  return baseSize + deltaSize + targetSize + 2 * WINSIZE + SLACK;
}

/** The highest level ≤ `wanted` whose encode fits in wasm memory; throws when none does. */
export function chooseLevel(baseSize: number, targetSize: number, wanted: number): number {
  for (let level = wanted; level >= 1; level--) {
    if (encodeMemoryNeed(baseSize, targetSize, level) <= MAX_MEMORY_BYTES) return level;
  }
  throw new FleetError(
    'FC_ERR_DELTA',
    `base (${baseSize} bytes) and target (${targetSize} bytes) are too large for xdelta3-wasm: an encode needs ` +
      `${encodeMemoryNeed(baseSize, targetSize, 1)} bytes of wasm memory, the limit is ${MAX_MEMORY_BYTES}`,
  );
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
  return area;
}

export interface EncodeResult {
  /** The raw VCDIFF (no secondary compression), a copy outside wasm memory. */
  readonly vcdiff: Buffer;
  /** The xdelta3 level actually used (lowered for very large inputs). */
  readonly level: number;
}

/** VCDIFF of `target` against `base`, at xdelta3 level `level` (1–9, default 9). */
export async function encodeDelta(base: DeltaInput, target: DeltaInput, options: { level?: number } = {}): Promise<EncodeResult> {
  const wanted = options.level ?? 9;
  if (!Number.isInteger(wanted) || wanted < 1 || wanted > 9) throw new FleetError('FC_ERR_USAGE', `delta level must be 1-9, got ${wanted}`);
  const baseSize = await sizeOf(base);
  const targetSize = await sizeOf(target);
  const level = chooseLevel(baseSize, targetSize, wanted);
  const xd = await Xd3Instance.create(encodeMemoryNeed(baseSize, targetSize, level));
  const source = await load(xd, base, baseSize, 'base');
  const input = await load(xd, target, targetSize, 'target');
  const out = xd.run('encode', input, source, encodeOutputMax(targetSize), (level << COMPLEVEL_SHIFT) | XD3_ADLER32);
  return { vcdiff: Buffer.from(out), level };
}

/**
 * Rebuilds the target from `base` and a raw VCDIFF. The result is handed to `sink` as a
 * view into wasm memory (valid only during the call), so a 1 GiB result is never copied.
 */
export async function decodeDelta<T>(base: DeltaInput, vcdiff: Uint8Array, sink: (result: Uint8Array) => Promise<T>): Promise<T> {
  const { targetSize } = inspectVcdiff(vcdiff);
  const baseSize = await sizeOf(base);
  const xd = await Xd3Instance.create(decodeMemoryNeed(baseSize, vcdiff.length, targetSize));
  const source = await load(xd, base, baseSize, 'base');
  const input = await load(xd, vcdiff, vcdiff.length, 'delta');
  const out = xd.run('decode', input, source, Math.max(targetSize, 1), 0);
  if (out.length !== targetSize) throw new FleetError('FC_ERR_DELTA', `xdelta3 decode produced ${out.length} bytes, the delta announces ${targetSize}`);
  return sink(out);
}
