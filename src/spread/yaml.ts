// Reading spread's YAML the way yaml.v2 decodes it into spread's structs: scalars become
// strings as written, null means "absent", unknown keys are ignored, and every error
// names the file and line.
import { LineCounter, parseAllDocuments, parseDocument, isAlias, isMap, isScalar, isSeq, type Document, type Node, type Scalar, type YAMLSeq } from 'yaml';
import { closestName, didYouMean } from '../config/closest-name.js';
import { FleetError } from '../errors.js';
import { decodeGoBase64 } from './go-base64.js';
import { asTagged, goInt64, isCheckedTag, resolveYamlV2Scalar, type ResolvedScalar } from './yaml-scalar.js';
import type { EnvEntry, FieldOrigins, Origin, PlacedField } from './model.js';

/** Makes the one error type of the project model. */
export function projectError(message: string, origin?: Origin): FleetError {
  const where = origin ? `${origin.file}${origin.line === undefined ? '' : `:${origin.line}`}: ` : '';
  return new FleetError('FC_ERR_PROJECT', where + message, { details: origin ? { file: origin.file, line: origin.line } : undefined });
}

/**
 * The fields of a mapping decoded into a struct, by key. Remembers the keys read: the others
 * are fields fleetcache does not know (ignored, as spread ignores unknown keys), which a
 * verbose run names (YamlFile.ignoredKeys).
 */
export class Fields extends Map<string, Node | undefined> {
  readonly #read = new Set<string>();
  /** Where each key is written. */
  readonly keyNodes = new Map<string, Node>();

  constructor(readonly into: string) {
    super();
  }

  override get(key: string): Node | undefined {
    this.#read.add(key);
    return super.get(key);
  }

  /** `keys` are known though not read here (a backend type's options, checked by its schema). */
  known(keys: Iterable<string>): void {
    for (const key of keys) this.#read.add(key);
  }

