// Which files of a large base a new file took its content from, when its path, its content
// and its file name do not tell it all (plan.ts's counterparts): a file split, renamed and
// edited, or merged into another. typescript 5.5's lib/typescript.js took in the server that
// 5.4 had in lib/tsserver.js: in a base above one segment (typescript and next.js side by
// side), encoded against its old self only, it took 774 KB of VCDIFF, against 133 KB with
// tsserver.js in its segment too.
//
// Content-defined samples, as rsync-like deduplication finds shared chunks: a gear hash rolls
// over the bytes (each 32-bit value depends on the last 32 bytes), and the positions where
// its top bits are zero (1 in 512, or fewer: at most MAX_SAMPLES in all) are samples, the
// same wherever the same bytes are, whatever moved them. The new files are sampled first;
// one pass over the base then counts, for each base file, the distinct samples it shares
// with each of them. Costs one read of the base (2-3 ns a byte) and nothing held but the
// samples (a few MiB at most): taken only when the base is above one segment and enough of
// the target has no counterpart of the same content (plan.ts's filesToSample).
import type { OpenInput } from './delta-input.js';
import type { TarEntry } from './tar-index.js';

/** A sample is a position whose hash has at least this many leading zero bits: one in 2^MIN_SAMPLE_BITS. */
const MIN_SAMPLE_BITS = 9;
/** More bits are asked of samples when the files to sample are large: about this many at most. */
const MAX_SAMPLES = 1 << 17;
/** Bytes a hash value depends on; samples closer than this to a file's start are not taken. */
const HASH_SPAN = 32;
/** Files smaller than this are not sampled: a few samples at most, and little to save. */
export const SKETCH_MIN = 4096;
/** A base file is taken when it shares at least this share of a new file's samples (and two). */
const MIN_SHARE = 1 / 8;
const PIECE = 1 << 20;

/** The gear table: 256 fixed pseudo-random values (xorshift32), the same in every process. */
const GEAR = (() => {
  const table = new Int32Array(256);
  let s = 0x9e3779b9 | 0;
  for (let i = 0; i < 256; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    table[i] = s;
  }
  return table;
})();

/** Rolls the gear hash over the data bytes of entries, calling `sample` at each sample position. */
class GearScan {
  /** A sample's hash is below this (its top bits zero). */
  readonly #below: number;
  #hash = 0;
  /** Data bytes of the current file seen so far. */
  #seen = 0;

  constructor(bits: number) {
    this.#below = 2 ** (32 - bits);
  }

  reset(): void {
    this.#hash = 0;
    this.#seen = 0;
  }

  /** Rolls over `bytes`, calling `sample(hash)` at each sample HASH_SPAN bytes or more into the file. */
  update(bytes: Uint8Array, sample: (hash: number) => void): void {
    let h = this.#hash;
    const skip = Math.max(0, HASH_SPAN - this.#seen);
    const below = this.#below;
    for (let i = 0; i < bytes.length; i++) {
      h = ((h << 1) + (GEAR[bytes[i] as number] as number)) | 0;
      if (h >>> 0 < below && i >= skip) sample(h);
    }
    this.#hash = h;
    this.#seen += bytes.length;
  }
}

/** Reads [start, end) of `input` in pieces into `piece`, handing each to `each`. */
async function readRange(input: OpenInput, start: number, end: number, piece: Buffer, each: (view: Uint8Array) => void, signal?: AbortSignal): Promise<void> {
  for (let at = start; at < end; at += piece.length) {
    signal?.throwIfAborted();
    const view = piece.subarray(0, Math.min(piece.length, end - at));
    await input.read(at, view);
    each(view);
  }
}

/**
 * For each of `files` (entries of `target`, at least SKETCH_MIN bytes of data), the files of
 * `base` that share at least MIN_SHARE of its samples (and two), most shared first. None,
 * and nothing read, when the files have fewer than `minBytes` bytes of data in all.
 */
export async function contentSources(
  base: OpenInput, target: OpenInput, files: readonly TarEntry[], signal?: AbortSignal, minBytes = 0,
): Promise<Map<TarEntry, TarEntry[]>> {
  const baseEntries = base.index?.entries ?? [];
  if (files.length === 0 || baseEntries.length === 0) return new Map();
  const sampled = files.reduce((sum, t) => sum + (t.end - t.dataStart), 0);
  if (sampled < minBytes) return new Map();
  const piece = Buffer.allocUnsafe(PIECE);
  const scan = new GearScan(Math.max(MIN_SAMPLE_BITS, Math.ceil(Math.log2(sampled / MAX_SAMPLES))));
  // the new files' distinct samples: hash → the files that have it
  const filesOf = new Map<number, number[]>();
  const sampleCount = new Uint32Array(files.length);
  for (const [f, t] of files.entries()) {
    const own = new Set<number>();
    scan.reset();
    await readRange(target, t.dataStart, t.end, piece, (view) => scan.update(view, (h) => own.add(h)), signal);
    sampleCount[f] = own.size;
    for (const h of own) {
      const list = filesOf.get(h);
      if (list) list.push(f);
      else filesOf.set(h, [f]);
    }
  }
  if (filesOf.size === 0) return new Map();

  const found = files.map((): { entry: TarEntry; shared: number }[] => []);
  const shared = new Uint32Array(files.length);
  // one pass over the base, file by file: each file's distinct samples that a new file has
  // A base file shares at most its own samples, about one per 2^bits bytes: one smaller than
  // half MIN_SHARE of the smallest file sampled cannot be a source (the scan of a large base
  // for a large file that changed reads its large files only).
  const smallest = files.reduce((min, t) => Math.min(min, t.end - t.dataStart), Infinity);
  const scanned = Math.max(SKETCH_MIN, Math.floor((MIN_SHARE / 2) * smallest));
  for (const entry of baseEntries) {
    if (entry.end - entry.dataStart < scanned) continue;
    const hits = new Set<number>();
    scan.reset();
    await readRange(base, entry.dataStart, entry.end, piece, (view) => scan.update(view, (h) => {
      if (filesOf.has(h)) hits.add(h);
    }), signal);
    const touched: number[] = [];
    for (const h of hits) {
      for (const f of filesOf.get(h) as number[]) {
        if (shared[f] === 0) touched.push(f);
        shared[f] = (shared[f] as number) + 1;
      }
    }
    for (const f of touched) {
      if ((shared[f] as number) >= Math.max(2, MIN_SHARE * (sampleCount[f] as number))) found[f]?.push({ entry, shared: shared[f] as number });
      shared[f] = 0;
    }
  }
  const sources = new Map<TarEntry, TarEntry[]>();
  for (const [f, t] of files.entries()) {
    const list = found[f] as { entry: TarEntry; shared: number }[];
    // most shared first; a tie in base order (sort is stable)
    if (list.length > 0) sources.set(t, list.sort((a, b) => b.shared - a.shared).map((s) => s.entry));
  }
  return sources;
}
