// The set algebra of backends, systems and variants lists (spread-spec §5, evalstr).
// Entries are +add, -remove or plain (replace when first in its list); each entry is a
// Go filepath.Match glob matched against the stripped entries of this and every earlier
// level, so a plain or + entry always adds at least its own text.
import type { Origin } from './model.js';
import { projectError } from './yaml.js';
import { errorMessage } from '../errors.js';
import { goMatches, goMatchPattern } from '../go-match.js';

export interface Level {
  /** Shown in errors: `backend "x"`, `x:system`, `suite tests/`, or the task name. */
  readonly context: string;
  readonly entries: readonly string[];
  /** Where the level is written, for errors. */
  readonly origin?: Origin;
}

/** The state after some levels; immutable so stages can be cached and extended. */
export interface SetState {
  readonly final: ReadonlySet<string>;
  /** Stripped entries of every level applied so far. */
  readonly seen: readonly string[];
  readonly levels: number;
}

export const EMPTY_SET: SetState = { final: new Set(), seen: [], levels: 0 };

const globCache = new Map<string, RegExp | string>();

/** Go's filepath.Match as a RegExp (or the literal string when there are no metacharacters), cached. */
function compileGlob(pattern: string): RegExp | string {
  let out = globCache.get(pattern);
  if (out === undefined) {
    out = goMatchPattern(pattern);
    globCache.set(pattern, out);
  }
  return out;
}

function strip(entry: string): string {
  return entry.startsWith('+') || entry.startsWith('-') ? entry.slice(1) : entry;
}

/** Applies one level to a state; `what` is "backends", "systems" or "variants". */
export function applyLevel(state: SetState, level: Level, what: string): SetState {
  if (level.entries.length === 0) return { ...state, levels: state.levels + 1 };
  const seen = state.seen.concat(level.entries.map(strip));
  const final = new Set(state.final);
  let delta = 0;
  let plain = 0;
  level.entries.forEach((entry, j) => {
    const add = entry.startsWith('+');
    const remove = entry.startsWith('-');
    if (add || remove) {
      if (state.levels === 0) throw projectError(`${level.context} specifies ${what} in delta format`, level.origin);
      delta++;
    } else plain++;
    if (delta > 0 && plain > 0) throw projectError(`${level.context} specifies ${what} both in delta and plain format`, level.origin);
    let glob: RegExp | string;
    try {
      glob = compileGlob(strip(entry));
    } catch (err) {
      throw projectError(`${level.context} has invalid ${what} pattern ${JSON.stringify(entry)}: ${errorMessage(err)}`, level.origin);
    }
    const matches = seen.filter((s) => goMatches(glob, s));
    if (remove) {
      for (const m of matches) final.delete(m);
      return;
    }
    if (!add && j === 0) final.clear();
    for (const m of matches) final.add(m);
  });
  return { final, seen, levels: state.levels + 1 };
}

export function applyLevels(state: SetState, levels: readonly Level[], what: string): SetState {
  return levels.reduce((s, level) => applyLevel(s, level, what), state);
}

/** Sorted names of all variants in an environment's keys (spread's evars). */
export function envVariants(keys: Iterable<string>, prefix: '' | '+'): string[] {
  const seen = new Set<string>();
  for (const key of keys) {
    const i = key.lastIndexOf('/');
    if (i >= 0) for (const v of key.slice(i + 1).split(',')) seen.add(v);
  }
  const out = [...seen].map((v) => prefix + v);
  if (out.length === 0 && prefix === '') out.push('');
  return out.sort();
}
