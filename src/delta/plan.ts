// How a windowed encode cuts the work: the new tar (target) in windows of at most
// `window` bytes, and for each window one source segment of the base of at most `segment`
// bytes, the base range xdelta3 may copy from (a VCDIFF window has one source segment).
// A base that fits in one segment is every window's segment, whole (planWholeBase); what
// follows is how a larger one is cut.
//
// With both inputs indexed as tars, the target's entries are walked in order and each is
// given its counterpart in the base: the entry with the same path, else one with the same
// content (a renamed or moved file), else the one file with its file name (moved and
// edited), else the file it shares most content with (split, or renamed and edited: found
// by sampling, similar.ts). packer.ts writes entries in a fixed order, so counterparts
// mostly follow each other in the base too, and a window's segment is the range they span.
// A window is cut early where the next counterpart is not coherent with the window's range:
// far from it (a moved file, files deleted from the base) or growing it much faster than the
// target grows.
// A displaced run of entries gets a window of its own when it matches DISPLACED_MIN bytes
// or more (a window costs about 25 bytes and 0.05 ms); a smaller one stays in its window,
// encoded without its counterpart. A file larger than half a window gets windows of its
// own, each against the same offsets of its counterpart, wider by the difference in size
// (how far its edits may have moved its bytes).
//
// A window without counterparts gets the base range after the last matched one; every
// window of an input that is not a tar gets the base range at the same relative position,
// (segment - window) / 2 wider on each side. A large file that changed also gets in its
// segments the other files it shares content with, as far as the segment holds them. What a
// whole-base encode would copy from elsewhere in the base (a small file assembled from
// pieces of files far away) is encoded as data. Pure functions: the plan depends on the
// sizes, the indexes and the content sources only.
import type { TarEntry, TarIndex } from './tar-index.js';

export interface PlanLimits {
  /** Largest target window handed to xdelta3 in one call. */
  readonly window: number;
  /** Largest source segment: at least twice the window. */
  readonly segment: number;
}

export interface WindowPlan {
  readonly targetStart: number;
  readonly targetEnd: number;
  /** The source segment in the base; empty (start = end) when the base is. */
  readonly sourceStart: number;
  readonly sourceEnd: number;
  /** How the segment was found: matched entries, or relative position. */
  readonly how: 'entries' | 'position';
}

/** A displaced run of entries smaller than this stays in its window (as data xdelta3 adds). */
export const DISPLACED_MIN = 1024;
/** A window's base range may grow to twice its target bytes, or this much more (deleted files between). */
const COHERENCE_SLACK = 1 << 20;

interface Range {
  start: number;
  end: number;
}

function union(a: Range, b: Range): Range {
  return { start: Math.min(a.start, b.start), end: Math.max(a.end, b.end) };
}

/** `core` widened by up to `margin` on each side, within [0, size) and at most `limit` long. */
function widen(core: Range, margin: number, limit: number, size: number): Range {
  const want = Math.min(limit, core.end - core.start + 2 * Math.floor(margin));
  let start = Math.max(0, core.start - Math.floor((want - (core.end - core.start)) / 2));
  const end = Math.min(size, start + want);
  start = Math.max(0, end - want);
  return { start, end };
}

class Planner {
  readonly windows: WindowPlan[] = [];
  #start = 0;
  #hull: Range | undefined;
  /** Where the last window's range ended in the base: the anchor of a window without counterparts. */
  #anchor: number | undefined;

  constructor(
    readonly targetSize: number,
    readonly baseSize: number,
    readonly limits: PlanLimits,
  ) {}

  get start(): number {
    return this.#start;
  }

  get hull(): Range | undefined {
    return this.#hull;
  }

  add(range: Range): void {
    this.#hull = this.#hull ? union(this.#hull, range) : range;
  }

