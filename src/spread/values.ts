// Durations, sizes and names as spread's project.go parses and validates them.
import { INT64_MAX, INT64_MIN, TWO_TO_63 } from './go-int.js';
import { DISABLED_TIMEOUT } from './model.js';

/** Go's time unitMap, in nanoseconds (a Map: `5constructor` has no unit). */
const UNIT_NS: ReadonlyMap<string, bigint> = new Map([['ns', 1n], ['us', 1_000n], ['µs', 1_000n], ['μs', 1_000n], ['ms', 1_000_000n], ['s', 1_000_000_000n], ['m', 60_000_000_000n], ['h', 3_600_000_000_000n]]);
/** One component of a duration: digits, an optional fraction, a unit (any run of other characters). */
const COMPONENT = /([0-9]*)(?:\.([0-9]*))?([^.0-9]*)/y;

/** Go's leadingFraction: the fraction's digits up to where they would pass int64 (the rest ignored), and their scale. */
function leadingFraction(digits: string): [bigint, number] {
  let x = 0n;
  let scale = 1;
  for (const c of digits) {
    const y = x * 10n + BigInt(c);
    if (x > INT64_MAX / 10n || y > TWO_TO_63) break;
    x = y;
    scale *= 10;
  }
  return [x, scale];
}

/** Go's time.ParseDuration, in nanoseconds; undefined where it errs (a syntax error, an unknown unit, past int64). */
function goDurationNs(text: string): bigint | undefined {
  const sign = /^[-+]/.exec(text)?.[0] ?? '';
  const s = text.slice(sign.length);
  if (s === '0') return 0n;
  if (s === '') return undefined;
  let total = 0n;
  for (COMPONENT.lastIndex = 0; COMPONENT.lastIndex < s.length; ) {
    const [, whole = '', fraction, unitName = ''] = COMPONENT.exec(s)!;
    const unit = UNIT_NS.get(unitName);
    // no digits (".s"), no unit ("10") or an unknown one ("10S")
    if ((whole === '' && !fraction) || unit === undefined) return undefined;
    const [f, scale] = leadingFraction(fraction ?? '');
    // through a float64 as in Go, truncated to whole nanoseconds
    total += BigInt(whole) * unit + BigInt(Math.trunc(Number(f) * (Number(unit) / scale)));
    if (total > TWO_TO_63) return undefined;
  }
  if (sign === '-') return -total;
  return total < TWO_TO_63 ? total : undefined;
}

/**
 * Go's time.ParseDuration, in milliseconds; undefined when invalid. `-1` and `-1ns`
 * both mean "disabled" (README documents `-1`; spread only accepts `-1ns`, spec §17.4).
 * Less than a nanosecond is 0, not set, as in spread (`0.5ns`).
 */
export function parseGoDuration(text: string): number | undefined {
  const s = text.trim();
  const ns = s === '-1' ? -1n : goDurationNs(s);
  if (ns === undefined) return undefined;
  return ns === -1n ? DISABLED_TIMEOUT : Number(ns) / 1e6 + 0;
}

export function timeoutMessage(text: string): string {
  return `timeout must look like 10s or 15m or 1.5h, not ${JSON.stringify(text)}`;
}

const SIZE_UNIT: Record<string, number> = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** spread's Size: an integer plus B/K/M/G; "" → 0; "preserve-size" → -1. Throws the message. */
export function parseSize(text: string): number {
  if (text === '') return 0;
  if (text === 'preserve-size') return -1;
  const num = text.slice(0, -1);
  // strconv.Atoi: decimal digits within int64, else "invalid size string"
  if (!/^[-+]?\d+$/.test(num) || BigInt(num) < INT64_MIN || BigInt(num) > INT64_MAX) throw new Error(`invalid size string: ${JSON.stringify(text)}`);
  const unit = SIZE_UNIT[text.slice(-1)];
  if (unit === undefined) throw new Error(`unknown size suffix in ${JSON.stringify(text)}, must be one of: B, K, M, G`);
  return Number(num) * unit;
}

export const VALID_NAME = /^[a-z0-9]+(?:[-._][a-z0-9]+)*$/;
const VALID_SYSTEM = /^[a-z*]+-[a-z0-9*]+(?:[-.][a-z0-9*]+)*$/;
export const VALID_SUITE = /^(?:[a-z0-9]+(?:[-._][a-z0-9]+)*\/)+$/;
export const VALID_TASK = /^(?:[a-z0-9]+(?:[-._][a-z0-9]+)*\/)+[a-z0-9]+(?:[-._][a-z0-9]+)*$/;

/** The first invalid system name of a list (after stripping +/-), or undefined. */
export function invalidSystem(systems: readonly string[]): string | undefined {
  for (const entry of systems) {
    const name = entry.startsWith('+') || entry.startsWith('-') ? entry.slice(1) : entry;
    if (!VALID_SYSTEM.test(name)) return name;
  }
  return undefined;
}

/**
 * spread's backend types, plus fleetcache's own `local` and `ssh` (src/backends/registry.ts
 * says which of them `fleetcache run` can drive; `list` accepts them all).
 */
export const BACKEND_TYPES = new Set(['google', 'linode', 'lxd', 'qemu', 'adhoc', 'humbox', 'openstack', 'local', 'ssh']);
