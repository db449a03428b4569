// tooltool manifests (shared/tooltool.md §1): a JSON array of file records. Parsing
// follows the real client where it matters (elements that are not objects and records
// missing a required key are dropped, unknown keys ignored, `size: null` skips the size
// check, `version` is only a label; `unpack` is taken by Python's truth and any
// `visibility` is accepted, with a warning, since tooltool reads them so) but reports
// every malformed required value with file:line:field instead of crashing half-way
// through a fetch. A fetch reads a malformed size, algorithm or digest as a failure of
// that file only (keepInvalid), as tooltool fetches the others and fails at the end.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ConfigError, errorMessage, UsageError } from '../errors.js';
import { requireOutput, unreadableFile } from '../path-checks.js';

export type Visibility = 'public' | 'internal';

export interface ManifestRecord {
  readonly filename: string;
  /** null: the size is not checked (tooltool accepts this). */
  readonly size: number | null;
  readonly algorithm: string;
  /** Lowercase hex. */
  readonly digest: string;
  readonly unpack: boolean;
  readonly visibility?: Visibility;
  /**
   * A visibility that is neither public nor internal, as the manifest gives it: tooltool's
   * fetch never reads visibility, so neither does ours; upload refuses it; add writes it back.
   */
  readonly otherVisibility?: unknown;
  /**
   * tooltool's free-form label, any JSON value as the manifest gives it: tooltool never reads
   * it, and its add writes back a true one (Python's truth) whatever its type, a false one not.
   */
  readonly version?: unknown;
}

export interface DroppedRecord {
  readonly index: number;
  readonly line: number;
  /** The required keys the record lacks (all of them when it is not an object). */
  readonly missing: readonly string[];
  /** The element is not a JSON object (a number, string, array, null…): tooltool drops it too. */
  readonly notObject?: true;
}

/** Why a record was dropped, for messages: "is not an object" or "lacks size, digest". */
export function droppedReason(d: DroppedRecord): string {
  return d.notObject ? 'is not an object' : `lacks ${d.missing.join(', ')}`;
}

/**
 * What a reader of the manifest at `path` is warned of: the records tooltool skips, and the
 * values it accepts that are likely mistakes (Manifest.warnings).
 */
export function manifestNotices(m: { readonly dropped: readonly DroppedRecord[]; readonly manifestWarnings: readonly string[] }, path: string): string[] {
  return [...m.dropped.map((d) => `${path}:${d.line}: record ${d.index} ${droppedReason(d)} and is skipped (as tooltool does)`), ...m.manifestWarnings];
}

/**
 * A record with a size, algorithm or digest no file can match (tooltool takes it, asks the
 * server for it and fails that file only): kept by a fetch's reading, to fail that file alone.
 */
export interface InvalidRecord {
  readonly filename: string;
  /** How many of the manifest's (valid) records come before it: its place among them (inManifestOrder). */
  readonly before: number;
  /** Names file, line and field. */
  readonly error: ConfigError;
}

interface Manifest {
  readonly records: readonly ManifestRecord[];
  /** Only with `keepInvalid`: the records whose values are malformed (otherwise the first one throws). */
  readonly invalid: readonly InvalidRecord[];
  /** Records tooltool would silently skip; we keep them so callers can warn. */
  readonly dropped: readonly DroppedRecord[];
  /** Values tooltool accepts that are likely mistakes (`"unpack": "false"`), as `file:line: record N: …`. */
  readonly warnings: readonly string[];
}

const REQUIRED = ['filename', 'size', 'algorithm', 'digest'] as const;

/**
 * tooltool hashes with `hashlib.new(algorithm)`: Python's names, where OpenSSL (and so
 * node) spells these ones otherwise. Other names (md5, sha256, "SHA512") are OpenSSL's
 * in both. The manifest keeps the name as written: it is the download URL's segment.
 */
const HASHLIB_NAMES: Readonly<Record<string, string>> = {
  sha3_224: 'sha3-224',
  sha3_256: 'sha3-256',
  sha3_384: 'sha3-384',
  sha3_512: 'sha3-512',
  sha512_224: 'sha512-224',
  sha512_256: 'sha512-256',
  blake2b: 'blake2b512',
  blake2s: 'blake2s256',
};

