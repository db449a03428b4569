// spread's project content rules (spread-spec.md §12), with the GNU tar semantics spread
// relies on: `include` entries are Go filepath.Glob patterns over paths relative to the project
// root (src/go-match.ts; `.` is the whole tree, as for tar; default: every root entry, dotfiles included); `exclude` entries are tar --exclude patterns as
// written (unanchored, `*` matches `/`), plus `.spread-reuse.*` always; `rename` entries are tar
// --transform arguments: expressions `s,regex,replacement,flags` separated by `;` (POSIX basic
// regex unless flag x; flags g, i, x, a number N (the Nth match; with g, it and every one
// after), and r/R s/S h/H scopes: `R` leaves member names alone, `S` symlink targets), and
// `flags=...` setting the scopes of the expressions after it.
import { errorMessage, UsageError } from '../errors.js';

export interface PackRules {
  readonly include?: readonly string[];
  readonly exclude?: readonly string[];
  readonly rename?: readonly string[];
  /** Exact paths relative to the root, never packed: the runner's own state inside a project. */
  readonly excludePaths?: readonly string[];
  /** Paths relative to the root (the whole path matched), never packed: the runner's temp files named by process. */
  readonly excludePathPatterns?: readonly RegExp[];
}

const ALWAYS_EXCLUDED = '.spread-reuse.*';

/** An fnmatch glob (tar --exclude, no FNM_PATHNAME) as a regex body: `*` and `?` match `/` too. */
function globBody(pattern: string): string {
  const any = '[^]';
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') out += `${any}*`;
    else if (c === '?') out += any;
    else if (c === '\\' && i + 1 < pattern.length) out += escapeRegex(pattern[++i] as string);
    else if (c === '[') {
      const bracket = bracketExpression(pattern, i, 'glob');
      if (!bracket) out += '\\[';
      else {
        out += bracket.regex;
        i = bracket.end;
      }
    } else out += escapeRegex(c);
  }
  return out;
}

/** fnmatch's character classes, as in the C locale, as the insides of a regex class. */
const CHARACTER_CLASSES: ReadonlyMap<string, string> = new Map([
  ['alnum', '0-9A-Za-z'],
  ['alpha', 'A-Za-z'],
  ['blank', ' \\t'],
  ['cntrl', '\\x00-\\x1f\\x7f'],
  ['digit', '0-9'],
  ['graph', '\\x21-\\x7e'],
  ['lower', 'a-z'],
  ['print', '\\x20-\\x7e'],
  ['punct', '\\x21-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7e'],
  ['space', ' \\t\\n\\v\\f\\r'],
  ['upper', 'A-Z'],
  ['xdigit', '0-9A-Fa-f'],
]);

/** One character inside a regex class, whatever it is. */
function classChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

interface Bracket {
  /** The regex class, or `(?!)` (nothing) for a class name fnmatch does not know. */
  readonly regex: string;
  /** The index of its closing `]`. */
  readonly end: number;
  /** What a regular expression refuses (regcomp): an unknown class, a reversed range. */
  readonly invalid: string | undefined;
}

/**
 * The bracket expression opening at `pattern[open]`, read as fnmatch (a tar --exclude glob)
 * or regcomp (a tar --transform regex) reads it: negated by `!` or `^` first (a regex: `^`
 * only), a `]` first is literal, `\` escapes (in a regex it is literal), ranges, and
 * `[:alpha:]` and the other classes. A glob's reversed range matches nothing, an unknown class
 * makes it match nothing; a regex refuses both (`invalid`). Undefined when it does not close.
 */
function bracketExpression(pattern: string, open: number, dialect: 'glob' | 'regex'): Bracket | undefined {
  let i = open + 1;
  const negate = pattern[i] === '^' || (dialect === 'glob' && pattern[i] === '!');
  if (negate) i++;
  let body = '';
  let unknownClass = false;
  let invalid: string | undefined;
  for (let first = true; i < pattern.length; first = false) {
    if (pattern[i] === ']' && !first) return { regex: unknownClass ? '(?!)' : `[${negate ? '^' : ''}${body}]`, end: i, invalid };
    if (pattern.startsWith('[:', i)) {
      const close = pattern.indexOf(':]', i + 2);
      if (close >= 0) {
        const name = pattern.slice(i + 2, close);
        const members = CHARACTER_CLASSES.get(name);
        if (members === undefined) {
          unknownClass = true;
          invalid ??= `unknown character class [:${name}:]`;
        } else body += members;
        i = close + 2;
        continue;
      }
    }
    const one = (): string => (dialect === 'glob' && pattern[i] === '\\' && i + 1 < pattern.length ? pattern[++i] : pattern[i]) as string;
    const low = one();
    i++;
    if (pattern[i] === '-' && i + 1 < pattern.length && pattern[i + 1] !== ']') {
      i++;
      const high = one();
      i++;
      if (low <= high) body += `${classChar(low)}-${classChar(high)}`;
      else invalid ??= `reversed range ${low}-${high}`;
    } else body += classChar(low);
  }
  return undefined;
}