  /** The known key an unread one likely misspells (the keys read are the ones the struct has), if any. */
  meant(key: string): string | undefined {
    return closestName(key, [...this.#read]);
  }

  unread(): string[] {
    return [...this.keys()].filter((key) => !this.#read.has(key));
  }
}

/** A parsed YAML file with line lookup. Values are nodes or undefined (absent/null). */
export class YamlFile {
  readonly file: string;
  readonly #doc: Document;
  readonly #lc = new LineCounter();
  readonly #fields: Fields[] = [];
  /** Keys written twice in one mapping, each the ignored (earlier) one's line: what a verbose run says of them. */
  readonly #overridden = new Set<string>();
  /** The key of each mapping value read through pairs(), for failField. */
  readonly #keyOf = new WeakMap<Node, string>();

  /** `file` is the display name (relative to the project root). */
  constructor(file: string, text: string) {
    this.file = file;
    const options = { lineCounter: this.#lc, version: '1.1', uniqueKeys: false, prettyErrors: false } as const;
    // yaml.v2's Unmarshal decodes a file's first document and reads no further: later ones
    // (a trailing `---`, a second document) are ignored, not errors. No document at all: the
    // whole text as one, for its errors.
    this.#doc = parseAllDocuments(text, options)[0] ?? parseDocument(text, options);
    const err = this.#doc.errors[0];
    if (err) {
      const line = err.linePos?.[0]?.line ?? this.#lc.linePos(err.pos[0]).line;
      throw projectError(`cannot load ${file}: yaml: ${err.message.split('\n')[0]}`, { file, line });
    }
  }

  get root(): Node | undefined {
    return this.#value(this.#doc.contents as Node | null);
  }

  origin(node: Node | undefined): Origin {
    const line = node?.range ? this.#lc.linePos(node.range[0]).line : undefined;
    return { file: this.file, line };
  }

  /** Where each of `names` that `fields` has is written. */
  fieldOrigins(fields: ReadonlyMap<string, Node | undefined>, names: readonly PlacedField[]): FieldOrigins {
    const at: Partial<Record<PlacedField, Origin>> = {};
    for (const name of names) {
      const node = fields.get(name);
      if (node !== undefined) at[name] = this.origin(node);
    }
    return at;
  }

  /** The plain value of a node (mappings become objects), aliases resolved. */
  js(node: Node | undefined): unknown {
    return node?.toJS(this.#doc);
  }

  /** An error at `node`'s line; with no node (an empty file), at line 1. */
  fail(node: Node | undefined, message: string): FleetError {
    return projectError(message, node ? this.origin(node) : { file: this.file, line: 1 });
  }

  /** fail() for a value the mapping holding it rejects: the message (spread's wording) ends naming its key. */
  failField(node: Node | undefined, message: string): FleetError {
    const key = node && this.#keyOf.get(node);
    return this.fail(node, key === undefined ? message : `${message} (field ${key})`);
  }

  /** Resolves aliases and turns null scalars into undefined. */
  #value(node: Node | null | undefined): Node | undefined {
    let n: Node | null | undefined = node;
    if (n && isAlias(n)) n = n.resolve(this.#doc) ?? undefined;
    if (!n) return undefined;
    if (isScalar(n) && n.value === null) return undefined;
    return n;
  }

  /** The tag yaml.v2's "cannot unmarshal" names: a scalar's explicit tag, else the one it resolves to. */
  #kind(node: Node): string {
    if (isMap(node)) return '!!map';
    if (isSeq(node)) return '!!seq';
    return isScalar(node) ? this.#resolve(node).tag : '!!str';
  }

  #typeError(node: Node, into: string): FleetError {
    const shown = isScalar(node) ? ` \`${this.#text(node)}\`` : '';
    return this.failField(node, `cannot load ${this.file}: yaml: unmarshal errors: cannot unmarshal ${this.#kind(node)}${shown} into ${into}`);
  }

  /** A scalar's text as written (quotes and escapes undone): what yaml.v2 resolves and a Go string gets. */
  #text(node: Scalar): string {
    return node.source ?? String(node.value);
  }

  /**
   * What yaml.v2's decoder makes of a scalar before it meets the field's type (decode.go's
   * scalar(), resolve.go's resolve()): the tag it goes by (as an error names it), and for a
   * resolvable one the value. Untagged quoted and block scalars are strings; !!str, !!binary
   * and tags yaml.v2 does not resolve (`!`, `!foo`, !!set) stay as tagged; a scalar its
   * explicit tag does not fit (`!!int abc`) is refused, whatever the field.
   */
  #resolve(node: Scalar): { tag: string; resolved?: ResolvedScalar } {
    const tag = node.tag?.startsWith(YAML_TAG) ? `!!${node.tag.slice(YAML_TAG.length)}` : node.tag;
    if (tag === undefined && node.type !== 'PLAIN') return { tag: '!!str' };
    if (tag !== undefined && !isCheckedTag(tag)) return { tag };
    const text = this.#text(node);
    const written = resolveYamlV2Scalar(text, tag);
    if (tag === undefined) return { tag: written.tag, resolved: written };
    const resolved = asTagged(written, tag);
    if (!resolved) throw this.failField(node, `cannot load ${this.file}: yaml: cannot decode ${written.tag} \`${text}\` as a ${tag}`);
    return { tag, resolved };
  }

  /** The key/value pairs of a mapping, `<<` merge keys applied (explicit keys win). */
  pairs(node: Node | undefined, into = 'map'): Array<{ key: string; keyNode: Node; value: Node | undefined }> {
    if (node === undefined) return [];
    if (!isMap(node)) throw this.#typeError(node, into);
    const out: Array<{ key: string; keyNode: Node; value: Node | undefined }> = [];
    const merged: typeof out = [];
    const written = new Map<string, Node>();
    for (const pair of node.items) {
      const keyNode = this.#value(pair.key as Node | null);
      if (keyNode && this.#isMerge(keyNode)) {
        const src = this.#value(pair.value as Node | null);
        const sources = src && isSeq(src) ? src.items.map((i) => this.#value(i as Node)) : [src];
        for (const s of sources) merged.push(...this.pairs(s, into));
        continue;
      }
      // a key is decoded into a Go string as any value is (`!!binary` decoded, a tag checked)
      const key = this.str(keyNode);
      const value = this.#value(pair.value as Node | null);
      if (value) this.#keyOf.set(value, key);
      const at = keyNode ?? (pair.value as Node);
      const before = written.get(key);
      if (before) this.#overridden.add(`${this.file}:${this.origin(before).line ?? '?'}: ${JSON.stringify(key)} is written again at line ${this.origin(at).line ?? '?'} of the same mapping: ignored, the last one counts (as in spread)`);
      written.set(key, at);
      out.push({ key, keyNode: at, value });
    }
    const explicit = new Set(out.map((p) => p.key));
    return [...merged.filter((p) => !explicit.has(p.key)), ...out];
  }

  /** decode.go's isMerge: a `<<` key untagged and plain (or tagged `!`), or tagged !!merge. */
  #isMerge(keyNode: Node): boolean {
    if (!isScalar(keyNode) || this.#text(keyNode) !== '<<') return false;
    return (keyNode.tag === undefined && keyNode.type === 'PLAIN') || keyNode.tag === '!' || keyNode.tag === `${YAML_TAG}merge`;
  }

  /** The pairs of a mapping decoded into a Go map: of duplicate keys the last wins, like yaml.v2. */
  mapPairs(node: Node | undefined, into: string): Array<{ key: string; keyNode: Node; value: Node | undefined }> {
    const all = this.pairs(node, into);
    const last = new Map(all.map((p, i) => [p.key, i]));
    return all.filter((p, i) => last.get(p.key) === i);
  }

  /** A lookup of a mapping's fields by name (the last of duplicate keys wins, like yaml.v2). */
  fields(node: Node | undefined, into: string): Fields {
    const m = new Fields(into);
    for (const p of this.pairs(node, into)) {
      m.set(p.key, p.value);
      m.keyNodes.set(p.key, p.keyNode);
    }
    this.#fields.push(m);
    return m;
  }

  /** The keys of this file's mappings that the loading never read, and those written twice (the first ignored), with their lines. */
  ignoredKeys(): string[] {
    const unknown = this.#fields.flatMap((f) => f.unread().map((key) => {
      const { line } = this.origin(f.keyNodes.get(key));
      const meant = f.meant(key);
      return `${this.file}:${line ?? '?'}: ${JSON.stringify(key)} is not a field of ${f.into} fleetcache knows${didYouMean(meant === undefined ? [] : [meant])}: ignored`;
    }));
    return [...unknown, ...this.#overridden];
  }

