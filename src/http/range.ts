// One byte range from a Range header (RFC 9110 §14). Several ranges are answered with
// the whole object, which the RFC allows; an unsatisfiable one is a 416.
import { FleetError } from '../errors.js';
import type { ReadRange } from '../store/blob-store.js';

const ONE_RANGE = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i;

/**
 * Whether `header` is one byte range that parseRange answers, for some size, with that
 * range or a 416; false for what it answers with the whole object whatever the size
 * (several ranges, another unit, a last byte before the first): such a request needs no
 * size to be answered.
 */
export function asksOneRange(header: string): boolean {
  const m = ONE_RANGE.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return false;
  return m[1] === '' || m[2] === '' || Number(m[2]) >= Number(m[1]);
}

/** undefined: serve the whole object. Throws FC_ERR_RANGE (416) when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): ReadRange | undefined {
  if (!header) return undefined;
  const m = ONE_RANGE.exec(header);
  if (!m) return undefined; // multiple ranges or another unit: ignore, as the RFC allows
  const [, first, last] = m as unknown as [string, string, string];
  let start: number;
  let end: number;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) throw rangeError(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== '' && Number(last) < start) return undefined; // invalid: ignore
  }
  if (start >= size || size === 0) throw rangeError(size);
  return { start, end };
}

function rangeError(size: number): FleetError {
  return new FleetError('FC_ERR_RANGE', `range not satisfiable for an object of ${size} bytes`, { details: { size } });
}
