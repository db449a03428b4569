// YAML configuration, checked by its schema (validate.ts), with messages that name the file,
// the line and the field.
import { readFileSync } from 'node:fs';
import type { Static, TSchema } from '@sinclair/typebox';
import { LineCounter, parseAllDocuments, parseDocument, isAlias, isMap, isNode, isPair, isScalar, isSeq, visit, type Alias, type Document, type Node, type Pair, type YAMLError, type YAMLMap } from 'yaml';
import { ConfigError, errorMessage } from '../errors.js';
import { escapePointer, fieldPath, schemaProblem } from './validate.js';

/**
 * The line of the field at `pointer`: its key's (a block value, a map or a list, starts on
 * the line below), else its item's in a list; a field the file does not have (a missing
 * required one) is given its parent's. A field inside a map or list reached through an alias
 * (`*name`) or a merge key (`<<: *name`) is given its line there, where the bad value is
 * written, not the line of the key that uses the anchored value; a field whose own value is an
 * alias (`port: *p`) is given its key's line, as any other.
 */
function lineOf(doc: Document, lc: LineCounter, pointer: string): number | undefined {
  const segments = pointer.split('/').slice(1).map((p) => (/^\d+$/.test(p) ? Number(p) : p.replace(/~1/g, '/').replace(/~0/g, '~')));
  let node = resolvedNode(doc, doc.contents);
  let at = isNode(doc.contents) ? doc.contents.range?.[0] : undefined;
  for (const segment of segments) {
    let found: { at: number | undefined; value: unknown } | undefined;
    if (isMap(node)) {
      const pair = pairOf(doc, node, segment);
      if (pair) found = { at: isNode(pair.key) ? pair.key.range?.[0] : undefined, value: pair.value };
    } else if (isSeq(node) && typeof segment === 'number' && segment < node.items.length) {
      const item = node.items[segment];
      found = { at: isNode(item) ? item.range?.[0] : undefined, value: item };
    }
    if (!found) break;
    at = found.at ?? at;
    node = resolvedNode(doc, found.value);
  }
  return at === undefined ? undefined : lc.linePos(at).line;
}

/** `node`, or the node an alias in its place names. */
function resolvedNode(doc: Document, node: unknown): unknown {
  return isAlias(node) ? node.resolve(doc) : node;
}

/** A merge key (`<<`), as the yaml library reads it with `merge: true`: the text, or its symbol. */
function isMergeKey(key: unknown): boolean {
  const name = isScalar(key) ? key.value : key;
  return name === '<<' || (typeof name === 'symbol' && name.description === '<<');
}

/**
 * The pair of `map` for `name`: its own, else that of the first map its merge keys name
 * (`<<: *a`, `<<: [*a, *b]`) which has one, as the merge takes the value from there.
 */
