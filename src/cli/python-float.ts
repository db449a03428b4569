// Python's float() of a command-line value: how tooltool.py's optparse reads `-s GB`
// (type="float"), so that `fleetcache assets purge -s` takes what tooltool takes.

/** The whitespace float() strips around the number (str.isspace less U+001C..U+001F, which it keeps). */
const SPACE = '[\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*';
/** Digits, an underscore allowed between two of them (PEP 515). */
const DIGITS = '[0-9](?:_?[0-9])*';
const NUMBER = new RegExp(`^${SPACE}([-+]?(?:(?:${DIGITS})?\\.${DIGITS}|${DIGITS}\\.?)(?:[eE][-+]?${DIGITS})?)${SPACE}$`);
const WORD = new RegExp(`^${SPACE}([-+]?)(inf|infinity|nan)${SPACE}$`, 'i');

/**
 * float(text) for text in ASCII digits (`5`, ` 2.5 `, `1e3`, `1_000`, `.5`, `inf`, `-nan`),
 * else undefined where Python raises ValueError (`0x10`, ``, `1__0`). Not followed: the
 * other scripts' decimal digits (`٣`), which float() takes as 3, are refused.
 */
export function pythonFloat(text: string): number | undefined {
  const number = NUMBER.exec(text)?.[1];
  if (number !== undefined) return Number(number.replace(/_/g, ''));
  const word = WORD.exec(text);
  if (!word) return undefined;
  if (word[2]!.toLowerCase() === 'nan') return NaN;
  return word[1] === '-' ? -Infinity : Infinity;
}