  /**
   * Ends the open window at `end` (nothing when it would be empty); the next one starts there.
   * Its segment is the range its entries matched, `margin` wider on each side: none by
   * default, as the segment then starts where the window's first bytes come from, the place
   * xdelta3 looks first (an unchanged 16 MiB window is encoded in 10 ms, against 600 ms when
   * the segment starts 256 KiB earlier: measured).
   */
  close(end: number, margin = 0): void {
    if (end <= this.#start) return;
    const length = end - this.#start;
    let core = this.#hull;
    const how = core ? 'entries' : 'position';
    if (!core) {
      // centred on where the window's middle falls in the base, by relative position
      const relative = this.targetSize === 0 ? 0 : Math.floor(((this.#start + length / 2) / this.targetSize) * this.baseSize - length / 2);
      const at = Math.max(0, Math.min(this.baseSize - length, this.#anchor ?? relative));
      core = { start: at, end: Math.min(this.baseSize, at + length) };
    }
    const source = widen(core, margin, this.limits.segment, this.baseSize);
    this.windows.push({ targetStart: this.#start, targetEnd: end, sourceStart: source.start, sourceEnd: source.end, how });
    if (how === 'entries') this.#anchor = core.end;
    this.#start = end;
    this.#hull = undefined;
  }
}

/** The base range that holds the target bytes [from, to) of `t`, by the same offsets in `b`. */
function mapped(t: TarEntry, b: TarEntry, from: number, to: number): Range | undefined {
  const start = Math.max(b.start, b.dataStart + (from - t.dataStart));
  const end = Math.min(b.end, b.dataStart + (to - t.dataStart));
  return end > start ? { start, end } : undefined;
}

/** A file's name: its path's last component. */
function fileName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

const dataSize = (e: TarEntry): number => e.end - e.dataStart;

/** See uniqueNames. */
type UniqueNames = ReadonlyMap<string, TarEntry>;

/**
 * The base's files (regular, CONTENT_KEY_MIN bytes or more) by file name, for the names one
 * file alone has: a file moved to another directory and edited keeps neither its path nor
 * its content, but mostly its name. An encode computes it once for filesToSample and
 * planWindows.
 */
export function uniqueNames(base: TarIndex): UniqueNames {
  const byName = new Map<string, TarEntry | null>();
  for (const e of base.entries) {
    if (e.contentKey === undefined) continue;
    const name = fileName(e.path);
    byName.set(name, byName.has(name) ? null : e);
  }
  const unique = new Map<string, TarEntry>();
  for (const [name, e] of byName) if (e) unique.set(name, e);
  return unique;
}

/** What a target entry's counterpart is looked up in, besides the base's index. */
interface Lookup {
  readonly base: TarIndex;
  readonly byName: UniqueNames;
  /** Base files that target files share content with, most first (similar.ts): see ContentSources. */
  readonly sources: ContentSources;
}

/** The base entry `t` stands for by its path, content or name (see counterpart), if any. */
function namedCounterpart(t: TarEntry, { base, byName }: Lookup, near: number): TarEntry | undefined {
  const byPath = base.byPath.get(t.path);
  if (byPath !== undefined) return base.entries[byPath];
  if (t.contentKey === undefined) return undefined;
  let best: TarEntry | undefined;
  for (const i of base.byContent.get(t.contentKey) ?? []) {
    const e = base.entries[i] as TarEntry;
    if (!best || Math.abs(e.start - near) < Math.abs(best.start - near)) best = e;
  }
  if (best) return best;
  const named = byName.get(fileName(t.path));
  return named && dataSize(named) <= 2 * dataSize(t) && dataSize(t) <= 2 * dataSize(named) ? named : undefined;
}

/**
 * The base entry `t` stands for: the same path, else the same content (the nearest to
 * `near`), else the one file of the base with its file name and a size within a factor of
 * two, else the file it shares most content with (lookup.sources).
 */
function counterpart(t: TarEntry, lookup: Lookup, near: number): TarEntry | undefined {
  return namedCounterpart(t, lookup, near) ?? lookup.sources.get(t)?.[0];
}

/** True for an entry that gets windows of its own (see planByEntries). */
const isLarge = (t: TarEntry, window: number): boolean => t.end - t.start > window / 2;

/**
 * For some target files, the base files that share content with each, most first (found by
 * similar.ts): a file without a counterpart by path, content or name takes the first as its
 * own; a large file (windows of its own) that changed adds the others to its windows'
 * segments, as far as they fit (typescript 5.5's lib/typescript.js took in the server that
 * 5.4 had in lib/tsserver.js).
 */
type ContentSources = ReadonlyMap<TarEntry, readonly TarEntry[]>;

/**
 * The regular files of `target`, of at least `minSize` bytes of data, whose ContentSources
 * a plan would use: those without a counterpart by path, content or name, and the large ones
 * whose counterpart's content differs. Empty when the base fits in one segment. `byName`:
 * uniqueNames(base), when the caller has it.
 */
export function filesToSample(target: TarIndex, base: TarIndex, baseSize: number, limits: PlanLimits, minSize: number, byName?: UniqueNames): TarEntry[] {
  if (baseSize <= limits.segment) return [];
  const lookup: Lookup = { base, byName: byName ?? uniqueNames(base), sources: new Map() };
  return target.entries.filter((t) => {
    if (t.contentKey === undefined || dataSize(t) < minSize) return false;
    const b = namedCounterpart(t, lookup, 0);
    return b === undefined || (isLarge(t, limits.window) && b.contentKey !== t.contentKey);
  });
}

/** `range` grown by the whole data of each of `extra` that keeps it within `limit` bytes, in order. */
function withSources(range: Range | undefined, extra: readonly TarEntry[], limit: number): Range | undefined {
  let grown = range;
  for (const e of extra) {
    const candidate = grown ? union(grown, { start: e.start, end: e.end }) : { start: e.start, end: e.end };
    if (candidate.end - candidate.start <= limit) grown = candidate;
  }
  return grown;
}

/** Windows of at most `window` bytes, each against the base range at the same relative position. */
function planByPosition(p: Planner): void {
  // wide margins: insertions and deletions before a window move its bytes in the base
  const margin = Math.floor((p.limits.segment - p.limits.window) / 2);
  while (p.targetSize - p.start > p.limits.window) p.close(p.start + p.limits.window, margin);
  p.close(p.targetSize, margin);
}

/**
 * Windows of at most `window` bytes, each against the whole base (it fits in one segment): as
 * a whole-base encode, content a file took from anywhere in the base is found (a file split,
 * or renamed and edited: typescript 5.5's lib/typescript.js took in the server that 5.4 had
 * in lib/tsserver.js, and its delta from 5.4 was 4.5 times larger with segments of
 * counterparts only).
 */
function planWholeBase(p: Planner): void {
  while (p.targetSize - p.start > p.limits.window) p.close(p.start + p.limits.window, p.baseSize);
  p.close(p.targetSize, p.baseSize);
}

/** True when a window's base range `range` stays coherent with its target bytes [start, end). */
function fits(range: Range, start: number, end: number, segment: number): boolean {
  return range.end - range.start <= Math.min(segment, Math.max(2 * (end - start), end - start + COHERENCE_SLACK));
}

function planByEntries(p: Planner, target: TarIndex, base: TarIndex, sources: ContentSources, byName: UniqueNames | undefined): void {
  const entries = target.entries;
  const { window, segment } = p.limits;
  const lookup: Lookup = { base, byName: byName ?? uniqueNames(base), sources };
  const rangeOf = (t: TarEntry): Range | undefined => {
    const b = counterpart(t, lookup, p.hull?.end ?? 0);
    return b && mapped(t, b, t.start, t.end);
  };
  /** Entries before this one are encoded without their counterparts (a small displaced run). */
  let skipUntil = 0;
  for (let i = 0; i < entries.length; i++) {
    const t = entries[i] as TarEntry;
    if (isLarge(t, window)) {
      // a large file: windows of its own, each piece against the same offsets of its counterpart
      // (wider margins: its edits may have moved its bytes by up to the difference in size),
      // and the other files it shares content with, whole, as far as the segment holds them
      p.close(t.start);
      const b = counterpart(t, lookup, p.hull?.end ?? 0);
      const extra = (sources.get(t) ?? []).filter((e) => e !== b);
      const drift = b ? Math.abs(t.end - t.start - (b.end - b.start)) : 0;
      for (let from = t.start; from < t.end; from += window) {
        const to = Math.min(t.end, from + window);
        const range = withSources(b && mapped(t, b, from, to), extra, segment);
        if (range) p.add(range);
        p.close(to, Math.min(drift, (segment - (to - from)) / 2));
      }
      continue;
    }
    if (t.end - p.start > window) p.close(t.start);
    const range = i < skipUntil ? undefined : rangeOf(t);
    if (!range) continue;
    const hull = p.hull;
    if (!hull || fits(union(hull, range), p.start, t.end, segment)) {
      p.add(range);
      continue;
    }
    // displaced: how much the run of entries that follows `t` coherently (up to a window) matches
    let run = range;
    let matched = range.end - range.start;
    let j = i + 1;
    for (; j < entries.length; j++) {
      const u = entries[j] as TarEntry;
      if (u.end - t.start > window || u.end - u.start > window / 2) break;
      const r = rangeOf(u);
      if (!r) continue;
      if (!fits(union(run, r), t.start, u.end, segment)) break;
      run = union(run, r);
      matched += r.end - r.start;
    }
    if (matched >= DISPLACED_MIN) {
      p.close(t.start);
      p.add(range);
    } else {
      skipUntil = j;
    }
  }
  // the end-of-archive blocks, and whatever follows them
  while (p.targetSize - p.start > window) p.close(p.start + window);
  p.close(p.targetSize);
}

/**
 * The plan of a whole encode; indexes are undefined for inputs that are not tars. `byName`:
 * uniqueNames(base), when the caller has it.
 */
export function planWindows(
  targetSize: number, target: TarIndex | undefined, baseSize: number, base: TarIndex | undefined, limits: PlanLimits, sources: ContentSources = new Map(),
  byName?: UniqueNames,
): WindowPlan[] {
  if (2 * limits.window > limits.segment) throw new Error('plan: a segment must hold two windows');
  const p = new Planner(targetSize, baseSize, limits);
  if (baseSize <= limits.segment) planWholeBase(p);
  else if (target && base && base.entries.length > 0) planByEntries(p, target, base, sources, byName);
  else planByPosition(p);
  // an empty target is one empty window: xdelta3 writes one for it too
  if (p.windows.length === 0) p.windows.push({ targetStart: 0, targetEnd: 0, sourceStart: 0, sourceEnd: 0, how: 'position' });
  return p.windows;
}