function pairOf(doc: Document, map: YAMLMap, name: string | number, seen = new Set<YAMLMap>()): Pair | undefined {
  if (seen.has(map)) return undefined; // a map merged into itself (`&a {<<: *a}`)
  seen.add(map);
  const own = map.items.find((pair) => !isMergeKey(pair.key) && (isScalar(pair.key) ? pair.key.value : pair.key) === name);
  if (own) return own;
  for (const merge of map.items.filter((pair) => isMergeKey(pair.key))) {
    const value = resolvedNode(doc, merge.value);
    for (const source of isSeq(value) ? value.items.map((item) => resolvedNode(doc, item)) : [value]) {
      const found = isMap(source) ? pairOf(doc, source, name, seen) : undefined;
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * Where a field set in a configuration document is, as a config error names it: `file:line:
 * field` (the line of its key, through aliases and merge keys as lineOf finds it).
 */
export function fieldPlace({ doc, lc }: ConfigDocument, file: string, path: readonly string[]): { line: number | undefined; field: string; place: string } {
  const pointer = path.map((p) => `/${escapePointer(p)}`).join('');
  const line = lineOf(doc, lc, pointer);
  const field = fieldPath(pointer);
  return { line, field, place: `${file}:${line ?? '?'}: ${field}` };
}

/**
 * Where a setting was given, for an error refusing its value once the configuration was
 * loaded (at start): `place` begins the message (`file:line: field`, or a flag).
 */
export interface SettingPlace {
  readonly place: string;
  readonly field: string;
  readonly file?: string;
  readonly line?: number | undefined;
}

/** The place of the setting at `path` of the configuration file `file`, which is read again for its lines. */
export function filePlace(file: string, path: readonly string[]): SettingPlace {
  return { file, ...fieldPlace(parseConfigDocument(readConfigFile(file)), file, path) };
}

/**
 * The pair at `path` (keys of nested maps) of the document, found through merge keys as the
 * merge reads them (`<<: *defaults` at the top level may hold the key): Document.getIn and
 * has see only the keys written in each map.
 */
export function pairAt(doc: Document, path: readonly string[]): Pair | undefined {
  let pair: Pair | undefined;
  let node = resolvedNode(doc, doc.contents);
  for (const key of path) {
    pair = isMap(node) ? pairOf(doc, node, key) : undefined;
    if (!pair) return undefined;
    node = resolvedNode(doc, pair.value);
  }
  return pair;
}

/**
 * A YAML syntax error as "file:line:col: message". With prettyErrors off (kept: its message
 * would carry a source excerpt) the error has no linePos, only `pos`, an offset the line
 * counter turns into line and column. A duplicate key is named.
 */
function syntaxError(err: YAMLError, doc: Document, file: string, lc: LineCounter): ConfigError {
  const { line, col } = lc.linePos(err.pos[0]);
  let message = err.message.split('\n')[0]!;
  const field = err.code === 'DUPLICATE_KEY' ? keyAt(doc, err.pos[0]) : undefined;
  if (field !== undefined) message += `: ${JSON.stringify(field)}`;
  return new ConfigError(`${file}:${line}:${col}: ${message}`, file, line, field);
}

/** The field path ("a.b[0].c") of the item reached by `path`, a visitor's ancestors and the item itself. */
function visitedField(path: readonly unknown[]): string {
  const parts = path.map((node, i) =>
    isPair(node) ? `/${escapePointer(String(isScalar(node.key) ? node.key.value : node.key))}`
    : isSeq(node) ? `/${node.items.indexOf(path[i + 1] as never)}` : '');
  return fieldPath(parts.join(''));
}

/** The field path ("a.b[0].c") of the map key that starts at `offset`, if any. */
function keyAt(doc: Document, offset: number): string | undefined {
  let found: string | undefined;
  visit(doc, {
    Pair(_, pair, path) {
      if (!isNode(pair.key) || pair.key.range?.[0] !== offset) return undefined;
      found = visitedField([...path, pair]);
      return visit.BREAK;
    },
  });
  return found;
}

/**
 * The first alias (`*name`) within `node`, in document order, for which `why` (given the
 * anchors set before it) says what is wrong, as "file:line: field: alias *name ...": the
 * yaml library's own errors, thrown when the value is taken, name neither line nor field.
 */
function aliasError(doc: Document, node: Node, file: string, lc: LineCounter, why: (alias: Alias, anchors: ReadonlySet<string>) => string | undefined): ConfigError | undefined {
  const anchors = new Set<string>();
  let error: ConfigError | undefined;
  visit(doc, {
    Node(_, item, path) {
      const what = isAlias(item) && (item === node || path.includes(node)) ? why(item, anchors) : undefined;
      if (isAlias(item) && what !== undefined) {
        const line = item.range ? lc.linePos(item.range[0]).line : undefined;
        const field = visitedField([...path, item]) || '(top level)';
        error = new ConfigError(`${file}:${line ?? '?'}: ${field}: alias *${item.source} ${what}`, file, line, field);
        return visit.BREAK;
      }
      if (item.anchor) anchors.add(item.anchor);
      return undefined;
    },
  });
  return error;
}

/** Why `alias` names no value: its anchor is not set before it (anchors are seen in document order, as the library resolves them). */
function unresolved(alias: Alias, anchors: ReadonlySet<string>): string | undefined {
  return anchors.has(alias.source) ? undefined : `names no anchor (&${alias.source}) set before it`;
}

/**
 * Why `alias` alone is an alias bomb: the library's alias count refuses its value, taken by
 * itself. The alias the whole value failed at is not told (the library's error carries no
 * node): the first one that alone exceeds the count is where the bomb is built.
 */
function bombIn(doc: Document): (alias: Alias) => string | undefined {
  return (alias) => {
    try {
      alias.toJS(doc);
      return undefined;
    } catch (err) {
      return /alias count/i.test(errorMessage(err)) ? `expands to too many values: ${errorMessage(err)}` : undefined;
    }
  };
}

/**
 * The plain value of `node`, its aliases (`*name`) resolved in `doc`: toJSON() without the
 * document left each one as {source: name}, refused as "must be string". An alias bomb (a
 * billion laughs) is refused by the yaml library's alias count, named at the first alias
 * that alone makes one.
 */
function nodeValue(node: Node, doc: Document, file: string, lc: LineCounter): unknown {
  try {
    return node.toJS(doc);
  } catch (err) {
    // the library's errors name no line: the document is walked for the alias only then
    throw aliasError(doc, node, file, lc, unresolved) ?? aliasError(doc, node, file, lc, bombIn(doc)) ?? new ConfigError(`${file}: ${errorMessage(err)}`, file);
  }
}

/** YAML text parsed as configuration is, its syntax errors not thrown yet (validateConfig throws them). */
export interface ConfigDocument {
  readonly doc: Document;
  readonly lc: LineCounter;
}

/**
 * Parses configuration text; `firstDocument`: only its first YAML document, as spread reads
 * spread.yaml (a later `---` and what follows are ignored; no document at all: the whole text).
 */
export function parseConfigDocument(text: string, options: { firstDocument?: boolean } = {}): ConfigDocument {
  const lc = new LineCounter();
  // merge keys (<<: *name) as spread reads the rest of spread.yaml (YAML 1.1, go-yaml)
  const yamlOptions = { lineCounter: lc, prettyErrors: false, merge: true } as const;
  const doc = (options.firstDocument ? parseAllDocuments(text, yamlOptions)[0] : undefined) ?? parseDocument(text, yamlOptions);
  return { doc, lc };
}

/**
 * Parses YAML text and validates it against a TypeBox schema, filling defaults.
 * Throws ConfigError("file:line: field: message").
 */
export function parseConfig<S extends TSchema>(schema: S, text: string, file: string, at: readonly string[] = []): Static<S> {
  return validateConfig(schema, parseConfigDocument(text), file, at);
}

/** parseConfig of a document parsed already: its syntax errors, then the schema's. */
export function validateConfig<S extends TSchema>(schema: S, parsed: ConfigDocument, file: string, at: readonly string[] = []): Static<S> {
  const { doc, lc } = parsed;
  if (doc.errors.length > 0) throw syntaxError(doc.errors[0]!, doc, file, lc);
  // `at` validates one subtree (e.g. the `fleetcache:` key of spread.yaml), lines still exact.
  const node = at.length === 0 ? doc.contents : pairAt(doc, at)?.value;
  const atPointer = at.map((a) => `/${a}`).join('');
  const value: unknown = (isNode(node) ? nodeValue(node, doc, file, lc) : node) ?? {};
  const problem = schemaProblem(schema, value);
  if (problem) throw fieldError(parsed, file, atPointer + problem.pointer, problem.message);
  return value as Static<S>;
}

/**
 * "file:line: field: message" for the field at `pointer`. A file with no content (empty, or
 * comments only) has no line to name: it is said to be empty, at line 1.
 */
function fieldError({ doc, lc }: ConfigDocument, file: string, pointer: string, message: string): ConfigError {
  const empty = doc.contents === null;
  const line = empty ? 1 : lineOf(doc, lc, pointer);
  const field = fieldPath(pointer) || '(top level)';
  return new ConfigError(`${file}:${line ?? '?'}: ${field}: ${message}${empty ? ' (the file is empty)' : ''}`, file, line, field);
}

export function loadConfigFile<S extends TSchema>(schema: S, file: string): Static<S> {
  return parseConfig(schema, readConfigFile(file), file);
}

/** A configuration file's text; ConfigError when it cannot be read. */
export function readConfigFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read configuration: ${errorMessage(err)}`, file);
  }
}
