// The set algebra of backends, systems and variants lists (spread-spec §5, evalstr).
// Entries are +add, -remove or plain (replace when first in its list); each entry is a
// Go filepath.Match glob matched against the stripped entries of this and every earlier
// level, so a plain or + entry always adds at least its own text.
import type { Origin } from './model.js';
import { projectError } from './yaml.js';
import { errorMessage } from '../errors.js';

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

/** Go's filepath.Match as a RegExp (or the literal string when there are no metacharacters). */
function compileGlob(pattern: string): RegExp | string {
  const cached = globCache.get(pattern);
  if (cached !== undefined) return cached;
  let out: RegExp | string;
  if (!/[*?[\\]/.test(pattern)) {
    out = pattern;
  } else {
    let re = '^';
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i]!;
      if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else if (c === '\\') {
        if (i + 1 >= pattern.length) throw new Error('syntax error in pattern');
        re += escapeRe(pattern[++i]!);
      } else if (c === '[') {
        let j = i + 1;
        let cls = '[';
        if (pattern[j] === '^') {
          cls += '^';
          j++;
        }
        let empty = true;
        while (j < pattern.length && (pattern[j] !== ']' || empty)) {
          let ch = pattern[j]!;
          if (ch === ']' && empty) throw new Error('syntax error in pattern');
          if (ch === '\\') ch = pattern[++j] ?? '';
          if (ch === '') throw new Error('syntax error in pattern');
          cls += escapeRe(ch);
          empty = false;
          j++;
          if (pattern[j] === '-' && pattern[j + 1] !== ']' && j + 1 < pattern.length) {
            let hi = pattern[j + 1]!;
            j += 2;
            if (hi === '\\') hi = pattern[j++] ?? '';
            if (hi === '' || hi < ch) throw new Error('syntax error in pattern');
            cls += '-' + escapeRe(hi);
          }
        }
        if (j >= pattern.length) throw new Error('syntax error in pattern');
        re += cls + ']';
        i = j;
      } else re += escapeRe(c);
    }
    out = new RegExp(re + '$');
  }
  globCache.set(pattern, out);
  return out;
}

function escapeRe(c: string): string {
  return /[.*+?^${}()|[\]\\/-]/.test(c) ? '\\' + c : c;
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
    const matches = typeof glob === 'string' ? seen.filter((s) => s === glob) : seen.filter((s) => glob.test(s));
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
