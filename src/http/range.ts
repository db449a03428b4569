// One byte range from a Range header (RFC 9110 §14). Several ranges are answered with
// the whole object, which the RFC allows; an unsatisfiable one is a 416.
import { FleetError } from '../errors.js';
import type { ReadRange } from '../store/blob-store.js';

/** undefined: serve the whole object. Throws FC_ERR_RANGE (416) when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): ReadRange | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
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
