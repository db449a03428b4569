// Durations, sizes and names as spread's project.go parses and validates them.
import { DISABLED_TIMEOUT } from './model.js';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/;
const PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;

/**
 * Go's time.ParseDuration, in milliseconds; undefined when invalid. `-1` and `-1ns`
 * both mean "disabled" (README documents `-1`; spread only accepts `-1ns`, spec §17.4).
 */
export function parseGoDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === '-1' || s === '-1ns') return DISABLED_TIMEOUT;
  if (s === '0' || s === '+0' || s === '-0') return 0;
  if (!DURATION.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(PART)) total += Number(m[1]) * UNIT_MS[m[2]!]!;
  return s.startsWith('-') ? -total : total;
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
  if (!/^[-+]?\d+$/.test(num)) throw new Error(`invalid size string: ${JSON.stringify(text)}`);
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
