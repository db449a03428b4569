// Go's strconv.ParseInt and ParseUint with base 0 and bit size 64: how spread's Go flag
// package reads -seed and -repeat, and how yaml.v2 reads an integer (underscores removed first).

/** 2^63: one past the largest int64, and the size of the smallest. */
export const TWO_TO_63 = 2n ** 63n;
export const INT64_MIN = -TWO_TO_63;
export const INT64_MAX = TWO_TO_63 - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
/** The base a prefix after the leading 0 names (its letter lower-cased). */
const PREFIX_BASE: Readonly<Record<string, number>> = { b: 2, o: 8, x: 16 };

/**
 * strconv's underscoreOK: underscores only between digits, or between a base prefix and a
 * digit (1_000, 0x_ff, 0_7); never first, last, or two together. ParseFloat applies it too.
 */
export function underscoresOk(text: string): boolean {
  const prefixed = /^0[box]/i.test(text);
  const digit = /^0x/i.test(text) ? /[0-9a-f]/i : /[0-9]/;
  // a base prefix counts as a digit: 0x_1 is fine
  let saw = prefixed ? 'digit' : 'start';
  for (const c of prefixed ? text.slice(2) : text) {
    if (digit.test(c)) saw = 'digit';
    else if (c === '_') {
      if (saw !== 'digit') return false;
      saw = '_';
    } else {
      if (saw === '_') return false;
      saw = 'other';
    }
  }
  return saw !== '_';
}

/**
 * strconv.ParseUint(text, 0, 64): 0x/0X hexadecimal, 0o/0O or a lone leading 0 octal, 0b/0B
 * binary, else decimal; undefined where Go reports a syntax or range error.
 */
export function parseGoUint(text: string): bigint | undefined {
  if (text === '') return undefined;
  let base = 10;
  let digits = text;
  if (text.startsWith('0')) {
    // "0x" alone is octal 0 followed by the digit x (an error), as in Go
    const prefixed = text.length >= 3 ? PREFIX_BASE[text[1]!.toLowerCase()] : undefined;
    [base, digits] = prefixed === undefined ? [8, text.slice(1)] : [prefixed, text.slice(2)];
  }
  let n = 0n;
  for (const c of digits) {
    if (c === '_') continue;
    const d = parseInt(c, 36);
    if (!(d < base)) return undefined;
    n = n * BigInt(base) + BigInt(d);
  }
  if (n > UINT64_MAX) return undefined;
  return digits.includes('_') && !underscoresOk(text) ? undefined : n;
}

/** An optional sign, then as parseGoUint; within int64, or up to uint64 where `unsignedToo` and no sign. */
function parseSigned(text: string, unsignedToo: boolean): bigint | undefined {
  const sign = /^[-+]/.exec(text)?.[0];
  const unsigned = parseGoUint(sign === undefined ? text : text.slice(1));
  if (unsigned === undefined) return undefined;
  const n = sign === '-' ? -unsigned : unsigned;
  const max = unsignedToo && sign === undefined ? UINT64_MAX : INT64_MAX;
  return n < INT64_MIN || n > max ? undefined : n;
}

/** strconv.ParseInt(text, 0, 64): an optional sign, then as parseGoUint, within int64. */
export function parseGoInt(text: string): bigint | undefined {
  return parseSigned(text, false);
}

/**
 * ParseInt(text, 0, 64), else ParseUint(text, 0, 64), in one pass: how yaml.v2 reads an
 * integer, an unsigned one past int64 too (but not with a `+`, which ParseUint refuses).
 */
export function parseGoIntOrUint(text: string): bigint | undefined {
  return parseSigned(text, true);
}