  str(node: Node | undefined): string {
    if (node === undefined) return '';
    if (!isScalar(node)) throw this.#typeError(node, 'string');
    return this.#goString(node);
  }

  /**
   * A scalar decoded into a Go string as yaml.v2 does: the text as written whatever it would
   * resolve to (yes, 0x1F, 1e3, .inf, `!!int "0x10"` stay as written), `!!binary` base64-decoded,
   * and a scalar its explicit tag does not fit (`!!int abc`) refused.
   */
  #goString(node: Scalar): string {
    const text = this.#text(node);
    // untagged: the text whatever it resolves to (no need to resolve it)
    if (node.tag === undefined) return text;
    const { tag } = this.#resolve(node);
    if (tag === '!!binary') return this.#binary(node, text);
    return tag === '!!null' ? '' : text;
  }

  #binary(node: Scalar, text: string): string {
    const bytes = decodeGoBase64(text);
    if (bytes === undefined) throw this.failField(node, `cannot load ${this.file}: yaml: !!binary value contains invalid base64 data`);
    try {
      return UTF8.decode(bytes);
    } catch {
      // Go keeps any bytes in a string; fleetcache's values are text, so it says so rather than alter them
      throw this.failField(node, `cannot load ${this.file}: !!binary value decodes to bytes that are not UTF-8 text, which fleetcache cannot pass on unchanged`);
    }
  }

  /** A script: trimmed of surrounding whitespace. */
  script(node: Node | undefined): string {
    return this.str(node).trim();
  }

  list(node: Node | undefined): string[] {
    if (node === undefined) return [];
    if (!isSeq(node)) throw this.#typeError(node, '[]string');
    return this.#seqItems(node).map((item) => this.str(item));
  }

  items(node: Node | undefined, into: string): Array<Node | undefined> {
    if (node === undefined) return [];
    if (!isSeq(node)) throw this.#typeError(node, into);
    return this.#seqItems(node);
  }

  /** A sequence's items, each known to failField by the key holding the sequence (an item of the wrong type names its field). */
  #seqItems(node: YAMLSeq): Array<Node | undefined> {
    const key = this.#keyOf.get(node);
    return node.items.map((item) => {
      const value = this.#value(item as Node);
      if (value && key !== undefined && !this.#keyOf.has(value)) this.#keyOf.set(value, key);
      return value;
    });
  }

  /** A Go bool as yaml.v2 decodes it: a scalar resolving to a YAML 1.1 boolean (`yes`, `!!bool "on"`); a quoted `"true"` is a string, refused. */
  bool(node: Node | undefined): boolean {
    if (node === undefined) return false;
    if (!isScalar(node)) throw this.#typeError(node, 'bool');
    const { tag, resolved } = this.#resolve(node);
    if (resolved?.tag === '!!bool') return resolved.value;
    if (tag === '!!null') return false;
    throw this.#typeError(node, 'bool');
  }

  /**
   * An integer as yaml.v2 decodes a scalar into a Go int: undefined when absent (spread's
   * OptionalInt "not set"); a float is truncated toward zero (`1.5` → 1), an explicit tag
   * counts (`!!int "2"` is 2), an untagged quoted scalar is a string and refused, as are
   * values outside int64. `into`: the Go type errors name (spread's OptionalInt holds an int64).
   */
  int(node: Node | undefined, into: 'int' | 'int64' = 'int'): number | undefined {
    if (node === undefined) return undefined;
    if (!isScalar(node)) throw this.#typeError(node, into);
    const { tag, resolved } = this.#resolve(node);
    if (tag === '!!null') return undefined;
    const value = resolved?.tag === '!!int' || resolved?.tag === '!!float' ? goInt64(resolved) : undefined;
    if (value === undefined) throw this.#typeError(node, into);
    // spread's int64 is exact where a number is not past 2^53: two priorities spread tells
    // apart would compare equal here, so such a value is refused rather than rounded
    if (!Number.isSafeInteger(value)) throw this.failField(node, `cannot load ${this.file}: ${this.#text(node)} is past ${Number.MAX_SAFE_INTEGER} either way, the largest integer fleetcache holds exactly`);
    return value;
  }

  /** An environment map: ordered, names validated, duplicates refused. */
  env(node: Node | undefined, context: string): EnvEntry[] {
    const out: EnvEntry[] = [];
    const seen = new Set<string>();
    for (const { key, keyNode, value } of this.pairs(node, 'map[string]string')) {
      if (!VARNAME.test(key)) throw this.fail(keyNode, `invalid ${context} environment: invalid variable name: ${JSON.stringify(key)}`);
      if (seen.has(key)) throw this.fail(keyNode, `invalid ${context} environment: variable ${JSON.stringify(key)} defined multiple times`);
      seen.add(key);
      out.push([key, this.str(value)]);
    }
    return out;
  }
}

const YAML_TAG = 'tag:yaml.org,2002:';
/** Refuses bytes that are no UTF-8, and keeps a leading byte order mark as Go does. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const VARNAME = /^[a-zA-Z_][a-zA-Z0-9_]*(?:\/[a-zA-Z0-9_]+(?:,[a-zA-Z0-9_]+)*)?$/;
