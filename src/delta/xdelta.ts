// VCDIFF encode with xdelta3-wasm, one window at a time, in memory bounded whatever the size
// of the project. xdelta3-wasm only exports the in-memory API (source, target, output and the
// source checksum table all in wasm memory for one call), so the target is cut into windows
// of at most WINDOW_BYTES, each encoded against one source segment of the base of at most
// SEGMENT_BYTES: the range holding the same tar entries (plan.ts). xdelta3 writes each
// window's source segment (RFC 3284 §4.2) relative to the segment it was given; shifted by
// the segment's offset in the base (vcdiff.ts), the outputs of all calls make one VCDIFF,
// which any decoder reads (ours, xdelta3 -d). One instance sized for the largest call serves
// them all: wasm memory is at most encodeMemoryBound(level), 216 MiB at level 9, and files are
// read in pieces (a pass to hash and index each, then the ranges each window needs). The
// VCDIFF goes to a file as each window comes: a delta can be as large as its target.
import { open, type FileHandle } from 'node:fs/promises';
import { FleetError } from '../errors.js';
import { OpenInput, type DeltaInput } from './delta-input.js';
import { filesToSample, planWindows, uniqueNames, type PlanLimits, type WindowPlan } from './plan.js';
import { contentSources, SKETCH_MIN } from './similar.js';
import { shiftedWindows, VCDIFF_HEADER } from './vcdiff.js';
import { isOutOfMemory, Xd3Instance } from './wasm.js';
import { writeFully } from '../write-fully.js';

export type { DeltaInput } from './delta-input.js';

const COMPLEVEL_SHIFT = 20;
/** Per-window Adler-32 of the target, checked on decode (native xdelta3 sets it too). */
const XD3_ADLER32 = 1 << 10;
const WINSIZE = 1 << 23; // XD3_DEFAULT_WINSIZE, used by xd3_encode_memory
const ALLOCSIZE = 1 << 14; // XD3_ALLOCSIZE: the smallest source window
/** iopt and section buffers, code tables, malloc overhead: 2-4 MiB measured, for any sizes. */
const SLACK = 16 * 1024 * 1024;
/** xdelta3's "large step" (source checksum stride) per level: see xdelta3-cfgs.h. */
const LARGE_STEP: Record<number, number> = { 1: 26, 2: 15, 3: 8, 4: 8, 5: 8, 6: 3, 7: 2, 8: 2, 9: 2 };

/** The largest piece of the target xdelta3 encodes in one call (it writes 8 MiB VCDIFF windows). */
export const WINDOW_BYTES = 16 * 2 ** 20;
/** The largest source segment of one call: a power of two, as xdelta3 rounds it up to one. */
export const SEGMENT_BYTES = 32 * 2 ** 20;

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
 * source segment one source window, and xd3_set_source rounds that window up to a power of
 * two, so a segment just above 32 MiB gets the table of a 64 MiB one (4 bytes per `large step`).
 */
export function largeTableBytes(sourceSize: number, level: number): number {
  const window = Math.max(ceilPow2(sourceSize), ALLOCSIZE);
  return 4 * tableEntries(Math.floor(window / (LARGE_STEP[level] ?? 2)));
}

/** Largest possible VCDIFF for a target of `size` bytes (all ADDs, per-window headers). */
function encodeOutputMax(size: number): number {
  return size + Math.ceil(size / 64) + 64 * 1024;
}

/** Bytes of wasm memory one call needs at `level` (source segment, target window, output, tables). */
function encodeMemoryNeed(sourceSize: number, targetSize: number, level: number): number {
  const window = Math.max(Math.min(targetSize, WINSIZE), 8);
  // target checksum table, its chain (xd3_slist per byte of the rounded window), input buffer
  const small = 4 * tableEntries(window) + 4 * ceilPow2(window) + window;
  return sourceSize + targetSize + encodeOutputMax(targetSize) + largeTableBytes(sourceSize, level) + small + SLACK;
}

/**
 * The most wasm memory an encode takes at `level`, whatever the size of its inputs: one call
 * on the largest segment and window (smaller inputs get a smaller instance).
 */