/** A hash for a manifest's algorithm name; throws for a name hashlib would not know. */
export function createAssetHash(algorithm: string): Hash {
  return createHash(Object.hasOwn(HASHLIB_NAMES, algorithm) ? HASHLIB_NAMES[algorithm]! : algorithm);
}

/** Byte length of each hash's digest, so a digest of the wrong length is caught up front. */
function digestLength(algorithm: string): number | undefined {
  if (/^shake/i.test(algorithm)) return undefined; // no fixed length: hashlib cannot hexdigest() it either
  try {
    return createAssetHash(algorithm).digest().length;
  } catch {
    return undefined;
  }
}

/** Offsets where each element of the top-level JSON array starts (text already parsed OK). */
function elementOffsets(text: string): number[] {
  const offsets: number[] = [];
  let depth = 0;
  let inString = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (/\s/.test(c)) continue;
    if (depth === 1 && expectElement && c !== ']') {
      offsets.push(i);
      expectElement = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectElement = true;
  }
  return offsets;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** Refuses names tooltool refuses (BadFilenameException) plus ones that cannot be a plain file. */
function checkFilename(name: string): string | undefined {
  if (name === '' || name === '.' || name === '..') return 'must be a plain file name';
  if (/[/\\]/.test(name)) return 'must not contain "/" or "\\"';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(name)) return 'must not contain control characters';
  return undefined;
}

/** Python's truth of a JSON value, as tooltool's `if record.unpack:` takes it. */
function pythonTruth(value: unknown): boolean {
  if (typeof value === 'string') return value !== '';
  if (typeof value === 'number') return value !== 0;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object' && value !== null) return Object.keys(value).length > 0;
  return value === true;
}

/**
 * Two records that fetch the same bytes to the same file the same way, and upload them with
 * one visibility (as an upload fixes it for good, one record saying internal must never be
 * dropped for one saying public).
 */
function sameContent(a: ManifestRecord, b: ManifestRecord): boolean {
  return a.size === b.size && a.algorithm === b.algorithm && a.digest === b.digest && a.unpack === b.unpack && a.visibility === b.visibility && a.otherVisibility === b.otherVisibility;
}

interface ParseOptions {
  /**
   * A record's malformed size, algorithm or digest fails that record (`invalid`), not the
   * manifest: fetch does the others and fails at the end, as tooltool. A bad filename (tooltool's
   * BadFilenameException) or a name given two contents still fails the whole manifest.
   */
  readonly keepInvalid?: boolean;
}

