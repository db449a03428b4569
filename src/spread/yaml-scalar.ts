// The type and value yaml.v2 (resolve.go) gives a scalar, plain or explicitly tagged, and how
// its decode.go turns an int or float into a Go int64: what spread accepts in `workers:`,
// `samples:` and `priority:`, and in `manual:` and `secure-boot:`.
import { INT64_MAX, INT64_MIN, parseGoIntOrUint, TWO_TO_63, underscoresOk } from './go-int.js';

/** A resolved scalar: integers as bigint (int64/uint64 range), floats as number. */
export type ResolvedScalar =
  | { readonly tag: '!!int'; readonly value: bigint }
  | { readonly tag: '!!float'; readonly value: number }
  | { readonly tag: '!!bool'; readonly value: boolean }
  | { readonly tag: '!!str' | '!!null' | '!!timestamp' };

/** The explicit tags yaml.v2 checks a scalar against (resolve.go's resolvableTag, less !!str). */
type CheckedTag = '!!int' | '!!float' | '!!bool' | '!!null' | '!!timestamp';
const CHECKED_TAGS = new Set<string>(['!!int', '!!float', '!!bool', '!!null', '!!timestamp'] satisfies CheckedTag[]);

export function isCheckedTag(tag: string): tag is CheckedTag {
  return CHECKED_TAGS.has(tag);
}

/** resolve.go's resolveMap: the words a plain scalar is looked up by (a Map: no inherited keys like `constructor`). */
const WORDS = new Map<string, ResolvedScalar>([
  ...['.nan', '.NaN', '.NAN'].map((w) => [w, { tag: '!!float', value: NaN }] as const),
  ...['.inf', '.Inf', '.INF', '+.inf', '+.Inf', '+.INF'].map((w) => [w, { tag: '!!float', value: Infinity }] as const),
  ...['-.inf', '-.Inf', '-.INF'].map((w) => [w, { tag: '!!float', value: -Infinity }] as const),
  ...['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON'].map((w) => [w, { tag: '!!bool', value: true }] as const),
  ...['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF'].map((w) => [w, { tag: '!!bool', value: false }] as const),
  ...['', '~', 'null', 'Null', 'NULL'].map((w) => [w, { tag: '!!null' }] as const),
]);
/** yaml.v2's yamlStyleFloat, tried after Go's ParseInt/ParseUint(base 0) fail. */
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
/** What Go's ParseFloat takes of a text starting with a dot: digits, then an exponent, underscores among the digits. */
const DOT_FLOAT = /^\.[0-9_]+(?:[eE][-+]?[0-9][0-9_]*)?$/;
/**
 * parseTimestamp's layouts for Go's time.Parse: a date; a date, `T` or `t`, a time and a zone
 * (`Z`, `+hh:mm`); or a date, a space and a time without zone. Seconds take a fraction after
 * `.` or `,`. Ranges are checked apart (isTimestamp).
 */
const TIMESTAMP = /^(\d{4})-(\d{1,2})-(\d{1,2})(?:[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,]\d+)?(?:Z|[-+]\d{2}:\d{2})| (\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,]\d+)?)?$/;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
/** 2^63 as a float64: math.MaxInt64 converted, the bound decode.go compares a float with. */
const FLOAT_TWO_TO_63 = Number(TWO_TO_63);

/** A timestamp time.Parse takes: TIMESTAMP, with the month, the day (in that month), the hour, minute and second in range. */
function isTimestamp(text: string): boolean {
  const m = TIMESTAMP.exec(text);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4] ?? m[7], m[5] ?? m[8], m[6] ?? m[9]].map(Number) as [number, number, number, number, number, number];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
  if (days === undefined || day < 1 || day > days) return false;
  // a date alone has no time: NaN fails no comparison below
  return !(hour > 23 || minute > 59 || second > 59);
}

/** Go's ParseFloat of a finite float, else undefined (ParseFloat's range error on 1e400). */
function finite(text: string): number | undefined {
  const f = Number(text);
  return Number.isFinite(f) ? f : undefined;
}

/**
 * yaml.v2 resolve() of a scalar's text, plain or tagged `tag` (a timestamp is looked for only
 * with neither tag nor !!timestamp). Not followed: its reading of a sign after `0b` (`0b-11`
 * is -3 there), which neither Go nor YAML 1.1 spell an integer: refused as a string.
 */
export function resolveYamlV2Scalar(text: string, tag?: CheckedTag): ResolvedScalar {
  const word = WORDS.get(text);
  if (word) return word;
  if (text.startsWith('.')) {
    // resolve.go hands the text as written to ParseFloat, which allows underscores between digits
    const f = DOT_FLOAT.test(text) && underscoresOk(text) ? finite(text.replace(/_/g, '')) : undefined;
    return f === undefined ? { tag: '!!str' } : { tag: '!!float', value: f };
  }
  if (!/^[-+0-9]/.test(text)) return { tag: '!!str' };
  if ((tag === undefined || tag === '!!timestamp') && isTimestamp(text)) return { tag: '!!timestamp' };
  const plain = text.replace(/_/g, '');
  // ParseInt first, then ParseUint (for integers past int64)
  const int = parseGoIntOrUint(plain);
  if (int !== undefined) return { tag: '!!int', value: int };
  const f = YAML_STYLE_FLOAT.test(plain) ? finite(plain) : undefined;
  return f === undefined ? { tag: '!!str' } : { tag: '!!float', value: f };
}

/**
 * resolve()'s check of a scalar written with an explicit tag: the scalar as `tag` takes it,
 * or undefined where yaml.v2 fails with "cannot decode". An !!float takes an integer within
 * int64 too, converted.
 */
export function asTagged(resolved: ResolvedScalar, tag: CheckedTag): ResolvedScalar | undefined {
  if (resolved.tag === tag) return resolved;
  const int64 = resolved.tag === '!!int' && resolved.value >= INT64_MIN && resolved.value <= INT64_MAX;
  return tag === '!!float' && int64 ? { tag: '!!float', value: Number(resolved.value) } : undefined;
}

/**
 * decode.go's int case: an int within int64; a float `<= math.MaxInt64` (2^63 as a float64)
 * converted by Go's int64(), which truncates toward zero and, on amd64, gives MinInt64 for
 * anything out of range (-Inf included). undefined: refused.
 */
export function goInt64(resolved: Extract<ResolvedScalar, { tag: '!!int' | '!!float' }>): number | undefined {
  if (resolved.tag === '!!int') return resolved.value <= INT64_MAX ? Number(resolved.value) : undefined;
  const f = resolved.value;
  if (Number.isNaN(f) || f > FLOAT_TWO_TO_63) return undefined;
  if (f >= FLOAT_TWO_TO_63 || f < -FLOAT_TWO_TO_63) return Number(INT64_MIN);
  return Math.trunc(f) + 0;
}
