// Go's strconv.ParseInt and ParseUint with base 0 and bit size 64: how spread's Go flag
// package reads -seed and -repeat, and how yaml.v2 reads an integer (underscores removed first).

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
/** The base a prefix after the leading 0 names (its letter lower-cased). */
const PREFIX_BASE: Readonly<Record<string, number>> = { b: 2, o: 8, x: 16 };

/**
 * strconv's underscoreOK: underscores only between digits, or between a base prefix and a
 * digit (1_000, 0x_ff, 0_7); never first, last, or two together.
 */
function underscoresOk(text: string): boolean {
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

/** strconv.ParseInt(text, 0, 64): an optional sign, then as parseGoUint, within int64. */
export function parseGoInt(text: string): bigint | undefined {
  const negative = text.startsWith('-');
  const unsigned = parseGoUint(/^[-+]/.test(text) ? text.slice(1) : text);
  if (unsigned === undefined) return undefined;
  const n = negative ? -unsigned : unsigned;
  return n < INT64_MIN || n > INT64_MAX ? undefined : n;
}