/** Parses manifest text; `file` is only used in messages. */
export function parseManifest(text: string, file: string, options: ParseOptions = {}): Manifest {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const pos = /position (\d+)/.exec(errorMessage(err));
    const line = pos ? lineAt(text, Number(pos[1])) : undefined;
    throw new ConfigError(`${file}${line ? `:${line}` : ''}: invalid manifest: ${errorMessage(err)}`, file, line);
  }
  if (!Array.isArray(data)) throw new ConfigError(`${file}:1: invalid manifest: expected a JSON array of file records`, file, 1);
  const offsets = elementOffsets(text);
  const records: ManifestRecord[] = [];
  const invalid: InvalidRecord[] = [];
  const dropped: DroppedRecord[] = [];
  const warnings: string[] = [];
  const seen = new Map<string, { index: number; record: ManifestRecord }>();
  data.forEach((raw: unknown, index) => {
    const line = lineAt(text, offsets[index] ?? 0);
    const fail = (field: string, why: string): never => {
      throw new ConfigError(`${file}:${line}: record ${index}: ${field ? `${field} ` : ''}${why}`, file, line, `[${index}]${field ? `.${field}` : ''}`);
    };
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      dropped.push({ index, line, missing: [...REQUIRED], notObject: true });
      return;
    }
    const given = raw as Record<string, unknown>;
    // tooltool reads the optional keys with obj.get(): null is the same as absent.
    const r = Object.fromEntries(Object.entries(given).filter(([k, v]) => !(v === null && (k === 'unpack' || k === 'visibility' || k === 'version'))));
    const missing = REQUIRED.filter((k) => !(k in r));
    if (missing.length > 0) {
      dropped.push({ index, line, missing });
      return;
    }
    if (typeof r.filename !== 'string') fail('filename', 'must be a string');
    const filename = r.filename as string;
    const bad = checkFilename(filename);
    if (bad) fail('filename', `"${filename}" ${bad}`);
    try {
      if (r.size !== null && !(typeof r.size === 'number' && Number.isSafeInteger(r.size) && r.size >= 0)) {
        fail('size', 'must be a non-negative integer or null');
      }
      if (typeof r.algorithm !== 'string') fail('algorithm', 'must be a string');
      const length = digestLength(r.algorithm as string);
      if (length === undefined) fail('algorithm', `"${r.algorithm as string}" is not a known hash algorithm`);
      if (typeof r.digest !== 'string' || !new RegExp(`^[0-9a-f]{${length! * 2}}$`).test(r.digest)) {
        fail('digest', `must be ${length! * 2} lowercase hex characters for ${r.algorithm as string}`);
      }
    } catch (err) {
      if (!(options.keepInvalid && err instanceof ConfigError)) throw err;
      invalid.push({ filename, before: records.length, error: err });
      return;
    }
    const algorithm = r.algorithm as string;
    const warn = (field: string, why: string): void => void warnings.push(`${file}:${line}: record ${index}: ${field} ${why}`);
    const unpack = r.unpack === undefined ? false : pythonTruth(r.unpack);
    if (r.unpack !== undefined && typeof r.unpack !== 'boolean') {
      warn('unpack', `${JSON.stringify(r.unpack)} is not true or false: taken as ${unpack}, as tooltool (Python) takes it`);
    }
    const known = r.visibility === undefined || r.visibility === 'public' || r.visibility === 'internal';
    if (!known) warn('visibility', `${JSON.stringify(r.visibility)} is neither "public" nor "internal": fetch does not use it, as tooltool; upload refuses it`);
    const record: ManifestRecord = {
      filename,
      size: r.size as number | null,
      algorithm,
      digest: r.digest as string,
      unpack,
      ...(r.visibility === undefined ? {} : known ? { visibility: r.visibility as Visibility } : { otherVisibility: r.visibility }),
      // tooltool never reads `version`: any value is accepted, and kept when tooltool's add would write it back.
      ...(pythonTruth(r.version) ? { version: r.version } : {}),
    };
    const before = seen.get(filename);
    if (before !== undefined) {
      // tooltool fetches such a record twice (the second time it is present): one with the
      // same content is used once; another content under one name is refused, as ambiguous.
      if (!sameContent(before.record, record)) fail('filename', `"${filename}" is already used by record ${before.index}, with another size, digest, unpack or visibility`);
      warn('filename', `"${filename}" repeats record ${before.index}: used once`);
      return;
    }
    seen.set(filename, { index, record });
    records.push(record);
  });
  return { records, invalid, dropped, warnings };
}

/** What was made of each valid record (`valid`) and of each invalid one (`invalid`, as manifest.invalid), in manifest order. */
export function inManifestOrder<T>(manifest: Pick<Manifest, 'invalid'>, valid: readonly T[], invalid: readonly T[]): T[] {
  const out: T[] = [];
  let next = 0;
  manifest.invalid.forEach((r, i) => {
    while (next < r.before) out.push(valid[next++]!);
    out.push(invalid[i]!);
  });
  return [...out, ...valid.slice(next)];
}

