// Go's path/filepath.Match (match.go), which spread uses for its include list (through
// filepath.Glob) and for backends/systems/variants entries: `*` and `?` never match `/`,
// `[...]` is negated by `^` only (`!` is a plain character), has no `[:class:]`, must hold
// at least one character or range before its `]`, and `-` and `]` may not start a range end;
// `\` escapes everywhere. A malformed pattern is Go's ErrBadPattern.

export const BAD_PATTERN = 'syntax error in pattern';

/** Go's hasMeta on Unix: whether filepath.Glob matches `text` rather than looking it up. */
export function hasGoMeta(text: string): boolean {
  return /[*?[\\]/.test(text);
}

function codePoint(c: string): string {
  return `\\u{${c.codePointAt(0)!.toString(16)}}`;
}

/**
 * The pattern as an anchored RegExp, or the pattern itself when it has no metacharacter (it
 * matches only itself). Throws Error(BAD_PATTERN) where Match returns ErrBadPattern.
 */
export function goMatchPattern(pattern: string): RegExp | string {
  if (!hasGoMeta(pattern)) return pattern;
  const chars = [...pattern];
  let re = '^';
  let i = 0;
  /** match.go getEsc: one possibly escaped character of a class, never the last of the pattern. */
  const classChar = (): string => {
    let c = chars[i];
    if (c === undefined || c === '-' || c === ']') throw new Error(BAD_PATTERN);
    if (c === '\\') c = chars[++i];
    if (c === undefined || i + 1 >= chars.length) throw new Error(BAD_PATTERN);
    i++;
    return c;
  };
  while (i < chars.length) {
    const c = chars[i]!;
    i++;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      if (i >= chars.length) throw new Error(BAD_PATTERN);
      re += codePoint(chars[i++]!);
    } else if (c === '[') {
      const negated = chars[i] === '^';
      if (negated) i++;
      let ranges = '';
      for (let n = 0; ; n++) {
        if (chars[i] === ']' && n > 0) {
          i++;
          break;
        }
        const lo = classChar();
        const hi = chars[i] === '-' ? (i++, classChar()) : lo;
        // a reversed range is no error in Go: it matches nothing
        if (lo.codePointAt(0)! <= hi.codePointAt(0)!) ranges += `${codePoint(lo)}-${codePoint(hi)}`;
      }
      if (ranges === '') re += negated ? '[^]' : '(?!)';
      else re += `[${negated ? '^' : ''}${ranges}]`;
    } else re += codePoint(c);
  }
  return new RegExp(`${re}$`, 'u');
}

/** Whether `name` matches a compiled goMatchPattern. */
export function goMatches(pattern: RegExp | string, name: string): boolean {
  return typeof pattern === 'string' ? pattern === name : pattern.test(name);
}
