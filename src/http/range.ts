// One byte range from a Range header (RFC 9110 §14). Several ranges are answered with
// the whole object, which the RFC allows; an unsatisfiable one is a 416.
import { FleetError } from '../errors.js';
import type { ReadRange } from '../store/blob-store.js';

/**
 * `bytes=first-last`, blanks allowed around each part. Each position is optional with the
 * blanks after it, never two runs of blanks side by side: written `\s*(\d*)\s*`, a blank
 * run could be split between them in as many ways as it is long, and a Range of 15,000
 * spaces then a letter took a quarter of a second of the server's only thread to refuse.
 */
const ONE_RANGE = /^\s*bytes\s*=\s*(?:(\d+)\s*)?-\s*(?:(\d+)\s*)?$/i;

/**
 * The first and last byte (either may be '') of a header asking one byte range, which
 * parseRange answers, for some size, with that range or a 416; undefined for what it answers
 * with the whole object whatever the size (several ranges or another unit, ignored as the RFC
 * allows; no position; a last byte before the first).
 */
function oneRange(header: string): { first: string; last: string } | undefined {
  const m = ONE_RANGE.exec(header);
  if (!m) return undefined;
  const [first = '', last = ''] = m.slice(1);
  if (first === '' && last === '') return undefined;
  if (first !== '' && last !== '' && Number(last) < Number(first)) return undefined;
  return { first, last };
}

/** Whether `header` asks one range (see oneRange): a request that asks none needs no size to be answered. */
export function asksOneRange(header: string): boolean {
  return oneRange(header) !== undefined;
}

/** undefined: serve the whole object. Throws FC_ERR_RANGE (416) when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): ReadRange | undefined {
  const range = header ? oneRange(header) : undefined;
  if (!range) return undefined;
  const { first, last } = range;
  let start: number;
  let end: number;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) throw rangeError(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  }
  if (start >= size || size === 0) throw rangeError(size);
  return { start, end };
}

function rangeError(size: number): FleetError {
  return new FleetError('FC_ERR_RANGE', `range not satisfiable for an object of ${size} bytes`, { details: { size } });
}