export function encodeMemoryBound(level: number): number {
  return encodeMemoryNeed(SEGMENT_BYTES, WINDOW_BYTES, level);
}

/** The next level below `level` with a smaller source table, if any. */
function smallerLevel(level: number): number | undefined {
  const step = LARGE_STEP[level] ?? 2;
  for (let l = level - 1; l >= 1; l--) if ((LARGE_STEP[l] ?? 2) > step) return l;
  return undefined;
}

/** Told of a piece of VCDIFF just written and the VCDIFF's size so far; true stops the encode after the window. */
export type OutputWatch = (written: Uint8Array, size: number) => boolean | Promise<boolean>;

export interface EncodeResult {
  /** Bytes of the raw VCDIFF (no secondary compression) written. */
  readonly size: number;
  /** The xdelta3 level actually used (lowered when the host refused the memory). */
  readonly level: number;
  /** Bytes of wasm memory the encode used: at most encodeMemoryBound(level). */
  readonly memoryBytes: number;
  /** Calls to xdelta3 (target windows, each against its own source segment). */
  readonly windows: number;
  /** False when `onOutput` stopped the encode: the file then holds only its start. */
  readonly complete: boolean;
}

/**
 * The level used when none is asked for: 9 for a base up to 64 MiB; above, 6 when both inputs
 * are tars, else 4. A push waits for this encode before any machine starts. Up to 64 MiB,
 * level 9 stays within a few seconds. Above, measured (2026-12-05, windowed):
 * - typescript and next.js side by side (124 MB base, bench/delta.ts): level 9 3.5 s for
 *   395 KB after brotli (0.81× xdelta3 -9), level 6 2.7 s for 413 KB (0.84×), level 4 2.0 s
 *   for 474 KB (0.97×); on 2026-12-02, a 200 MiB node_modules pack: level 9 6.5 s for 407 KB,
 *   level 6 5.0 s (+5%), level 4 3.5 s (+15%).
 * - 192 MiB of random binary files in a tar, one edit: 0.6 s at level 4, 0.7 s at 6, 0.8 s at 9
 *   (windows are mapped by entries, each segment starting where its window's bytes come from).
 *   The same bytes not as a tar: 1.7 s at level 4, 4.6 s at 6 (mapped by position, each
 *   segment starts 8 MiB before them, and xdelta3 searches those first).
 */
export function defaultLevel(baseSize: number, tars: boolean): number {
  if (baseSize <= 64 * 2 ** 20) return 9;
  return tars ? 6 : 4;
}

/** How the CLI flags describe defaultLevel(). */
export const DEFAULT_LEVEL_HELP = 'xdelta3 level 1-9 (default: 9 for a base up to 64 MiB; above, 6 for tars, else 4; lower is faster, for larger deltas)';

/**
 * VCDIFF of `target` against `base` into the file `output` (created or replaced), at xdelta3
 * level `level` (1–9, default defaultLevel()).
 * Each file is read once from start to end first (to index it, and to check its digest when
 * it has one: a mismatch is refused before anything is encoded), then window by window.
 * Should the host refuse the wasm memory, or xdelta3 run out of it, the encode is retried at
 * the next level with a smaller source table (184 MiB at level 6, 156 MiB at level 1).
 * `signal` is looked at between windows (a window's encode holds the thread).
 * `watchOutput` gives, as each attempt starts (one at a lower level writes the VCDIFF anew),
 * what is told of each piece of VCDIFF as it is written; once that answers true, the encode
 * stops at the end of the window (a caller that has a better delta already, or knows this
 * one cannot be used: the rest would be encoded for nothing).
 * `windowBytes` (internal, default WINDOW_BYTES, never above it): the largest target window,
 * lowered by tests so that an encode of a few MiB has several windows to stop between.
 */
