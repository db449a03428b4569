// Human units in configuration and flags: sizes ("50GiB", "512M"), durations ("30s", "5m"),
// listen addresses ("127.0.0.1:8080") and upstream URLs.
import { FleetError } from '../errors.js';
import { redactMalformedUrl } from '../redact-url.js';

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};

/** The largest size taken, in a file or a flag: byte counts past it are not exact numbers. */
export const MAX_SIZE = Number.MAX_SAFE_INTEGER;

/** Parses "50GiB", "512M", "1.5GB", "1048576" into bytes. */
export function parseSize(text: string | number): number {
  if (typeof text === 'number') return text;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new FleetError('FC_ERR_USAGE', `invalid size "${text}" (examples: 4096, 512MiB, 50GiB, 1TB)`);
  }
  // "1.5" is no count of bytes: most likely a unit left out (1.5GiB), never a byte and a half
  if (unit === 1 && m[1]!.includes('.')) throw new FleetError('FC_ERR_USAGE', `invalid size "${text}": a number of bytes is whole; a fraction needs a unit (e.g. 1.5GiB)`);
  const bytes = Math.floor(Number(m[1]) * unit);
  // past 2^53 bytes (8 PiB) counts are no longer exact; "1e400" digits make Infinity
  if (bytes > MAX_SIZE) throw new FleetError('FC_ERR_USAGE', `invalid size "${text}": larger than 8 PiB`);
  return bytes;
}

/** parseSize, refusing a size of less than one byte. */
export function parsePositiveSize(text: string | number): number {
  const bytes = parseSize(text);
  if (!(bytes >= 1)) throw new FleetError('FC_ERR_USAGE', `invalid size "${text}": at least 1 byte`);
  return bytes;
}

/** What parsePositiveSize takes, as a refusal says it (a configuration's field, a flag). */
export const POSITIVE_SIZE_PHRASE = 'a size of at least 1 byte (e.g. 4096, 512MiB, 50GiB)';

/** parsePositiveSize for the command-line flag `flag`, which a refusal names. */
export function parseSizeFlag(flag: string, text: string): number {
  try {
    return parsePositiveSize(text);
  } catch {
    throw new FleetError('FC_ERR_USAGE', `${flag}: must be ${POSITIVE_SIZE_PHRASE}, not "${text}"`);
  }
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The longest duration accepted at all: ten years (past it, dates computed from it overflow). */
const MAX_DURATION_MS = 10 * 365 * 86_400_000;

/** The longest wait a timer makes: Node's setTimeout fires at once past 2^31-1 ms (about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Parses "30s", "5m", "1h30m", "250ms" (Go-style) into milliseconds; a bare number is seconds. At most ten years. */
export function parseDuration(text: string | number): number {
  const ms = wholeMs(durationMs(text));
  if (!(ms <= MAX_DURATION_MS)) throw new FleetError('FC_ERR_USAGE', `invalid duration "${text}": longer than ten years`);
  return ms;
}

/**
 * Milliseconds as timers and undici take them: whole ("1.5ms" was accepted, and every miss
 * then failed, undici refusing a timeout that is not an integer), and a duration longer than
 * 0 at least 1 (never rounded to 0, which would mean no timeout).
 */
function wholeMs(ms: number): number {
  return ms > 0 ? Math.max(1, Math.round(ms)) : ms;
}

/** A duration's milliseconds, any length: well-formed is all it checks (a config's format "duration"). */
export function durationMs(text: string | number): number {
  if (typeof text === 'number') return text * 1000;
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(trimmed); m; m = re.exec(trimmed)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== trimmed.length) {
    throw new FleetError('FC_ERR_USAGE', `invalid duration "${text}" (examples: 250ms, 30s, 5m, 1h30m)`);
  }
  return total;
}

/** A duration longer than zero, for a timeout (0 would mean none: a wait without end). */
export function parsePositiveDuration(text: string | number): number {
  const ms = parseDuration(text);
  if (!(ms > 0)) throw new FleetError('FC_ERR_USAGE', `invalid duration "${text}": a timeout must be longer than 0`);
  return ms;
}

/** A duration a timer waits (a timeout, an interval): at most MAX_TIMER_MS. */
export function parseTimerDuration(text: string | number): number {
  const ms = parseDuration(text);
  if (ms > MAX_TIMER_MS) throw new FleetError('FC_ERR_USAGE', `invalid duration "${text}": a timer waits 24 days at most (2^31-1 ms)`);
  return ms;
}

/** Parses a listen address "HOST:PORT" or "[IPv6]:PORT"; an empty host is 127.0.0.1. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new FleetError('FC_ERR_USAGE', `invalid listen address "${text}" (expected HOST:PORT, e.g. 127.0.0.1:8080)`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** The URL of a server listening on `listen` (HOST:PORT), which got `port` (the one asked, or another for port 0). */
export function listenUrl(listen: string, port: number): string {
  const { host } = parseListen(listen);
  return host.includes(':') ? `http://[${host}]:${port}` : `http://${host}:${port}`;
}

/** Parses an http or https URL (an upstream, a cache, an S3 endpoint). */
export function parseHttpUrl(text: string): URL {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    // not a URL at all
  }
  if (url?.protocol !== 'http:' && url?.protocol !== 'https:') {
    throw new FleetError('FC_ERR_USAGE', `invalid URL "${redactMalformedUrl(text)}" (expected http or https, e.g. http://origin.example:8080)`);
  }
  return url;
}

/**
 * An http or https URL that requests are made below (an upstream, a mirror): with no query
 * or fragment, which none of them would carry (its path is joined to theirs). Such a URL was
 * taken, its query dropped unsaid (a mirror's `?token=…` never sent) and logged whole. The
 * message names neither: a query may hold a secret.
 */
export function parseBaseUrl(text: string): URL {
  const url = parseHttpUrl(text);
  refuseQueryOrFragment(text);
  return url;
}

/**
 * Refuses a base URL with a query or fragment (see parseBaseUrl), naming neither; no parse,
 * a scan of the text: joinUrl checks every base it is given, per request.
 */
export function refuseQueryOrFragment(text: string): void {
  const end = text.search(/[?#]/);
  if (end !== -1) throw new FleetError('FC_ERR_USAGE', `the URL of ${withoutCredentials(text.slice(0, end))} has a query or fragment, which no request to it would carry (give its path only)`);
}

/** A URL (one that may not parse) as a message names it: its origin and path, not its user name or password. */
function withoutCredentials(text: string): string {
  try {
    const url = new URL(text);
    return `${url.origin}${url.pathname}`;
  } catch {
    return redactMalformedUrl(text);
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