/** `text` as a regex that matches it literally. */
export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * tar --exclude as GNU tar (1.34) matches it when creating, the pattern as written: against
 * the member name or any tail of it after a `/` (unanchored), and against any leading part
 * of those that ends before a `/` (FNM_LEADING_DIR). Member names never end in `/` there,
 * so `c/` excludes nothing; they start with `./` only when their include entry does, so
 * `./x.o` excludes nothing under the default include (test/pack/pack-exclude.test.ts).
 */
function excludeMatcher(pattern: string): RegExp {
  return new RegExp(`(^|/)${globBody(pattern)}(/|$)`);
}

/** GNU regex escapes JavaScript reads alike: word and space characters, word boundaries. */
const SHARED_ESCAPES = 'wWsSbB';

/**
 * Converts a POSIX regular expression with GNU extensions, basic (BRE) or extended (ERE, tar's
 * flag x), to JavaScript syntax: bracket expressions as regcomp reads them, BRE's `\(` groups
 * and literal `(`. GNU's `\<`, `\>`, `` \` `` and `\'` are refused: JavaScript has none.
 */
function posixToJs(source: string, extended: boolean): string {
  let out = '';
  let atStart = true; // a `*` here is literal in a BRE
  for (let i = 0; i < source.length; i++) {
    const c = source[i] as string;
    if (c === '\\' && i + 1 < source.length) {
      const n = source[++i] as string;
      if (!extended && '(){}|+?'.includes(n)) out += n;
      else if (/[1-9]/.test(n) || SHARED_ESCAPES.includes(n)) out += `\\${n}`;
      else if ("<>`'".includes(n)) throw new UsageError(`\\${n} (a GNU word or buffer anchor) is not supported`);
      else out += escapeRegex(n);
      atStart = !extended && (n === '(' || n === '|');
      continue;
    }
    if (c === '[') {
      const bracket = bracketExpression(source, i, 'regex');
      if (!bracket) throw new UsageError('unterminated bracket expression');
      if (bracket.invalid) throw new UsageError(bracket.invalid);
      out += bracket.regex;
      i = bracket.end;
    } else if (!extended && c === '*' && atStart) out += '\\*';
    else if (!extended && '(){}|+?/'.includes(c)) out += `\\${c}`;
    else out += c;
    atStart = false;
  }
  return out;
}

/** One piece of a sed replacement: text as it is, or the number of a group (0: the whole match). */
type ReplacementPart = string | number;

/** Reads a sed replacement (`\1`, `&`, `\&`, `\n`) into its pieces. */
function sedReplacement(text: string): ReplacementPart[] {
  const parts: ReplacementPart[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '\\' && i + 1 < text.length) {
      const n = text[++i] as string;
      if (/[0-9]/.test(n)) parts.push(Number(n));
      else if (n === 'n') parts.push('\n');
      else if ('LUluE'.includes(n)) throw new UsageError(`rename: case conversion \\${n} is not supported`);
      else parts.push(n);
    } else if (c === '&') parts.push(0);
    else parts.push(c);
  }
  return parts;
}

type NameKind = 'path' | 'symlink-target';

interface Transform {
  readonly regex: RegExp;
  readonly replacement: readonly ReplacementPart[];
  /** The first match replaced (tar's numeric flag; 1 without one)... */
  readonly from: number;
  /** ...and the matches after it too (flag g). */
  readonly global: boolean;
  readonly paths: boolean;
  readonly symlinkTargets: boolean;
}

/** Which names a rename applies to: member names (tar's scope flags r/R), symlink targets (s/S). */
interface Scope {
  paths: boolean;
  symlinkTargets: boolean;
}

/**
 * Applies one of tar's scope flags to `scope`; false when `f` is none. h/H name hard link
 * targets: the pack has none (hard links are packed as regular files).
 */
function applyScopeFlag(scope: Scope, f: string): boolean {
  if (f === 'r' || f === 'R') scope.paths = f === 'r';
  else if (f === 's' || f === 'S') scope.symlinkTargets = f === 's';
  else if (f !== 'h' && f !== 'H') return false;
  return true;
}

/**
 * Parses a tar --transform argument: expressions such as `s,^,project/,` or `s/a/b/gS`,
 * separated by `;`; a `flags=...` among them sets the scope of those after it, from none.
 */