export async function encodeDelta(
  base: DeltaInput, target: DeltaInput, output: string, options: { level?: number; signal?: AbortSignal; watchOutput?: () => OutputWatch; windowBytes?: number } = {},
): Promise<EncodeResult> {
  const given = options.level;
  if (given !== undefined && (!Number.isInteger(given) || given < 1 || given > 9)) throw new FleetError('FC_ERR_USAGE', `delta level must be 1-9, got ${given}`);
  const window = options.windowBytes ?? WINDOW_BYTES;
  if (!Number.isInteger(window) || window < 1 || window > WINDOW_BYTES) throw new FleetError('FC_ERR_USAGE', `delta window must be 1-${WINDOW_BYTES} bytes, got ${window}`);
  const limits: PlanLimits = { window, segment: SEGMENT_BYTES };
  const source = await OpenInput.open(base, 'base');
  try {
    const input = await OpenInput.open(target, 'target');
    try {
      const wanted = given ?? defaultLevel(source.size, source.index !== undefined && input.index !== undefined);
      const plan = await planEncode(source, input, limits, options.signal);
      const out = await open(output, 'w');
      try {
        let level = wanted;
        for (;;) {
          try {
            return { ...(await encodeWindows(source, input, plan, level, out, options.signal, options.watchOutput?.())), level, windows: plan.length };
          } catch (err) {
            const lower = smallerLevel(level);
            if (!isOutOfMemory(err) || lower === undefined) throw err;
            level = lower;
            await out.truncate(0); // what the failed attempt wrote
          }
        }
      } finally {
        await out.close();
      }
    } finally {
      await input.close();
    }
  } finally {
    await source.close();
  }
}

/** Target bytes to sample below this are not worth a pass over the base to find where they came from. */
const SAMPLED_MIN_BYTES = 64 * 1024;

/**
 * The plan of an encode (plan.ts); for tars with a base above one segment, with the
 * ContentSources of the files worth sampling (similar.ts), when there are enough bytes to sample.
 */
async function planEncode(base: OpenInput, target: OpenInput, limits: PlanLimits, signal: AbortSignal | undefined): Promise<WindowPlan[]> {
  if (!base.index || !target.index || base.size <= limits.segment) return planWindows(target.size, target.index, base.size, base.index, limits);
  const byName = uniqueNames(base.index);
  const files = filesToSample(target.index, base.index, base.size, limits, SKETCH_MIN, byName);
  const sources = await contentSources(base, target, files, signal, SAMPLED_MIN_BYTES);
  return planWindows(target.size, target.index, base.size, base.index, limits, sources, byName);
}

async function encodeWindows(
  base: OpenInput, target: OpenInput, plan: readonly WindowPlan[], level: number, out: FileHandle, signal: AbortSignal | undefined, onOutput: OutputWatch | undefined,
): Promise<{ size: number; memoryBytes: number; complete: boolean }> {
  const sourceMax = plan.reduce((max, w) => Math.max(max, w.sourceEnd - w.sourceStart), 1);
  const targetMax = plan.reduce((max, w) => Math.max(max, w.targetEnd - w.targetStart), 1);
  const xd = await Xd3Instance.create(encodeMemoryNeed(sourceMax, targetMax, level));
  const sourceArea = xd.alloc(sourceMax, 'source segment');
  const inputArea = xd.alloc(targetMax, 'target window');
  const outputArea = xd.alloc(encodeOutputMax(targetMax), 'output');
  let size = 0;
  let stop = false;
  const write = async (bytes: Uint8Array): Promise<void> => {
    await writeFully(out, bytes, size);
    size += bytes.length;
    if (onOutput && (await onOutput(bytes, size))) stop = true;
  };
  await write(VCDIFF_HEADER);
  for (const w of plan) {
    signal?.throwIfAborted();
    const targetLength = w.targetEnd - w.targetStart;
    const sourceLength = w.sourceEnd - w.sourceStart;
    await target.read(w.targetStart, inputArea.view.subarray(0, targetLength));
    await base.read(w.sourceStart, sourceArea.view.subarray(0, sourceLength));
    const encoded = xd.encode(inputArea, targetLength, sourceLength > 0 ? sourceArea : undefined, sourceLength, outputArea, (level << COMPLEVEL_SHIFT) | XD3_ADLER32);
    // written before the next call writes the output area again
    for (const part of shiftedWindows(encoded, w.sourceStart)) await write(part);
    if (stop) return { size, memoryBytes: xd.memoryBytes, complete: false };
  }
  return { size, memoryBytes: xd.memoryBytes, complete: true };
}
