// The type yaml.v2 (resolve.go) gives a plain scalar, and how its decode.go turns an int or
// float into a Go int64: what spread accepts in `workers:`, `samples:` and `priority:`.
import { parseGoInt, parseGoUint } from './go-int.js';

/** A resolved plain scalar: integers as bigint (int64/uint64 range), floats as number. */
type ResolvedScalar =
  | { readonly tag: '!!int'; readonly value: bigint }
  | { readonly tag: '!!float'; readonly value: number }
  | { readonly tag: '!!str' | '!!bool' | '!!null' | '!!timestamp' };

const SPECIAL_FLOATS: Record<string, number> = {
  '.nan': NaN, '.NaN': NaN, '.NAN': NaN,
  '.inf': Infinity, '.Inf': Infinity, '.INF': Infinity, '+.inf': Infinity, '+.Inf': Infinity, '+.INF': Infinity,
  '-.inf': -Infinity, '-.Inf': -Infinity, '-.INF': -Infinity,
};
/** yaml.v2's booleans (YAML 1.1), true and false. */
export const YAML11_TRUE = new Set(['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON']);
export const YAML11_FALSE = new Set(['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF']);
const NULLS = new Set(['', '~', 'null', 'Null', 'NULL']);
/** yaml.v2's yamlStyleFloat, tried after Go's ParseInt/ParseUint(base 0) fail. */
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
/** parseTimestamp's quick check (four digits and a dash), then its date-only and date-time layouts. */
const TIMESTAMP = /^\d{4}-\d{1,2}-\d{1,2}(?:[Tt ]\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?(?:Z|[-+]\d{2}:\d{2})?)?$/;

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/** yaml.v2 resolve() of an untagged plain scalar. */
export function resolveYamlV2Scalar(text: string): ResolvedScalar {
  if (text in SPECIAL_FLOATS) return { tag: '!!float', value: SPECIAL_FLOATS[text]! };
  if (YAML11_TRUE.has(text) || YAML11_FALSE.has(text)) return { tag: '!!bool' };
  if (NULLS.has(text)) return { tag: '!!null' };
  if (text.startsWith('.')) {
    return /^\.[0-9]+([eE][-+]?[0-9]+)?$/.test(text) ? { tag: '!!float', value: Number(text) } : { tag: '!!str' };
  }
  if (!/^[-+0-9]/.test(text)) return { tag: '!!str' };
  if (TIMESTAMP.test(text)) return { tag: '!!timestamp' };
  const plain = text.replace(/_/g, '');
  // ParseInt first, then ParseUint (for integers past int64)
  const int = parseGoInt(plain) ?? parseGoUint(plain);
  if (int !== undefined) return { tag: '!!int', value: int };
  // Go's ParseFloat fails on overflow (1e400): the scalar stays a string.
  if (YAML_STYLE_FLOAT.test(plain) && Number.isFinite(Number(plain))) return { tag: '!!float', value: Number(plain) };
  return { tag: '!!str' };
}

/**
 * decode.go's int case: an int within int64; a float `<= math.MaxInt64` (2^63 as a float64)
 * converted by Go's int64(), which truncates toward zero and, on amd64, gives MinInt64 for
 * anything out of range (-Inf included). undefined: refused.
 */
export function goInt64(resolved: Extract<ResolvedScalar, { tag: '!!int' | '!!float' }>): number | undefined {
  if (resolved.tag === '!!int') return resolved.value <= INT64_MAX ? Number(resolved.value) : undefined;
  const f = resolved.value;
  if (Number.isNaN(f) || f > 2 ** 63) return undefined;
  if (f >= 2 ** 63 || f < -(2 ** 63)) return Number(INT64_MIN);
  return Math.trunc(f) + 0;
}