export async function readManifest(file: string, options: ParseOptions = {}): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read manifest: ${errorMessage(err)}`, file);
  }
  return parseManifest(text, file, options);
}

/** The JSON text tooltool's `add` writes: same key order, 2-space indent. */
export function formatManifest(records: readonly ManifestRecord[]): string {
  const plain = records.map((r) => ({
    filename: r.filename,
    size: r.size,
    algorithm: r.algorithm,
    digest: r.digest,
    ...(r.unpack ? { unpack: true } : {}),
    ...(r.version !== undefined ? { version: r.version } : {}),
    ...(r.visibility !== undefined ? { visibility: r.visibility } : r.otherVisibility !== undefined ? { visibility: r.otherVisibility } : {}),
  }));
  return `${JSON.stringify(plain, null, 2)}\n`;
}

/** Writes atomically (temp file + rename), so a reader never sees half a manifest. */
async function writeManifest(file: string, records: readonly ManifestRecord[]): Promise<void> {
  await requireOutput(file);
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  await writeFile(tmp, formatManifest(records));
  await rename(tmp, file);
}

/** Streams a file through a hash; returns its size and lowercase hex digest. */
export async function hashFile(path: string, algorithm: string): Promise<{ size: number; digest: string }> {
  const hash = createAssetHash(algorithm);
  let size = 0;
  await pipeline(createReadStream(path), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) {
      size += chunk.length;
      hash.update(chunk);
    }
  });
  return { size, digest: hash.digest('hex') };
}

interface AddOptions {
  readonly visibility?: Visibility;
  readonly unpack?: boolean;
  readonly version?: string;
}

/**
 * `assets add`: hashes each file (sha512, as tooltool's add does) and writes the new records,
 * in the order given, before the manifest's others, as tooltool's add writes its output
 * manifest; creates the manifest if needed. Without a visibility the record gets none, as
 * with tooltool: upload then asks for one, so nothing becomes public for good by default.
 * A file under a name already in the manifest is not added, and said why in `notAdded` (the
 * CLI's exit status 1): identical, or another file, visibility or version; the others given
 * are added all the same, as tooltool's add ("file already in old_manifest", "manifest already
 * contains a different file") writes them.
 */
export async function addToManifest(manifestPath: string, files: readonly string[], options: AddOptions = {}): Promise<{ added: ManifestRecord[]; notAdded: string[] }> {
  let existing: readonly ManifestRecord[] = [];
  try {
    existing = (await readManifest(manifestPath)).records;
  } catch (err) {
    if (!(err instanceof ConfigError && /cannot read manifest: ENOENT/.test(err.message))) throw err;
  }
  await requireOutput(manifestPath); // before hashing what may be large files
  const records = [...existing];
  const added: ManifestRecord[] = [];
  const notAdded: string[] = [];
  for (const path of files) {
    const filename = basename(path);
    const bad = checkFilename(filename);
    if (bad) throw new UsageError(`${path}: file name ${bad}`);
    let stat: { size: number; digest: string };
    try {
      stat = await hashFile(path, 'sha512');
    } catch (err) {
      throw unreadableFile(err, path);
    }
    const record: ManifestRecord = {
      filename,
      size: stat.size,
      algorithm: 'sha512',
      digest: stat.digest,
      unpack: options.unpack === true,
      ...(options.version ? { version: options.version } : {}),
      ...(options.visibility ? { visibility: options.visibility } : {}),
    };
    const same = records.find((r) => r.filename === filename);
    if (same) {
      notAdded.push(whyNotAdded(manifestPath, same, record));
      continue;
    }
    records.push(record);
    added.push(record);
  }
  await writeManifest(manifestPath, [...added, ...existing]);
  return { added, notAdded };
}

/** Why `record` is not added to the manifest at `manifestPath`, which has `same` under its name. */
function whyNotAdded(manifestPath: string, same: ManifestRecord, record: ManifestRecord): string {
  if (same.digest !== record.digest || same.algorithm !== record.algorithm) {
    return `${manifestPath}: already has a different file named "${record.filename}" (digest ${same.digest.slice(0, 16)}…), not added`;
  }
  // Like tooltool, the record must match in visibility and version too: a silent no-op
  // would leave the user believing the asset is now public (or relabelled).
  if (same.visibility !== record.visibility || JSON.stringify(same.version) !== JSON.stringify(record.version)) {
    const shown = (v: unknown): string => (v === undefined ? '(none)' : JSON.stringify(v));
    const show = (r: ManifestRecord): string => `visibility ${r.visibility ?? shown(r.otherVisibility)}, version ${shown(r.version)}`;
    return `${manifestPath}: already has "${record.filename}" with ${show(same)}, not ${show(record)}, not added; edit the manifest to change them`;
  }
  return `${record.filename}: already in ${manifestPath}, not added`;
}
