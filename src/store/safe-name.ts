// Names from URLs (artifact paths, project and run ids) become file paths only after
// this check: every segment is decoded once and refused if it could escape or confuse.
import { FleetError } from '../errors.js';

const MAX_SEGMENT_BYTES = 200;
const MAX_NAME_BYTES = 1024;
/** What a name record's file name ends with (store/names.ts). */
export const RECORD_SUFFIX = '.rec.json';
/** NAME_MAX of the filesystems we run on: a longer file name fails with ENAMETOOLONG. */
const MAX_FILE_NAME_BYTES = 255;

/** Validates one decoded path segment. */
export function checkSegment(segment: string, what: string): string {
  if (segment === '' || segment === '.' || segment === '..') {
    throw new FleetError('FC_ERR_BAD_NAME', `${what}: empty, "." or ".." segment refused`);
  }
  // C0 and C1 controls, and the bidirectional controls that make a name read otherwise
  // than it sorts and matches (in listings, logs and the dashboard: "Trojan Source").
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069/\\]/.test(segment)) {
    throw new FleetError('FC_ERR_BAD_NAME', `${what}: slash, backslash, NUL, control or bidirectional control character refused`);
  }
  if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) {
    throw new FleetError('FC_ERR_BAD_NAME', `${what}: segment longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
  // Percent-encoding can triple a segment (a space is "%20"), and the file name gets a suffix.
  if (segmentToFileName(segment).length + RECORD_SUFFIX.length > MAX_FILE_NAME_BYTES) {
    throw new FleetError('FC_ERR_BAD_NAME', `${what}: segment too long once percent-encoded (at most ${MAX_FILE_NAME_BYTES - RECORD_SUFFIX.length} bytes)`);
  }
  return segment;
}

/**
 * Splits a raw (still percent-encoded) URL path tail into decoded, validated segments.
 * "%2F" inside a segment decodes to "/" and is then refused, like every other escape.
 */
export function parseNamePath(raw: string, what: string, opts: { min?: number; max?: number } = {}): string[] {
  if (Buffer.byteLength(raw) > MAX_NAME_BYTES * 3) throw new FleetError('FC_ERR_BAD_NAME', `${what}: name too long`);
  const parts = raw.split('/');
  const segments = parts.map((p) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(p);
    } catch {
      throw new FleetError('FC_ERR_BAD_NAME', `${what}: malformed percent-encoding`);
    }
    return checkSegment(decoded, what);
  });
  const total = segments.reduce((n, s) => n + Buffer.byteLength(s) + 1, 0);
  if (total > MAX_NAME_BYTES) throw new FleetError('FC_ERR_BAD_NAME', `${what}: name longer than ${MAX_NAME_BYTES} bytes`);
  if (segments.length < (opts.min ?? 1) || segments.length > (opts.max ?? Infinity)) {
    throw new FleetError('FC_ERR_BAD_NAME', `${what}: expected ${opts.min ?? 1}${opts.max === opts.min ? '' : ' or more'} path segment(s)`);
  }
  return segments;
}

/**
 * A validated segment as a file name: percent-encoding keeps every byte safe on disk. A
 * segment ending in the record suffix gets its last dot encoded too, or the directory
 * of `a/x.rec.json/b` and the record of `a/x` would be the same file name.
 */
export function segmentToFileName(segment: string): string {
  const name = encodeURIComponent(segment).replace(/\./g, (m, i: number) => (i === 0 ? '%2E' : m));
  return name.endsWith(RECORD_SUFFIX) ? `${name.slice(0, -'.json'.length)}%2Ejson` : name;
}