function parseTransforms(argument: string): Transform[] {
  const transforms: Transform[] = [];
  let scope: Scope = { paths: true, symlinkTargets: true };
  for (let at = 0; at < argument.length;) {
    if (argument.startsWith('flags=', at)) {
      const end = argument.indexOf(';', at) < 0 ? argument.length : argument.indexOf(';', at);
      scope = { paths: false, symlinkTargets: false };
      for (const f of argument.slice(at + 'flags='.length, end)) {
        if (!applyScopeFlag(scope, f)) throw new UsageError(`rename: unknown flag "${f}" in "${argument}"`);
      }
      at = end + 1;
      continue;
    }
    const { transform, end } = parseTransform(argument, at, scope);
    transforms.push(transform);
    at = end + 1;
  }
  return transforms;
}

/** Parses the expression at `argument[at]`, up to the `;` after its flags (`end`) or the end. */
function parseTransform(argument: string, at: number, defaultScope: Scope): { transform: Transform; end: number } {
  if (argument[at] !== 's' || argument.length < at + 4) throw new UsageError(`rename: "${argument}" is not a s/regex/replacement/ expression`);
  const delim = argument[at + 1] as string;
  const parts: string[] = [''];
  let i = at + 2;
  for (; i < argument.length; i++) {
    const c = argument[i] as string;
    if (c === '\\' && argument[i + 1] === delim) {
      parts[parts.length - 1] += delim;
      i++;
    } else if (c === '\\' && i + 1 < argument.length) {
      parts[parts.length - 1] += c + (argument[++i] as string);
    } else if (c === delim && parts.length < 3) parts.push('');
    else if (c === ';' && parts.length === 3) break;
    else parts[parts.length - 1] += c;
  }
  if (parts.length !== 3) throw new UsageError(`rename: "${argument}" needs three "${delim}" delimiters`);
  const [source, replacement, flags] = parts as [string, string, string];
  let global = false;
  let ignoreCase = false;
  let extended = false;
  let from = 1;
  const scope = { ...defaultScope };
  for (const match of flags.matchAll(/[0-9]+|./g)) {
    const f = match[0];
    if (/^[0-9]+$/.test(f)) from = Math.max(1, Number(f));
    else if (f === 'g') global = true;
    else if (f === 'i') ignoreCase = true;
    else if (f === 'x') extended = true;
    else if (!applyScopeFlag(scope, f)) throw new UsageError(`rename: unknown flag "${f}" in "${argument}"`);
  }
  let regex: RegExp;
  try {
    regex = new RegExp(posixToJs(source, extended), `g${ignoreCase ? 'i' : ''}`);
  } catch (err) {
    throw new UsageError(`rename: bad regular expression in "${argument}": ${errorMessage(err)}`);
  }
  return { transform: { regex, replacement: sedReplacement(replacement), from, global, ...scope }, end: i };
}

/** `name` with the matches of `t` replaced: the nth (tar's numeric flag, else the first), and with g every one after it. */
function applyTransform(t: Transform, name: string): string {
  let seen = 0;
  t.regex.lastIndex = 0;
  return name.replace(t.regex, (...args: unknown[]) => {
    seen++;
    // args: the match, its groups (undefined when a group took no part), its offset, ...
    const groups = args.slice(0, args.findIndex((a) => typeof a === 'number')) as Array<string | undefined>;
    if (seen < t.from || (seen > t.from && !t.global)) return groups[0] as string;
    return t.replacement.map((part) => (typeof part === 'number' ? (groups[part] ?? '') : part)).join('');
  });
}

/** The compiled rules: which paths go in, and under which names. */
export class PackRuleSet {
  readonly include: readonly string[] | undefined;
  readonly #exclude: readonly RegExp[];
  readonly #excludePaths: ReadonlySet<string>;
  readonly #excludePathPatterns: readonly RegExp[];
  readonly #transforms: readonly Transform[];
  /** The rename expressions as given, for messages. */
  readonly renameSource: readonly string[];

  constructor(rules: PackRules = {}) {
    this.renameSource = rules.rename ?? [];
    this.include = rules.include && rules.include.length > 0 ? rules.include : undefined;
    this.#exclude = [ALWAYS_EXCLUDED, ...(rules.exclude ?? [])].map(excludeMatcher);
    this.#excludePaths = new Set(rules.excludePaths ?? []);
    this.#excludePathPatterns = rules.excludePathPatterns ?? [];
    this.#transforms = (rules.rename ?? []).flatMap(parseTransforms);
  }

  /**
   * `path` is relative to the project root, `/`-separated, no trailing slash; `tarName` is
   * the name GNU tar would match the exclude patterns against (its include entry as written),
   * which the rename rules see too.
   */
  isExcluded(path: string, tarName: string): boolean {
    return this.#excludePaths.has(path) || this.#excludePathPatterns.some((re) => re.test(path)) || this.#exclude.some((re) => re.test(tarName));
  }

  rename(name: string, kind: NameKind): string {
    let out = name;
    for (const t of this.#transforms) {
      if (kind === 'path' ? t.paths : t.symlinkTargets) out = applyTransform(t, out);
    }
    return out;
  }
}
