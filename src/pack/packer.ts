// Project tree → deterministic tar. Same tree, same bytes: paths sorted by byte order
// within each directory, mtime fixed, uid/gid 0, empty owner names; modes, symlinks and
// empty directories kept; long names go into pax headers (tar-header.ts). The tree is read
// only as fast as the consumer takes the tar (the stream's backpressure), so a tree of any
// size packs in bounded memory. Hard links are packed as regular files; sockets, FIFOs and
// devices are skipped (they are not project content).
//
// A project is mostly small files, and each costs a few system calls: made through the
// thread pool, every call also pays a hand-off (futex, eventfd, epoll: about 70 system calls
// per file under strace), which made 100,000 small files take 54 s to pack against GNU
// tar's 1.7 s. The walk and the small files therefore use blocking calls, in slices of at
// most SLICE_MS between turns of the event loop (packing runs in a command: pack, push, or
// run before any machine exists), and the tar reaches its consumer in blocks (tar-blocks.ts),
// not three writes per file. Files over SMALL_FILE are streamed.
import { closeSync, constants, createWriteStream, type Dirent, fstatSync, lstatSync, openSync, read, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { lstat, readdir, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { promisify } from 'node:util';
import { errorMessage, FleetError, toFleetError, UsageError } from '../errors.js';
import { hashingTap } from '../store/hashing.js';
import { PackRuleSet, type PackRules } from './rules.js';
import { BAD_PATTERN, goMatches, goMatchPattern, hasGoMeta } from '../go-match.js';
import { TarBlocks } from './tar-blocks.js';
import { entryHeader } from './tar-header.js';
import { checkSymlinkTarget, PATH_MAX, safeEntryPath } from './unpack.js';

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The bytes as text; non-ASCII and control bytes as \xNN, so a message shows them exactly. */
function escapedBytes(bytes: Buffer): string {
  return [...bytes].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
}

/**
 * A file name or symlink target read as bytes, as text. Names that are not UTF-8 are refused
 * by name: Node would read them with U+FFFD in place of the bytes, and the path it then
 * looks up does not exist. GNU tar packs them byte for byte; names here are strings. (A name
 * holding U+FFFD itself is refused as it will be written, after the rename rules: safeEntryPath.)
 */
function utf8Name(bytes: Buffer, where: string, what: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new FleetError('FC_ERR_BAD_NAME', `${what} is not valid UTF-8: ${where}${escapedBytes(bytes)} (GNU tar packs it, fleetcache cannot yet); rename it`);
  }
}

/** Files up to this size are read whole with blocking calls; larger ones are streamed. */
const SMALL_FILE = 64 * 1024;
/** The longest run of blocking calls between two turns of the event loop. */
const SLICE_MS = 10;
/**
 * A name read from a directory, as text, and why it cannot be packed (utf8Name): thrown only
 * if the path is not excluded, since an excluded file is never packed (GNU tar leaves it out
 * too). `regularFile`: the directory says it is one (its d_type), so the walk need not lstat it.
 */
interface DirName {
  readonly text: string;
  readonly refused?: FleetError;
  readonly regularFile: boolean;
}

/** The `entries` of `dir`, sorted by byte order, as text (a name refused: with U+FFFD for its bad bytes). */
function sortedText(entries: Dirent<Buffer>[], dir: string): DirName[] {
  return entries
    .sort((a, b) => Buffer.compare(a.name, b.name))
    .map((entry) => {
      const regularFile = entry.isFile();
      try {
        return { text: utf8Name(entry.name, `${dir}/`, 'file name'), regularFile };
      } catch (err) {
        return { text: entry.name.toString('utf8'), refused: err as FleetError, regularFile };
      }
    });
}

/** The names in `dir`, sorted by byte order. */
async function sortedNames(dir: string): Promise<DirName[]> {
  return sortedText(await readdir(dir, { encoding: 'buffer', withFileTypes: true }), dir);
}

/**
 * A path to pack from: `rel` relative to the root, and `name`, the name tar gives it for its
 * exclude patterns and rename rules: a literal include entry as written (`./src` stays so, as tar's member
 * names keep it), a glob's matches cleaned as Go's filepath.Glob returns them.
 */
interface Start {
  readonly rel: string;
  readonly name: string;
  readonly refused?: FleetError;
}

/** Expands the include globs (one path component at a time) into sorted root-relative paths. */
async function expandIncludes(root: string, rules: PackRuleSet): Promise<Start[]> {
  if (!rules.include) return (await sortedNames(root)).map(({ text, refused }) => ({ rel: text, name: text, ...(refused ? { refused } : {}) }));
  const out = new Map<string, string>();
  /** Paths a glob matched whose last name cannot be packed (DirName), with why. */
  const refusedAt = new Map<string, FleetError>();
  for (const entry of rules.include) {
    // `.` components dropped: `sub/./c` is the path `sub/c`, packed once (without rename rules, names are unique)
    const parts = entry.replace(/\/+$/, '').split('/').filter((p) => p !== '' && p !== '.');
    if (parts.length === 0 && entry.startsWith('.')) {
      // `.` (`./`, `./.`): the whole tree, as `tar -c .` packs it, its names as tar gives them
      // (`./a`) for the rules; the root itself is no entry, as without an include
      const prefix = entry.replace(/(.)\/+$/, '$1');
      for (const { text, refused } of await sortedNames(root)) {
        if (!out.has(text)) out.set(text, `${prefix}/${text}`);
        if (refused) refusedAt.set(text, refused);
      }
      continue;
    }
    // Go's filepath.Glob refuses a malformed pattern before it reads any directory
    const patterns = parts.map((part) => {
      try {
        return goMatchPattern(part);
      } catch {
        throw new UsageError(`include entry "${entry}": ${BAD_PATTERN} (a Go filepath.Glob pattern)`);
      }
    });
    let paths = [''];
    for (const pattern of patterns) {
      const next: string[] = [];
      for (const base of paths) {
        const below = refusedAt.get(base); // a path that is gone into cannot be excluded
        if (below) throw below;
        if (typeof pattern === 'string') {
          next.push(base ? `${base}/${pattern}` : pattern);
          continue;
        }
        let names: DirName[] = [];
        try {
          names = await sortedNames(join(root, base));
        } catch (err) {
          if (err instanceof FleetError) throw err;
          // not a directory: nothing under it matches
        }
        // like Go's filepath.Glob (spread), `*` matches dotfiles too
        for (const { text, refused } of names) {
          if (!goMatches(pattern, text)) continue;
          const path = base ? `${base}/${text}` : text;
          next.push(path);
          if (refused) refusedAt.set(path, refused);
        }
      }
      paths = next;
    }
    const found: string[] = [];
    for (const p of paths) {
      if (p === '') continue;
      if (refusedAt.has(p)) {
        found.push(p);
        continue;
      }
      try {
        await lstat(join(root, p));
        found.push(p);
      } catch {
        // a literal path that does not exist is reported below
      }
    }
    if (found.length === 0) throw new UsageError(`include entry "${entry}" matches nothing under ${root}`);
    const literal = !hasGoMeta(entry);
    for (const p of found) if (!out.has(p)) out.set(p, literal ? entry.replace(/(.)\/+$/, '$1') : p);
  }
  // a path inside another included one is packed with it already (twice, the unpack fails)
  const nested = (p: string): boolean => p.split('/').some((_, i, parts) => i > 0 && out.has(parts.slice(0, i).join('/')));
  return [...out.keys()]
    .filter((p) => !nested(p))
    .sort(byteOrder)
    .map((rel) => ({ rel, name: out.get(rel)!, ...(refusedAt.has(rel) ? { refused: refusedAt.get(rel)! } : {}) }));
}

interface Item {
  readonly rel: string;
  /** The name GNU tar gives it (Start.name): what the exclude patterns and the rename rules see. */
  readonly tarName: string;
  readonly abs: string;
  /** Its lstat; none for a regular file its directory listed as one: that is fstat'ed once open (openListedFile). */
  readonly st?: Stats;
}

/** Every packable path in order: depth first, byte-sorted, excluded subtrees skipped. */
async function* walk(root: string, rules: PackRuleSet): AsyncGenerator<Item> {
  for (const start of await expandIncludes(root, rules)) yield* walkFrom(root, start.rel, start.name, rules, start.refused);
}

function* walkFrom(root: string, rel: string, tarName: string, rules: PackRuleSet, refused?: FleetError, regularFile = false): Generator<Item> {
  if (rules.isExcluded(rel, tarName)) return;
  if (refused) throw refused;
  const abs = join(root, rel);
  if (regularFile) {
    // no lstat: the fstat of the open file gives its mode and size (a system call and a Stats saved per file)
    yield { rel, tarName, abs };
    return;
  }
  const st = lstatSync(abs);
  yield { rel, tarName, abs, st };
  if (!st.isDirectory()) return;
  for (const name of sortedText(readdirSync(abs, { encoding: 'buffer', withFileTypes: true }), abs)) {
    yield* walkFrom(root, `${rel}/${name.text}`, `${tarName}/${name.text}`, rules, name.refused, name.regularFile);
  }
}

/**
 * The entry name of `item` after the rename rules, refused here when every machine would
 * refuse it on unpack (safeEntryPath: "..", absolute, NUL, U+FFFD, empty, a component too
 * long) or when it repeats one (`seen`: only rename rules can make two names one). The rules
 * see the name as GNU tar does (`./src/a` under the include `./src`); the name written has
 * no leading `./`, which unpacking drops anyway.
 */
function entryName(item: Item, rules: PackRuleSet, seen: Set<string> | undefined): string {
  const renamed = rules.rename(item.tarName, 'path');
  const name = renamed.replace(/^(\.\/+)+/, '');
  const packedAs = (): string => `${item.rel} would be packed as "${name}"${renamedBy(rules, renamed !== item.tarName)}`;
  const safe = unpackable(packedAs, () => safeEntryPath(name));
  if (seen === undefined) return name;
  if (seen.has(safe)) throw new FleetError('FC_ERR_BAD_NAME', `${packedAs()}, a name already in the tar`);
  seen.add(safe);
  return name;
}

function renamedBy(rules: PackRuleSet, renamed: boolean): string {
  return renamed ? ` (renamed by ${rules.renameSource.join(' ')})` : '';
}

/** What `check` returns; its refusal (what every machine's unpack would refuse) as one of `packedAs` (built only then). */
function unpackable<T>(packedAs: () => string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw new FleetError('FC_ERR_BAD_NAME', `${packedAs()}, which unpacking refuses: ${errorMessage(err).replace(/^.*refused: /, '')}`);
  }
}

/** The target of the symlink `item` after the rename rules, refused here when every machine would refuse it on unpack. */
function symlinkTarget(item: Item, rules: PackRuleSet, name: string): string {
  const read = utf8Name(readlinkSync(item.abs, { encoding: 'buffer' }), `${item.abs} -> `, 'symlink target');
  const target = rules.rename(read, 'symlink-target');
  unpackable(() => `${item.rel} -> ${read} would be packed with the target "${target}"${renamedBy(rules, target !== read)}`, () => checkSymlinkTarget(name, target));
  return target;
}

/** A regular file of the walk that is not what the walk listed any more: `why`. */
function changedWhilePacked(abs: string, why: string, cause?: unknown): FleetError {
  return new FleetError('FC_ERR_SIZE_MISMATCH', `${abs} changed while it was packed (${why}); pack again`, cause === undefined ? {} : { cause });
}

const NOT_A_FILE = 'listed as a regular file, it is not one any more';

/**
 * How a listed file is opened: a symlink put in its place fails the open (ELOOP) instead of
 * being followed, a FIFO does not block it; the open file is then checked with fstat.
 */
const OPEN_LISTED = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** A regular file of the walk, open, and its stat. */
interface OpenFile {
  readonly fd: number;
  /** The fstat of the open file: its header's mode and size are those of the body read. */
  readonly st: Stats;
}

/** Opens a regular file of the walk, which must still be a regular file; the caller closes it (exported for its tests). */
export function openListedFile(abs: string): OpenFile {
  let fd: number;
  try {
    fd = openSync(abs, OPEN_LISTED);
  } catch (err) {
    throw (err as NodeJS.ErrnoException).code === 'ELOOP' ? changedWhilePacked(abs, NOT_A_FILE, err) : err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw changedWhilePacked(abs, NOT_A_FILE);
    return { fd, st };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** What a file that grew or shrank while it was read had when it was opened. */
function listedSize(size: number): string {
  return `it had ${size} bytes when listed`;
}

/** The whole of a small open file, which must still have the size it had when opened (exported for its tests). */
export function readSmallFile({ fd, st }: OpenFile, abs: string): Buffer {
  const body = Buffer.allocUnsafe(st.size + 1); // one byte more: a file that grew fills it
  let got = 0;
  for (let n = -1; n !== 0 && got < body.length; got += n) n = readSync(fd, body, got, body.length - got, null);
  if (got !== st.size) throw changedWhilePacked(abs, listedSize(st.size));
  return body.subarray(0, st.size);
}

/** A large file's body is read in chunks of this size. */
const LARGE_FILE_CHUNK = 256 * 1024;

const readAsync = promisify(read);

/**
 * The body of a large open file in chunks read into one buffer: each is to be copied before
 * the next is asked for. It is read to one byte past its size when opened, so a file that
 * grew is caught (as one that shrank is).
 */
async function* largeFileBody({ fd, st }: OpenFile, abs: string): AsyncGenerator<Buffer> {
  const chunk = Buffer.allocUnsafe(LARGE_FILE_CHUNK);
  let got = 0;
  while (got <= st.size) {
    const { bytesRead } = await readAsync(fd, chunk, 0, Math.min(chunk.length, st.size + 1 - got), null);
    if (bytesRead === 0) break;
    got += bytesRead;
    if (got <= st.size) yield chunk.subarray(0, bytesRead);
  }
  if (got !== st.size) throw changedWhilePacked(abs, listedSize(st.size));
}

/** Writes the entry of the regular file `abs` into `out`, yielding the blocks a large file fills. */
async function* addFile(out: TarBlocks, abs: string, name: string): AsyncGenerator<Buffer> {
  const file = openListedFile(abs);
  try {
    const { st } = file;
    out.write(entryHeader({ name, mode: st.mode, type: 'file', size: st.size }));
    if (st.size <= SMALL_FILE) {
      out.write(readSmallFile(file, abs));
    } else {
      for await (const chunk of largeFileBody(file, abs)) {
        out.write(chunk);
        yield* out.takeFull();
      }
    }
    out.pad(st.size);
  } finally {
    closeSync(file.fd);
  }
}

/** Writes the entry of `item` into `out` (yielding the blocks a large file fills); false for a type that is not packed. */
async function* addEntry(out: TarBlocks, item: Item, rules: PackRuleSet, seen: Set<string> | undefined): AsyncGenerator<Buffer, boolean> {
  const { st } = item;
  const name = entryName(item, rules, seen);
  if (st === undefined || st.isFile()) {
    yield* addFile(out, item.abs, name);
  } else if (st.isDirectory()) {
    out.write(entryHeader({ name: `${name}/`, mode: st.mode, type: 'directory', size: 0 }));
  } else if (st.isSymbolicLink()) {
    out.write(entryHeader({ name, mode: st.mode, type: 'symlink', size: 0, linkname: symlinkTarget(item, rules, name) }));
  } else {
    return false;
  }
  return true;
}

interface PackSummary {
  readonly entries: number;
  readonly skipped: readonly string[];
}

/** The tar of `root` in blocks, walked and read in slices of at most SLICE_MS between turns of the event loop. */
async function* packedBlocks(root: string, rules: PackRuleSet, signal: AbortSignal | undefined): AsyncGenerator<Buffer, PackSummary> {
  const out = new TarBlocks();
  let entries = 0;
  const skipped: string[] = [];
  // only rename rules can give two paths one name: without them, no set of every name
  const seen = rules.renameSource.length > 0 ? new Set<string>() : undefined;
  let sliceStart = performance.now();
  for await (const item of walk(root, rules)) {
    signal?.throwIfAborted();
    if (yield* addEntry(out, item, rules, seen)) entries++;
    else skipped.push(item.rel);
    yield* out.takeFull();
    if (performance.now() - sliceStart < SLICE_MS) continue;
    await nextTurn();
    sliceStart = performance.now();
  }
  yield* out.end();
  return { entries, skipped };
}

/** What went wrong while packing `root`, as a FleetError with a documented code. */
function packError(err: unknown, root: string): FleetError {
  if (err instanceof FleetError) return err;
  const e = err as NodeJS.ErrnoException;
  const where = e.path ?? root;
  if (e.code === 'ENOENT') return new FleetError('FC_ERR_NOT_FOUND', `packing ${root}: ${where} does not exist (or was removed while it was packed)`, { cause: err });
  if (e.code === 'ENOTDIR') return new UsageError(`packing ${root}: ${where} is not a directory`);
  if (e.code === 'EACCES' || e.code === 'EPERM') return new UsageError(`packing ${root}: ${where}: permission denied`);
  if (e.code === 'ENAMETOOLONG') {
    return new FleetError('FC_ERR_BAD_NAME', `packing ${root}: ${where} is ${Buffer.byteLength(where)} bytes long, more than the ${PATH_MAX - 1} a path may have (PATH_MAX); GNU tar packs it, fleetcache cannot: shorten it, or exclude it`, { cause: err });
  }
  const wrapped = toFleetError(err); // a full disk has its own code
  return new FleetError(wrapped.code, `packing ${root}: ${e.message}`, { cause: err });
}

/**
 * Packs `root` into a tar stream, read from the tree as the stream is read (its backpressure
 * bounds the memory). The summary promise settles when the tar is complete (and rejects on
 * any error, which also destroys the stream). An abort of `signal` destroys the stream at once
 * (a slow consumer is not waited for) and rejects with its reason.
 */
export function packTree(root: string, rules: PackRules = {}, signal?: AbortSignal): { stream: Readable; done: Promise<PackSummary> } {
  const set = new PackRuleSet(rules);
  let settle!: { resolve: (summary: PackSummary) => void; reject: (err: unknown) => void };
  const done = new Promise<PackSummary>((resolve, reject) => (settle = { resolve, reject }));
  // the stream carries the error to its consumer; avoid an unhandled rejection here
  done.catch(() => undefined);
  async function* blocks(): AsyncGenerator<Buffer> {
    try {
      settle.resolve(yield* packedBlocks(root, set, signal));
    } catch (err) {
      // once aborted, whatever failed (the read the abort cut short) failed for the abort
      const wrapped = signal?.aborted && signal.reason instanceof Error ? signal.reason : packError(err, root);
      settle.reject(wrapped);
      throw wrapped; // destroys the stream with it
    } finally {
      // the consumer destroyed the stream before the tar was complete (no-op once settled)
      settle.reject(new FleetError('FC_ERR_INTERNAL', `packing ${root}: the tar stream was closed before the pack was complete`));
    }
  }
  const stream = Readable.from(blocks(), { objectMode: false });
  const stop = (): void => void stream.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal?.addEventListener('abort', stop, { once: true });
  stream.once('close', () => signal?.removeEventListener('abort', stop));
  return { stream, done };
}

interface PackedFile extends PackSummary {
  readonly size: number;
  /** Lowercase hex sha256 of the tar. */
  readonly sha256: string;
}

/**
 * `rules`, plus the paths of `own` that lie inside `root`: what packing writes (its output,
 * a work directory under a TMPDIR inside the project) is never packed, or the tar would
 * read itself as it grows; nor is a secret of the caller's there (a token file, SSH keys).
 */
async function excludingOwn(root: string, rules: PackRules, own: readonly string[]): Promise<PackRules> {
  const real = async (p: string): Promise<string> => join(await realpath(dirname(resolve(p))).catch(() => dirname(resolve(p))), basename(resolve(p)));
  const top = await realpath(root).catch(() => resolve(root));
  const inside: string[] = [];
  for (const p of own) {
    const rel = relative(top, await real(p));
    if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)) inside.push(rel.split(sep).join('/'));
  }
  return inside.length === 0 ? rules : { ...rules, excludePaths: [...(rules.excludePaths ?? []), ...inside] };
}

/** A failure to write the tar to `file`: no room has its own code. */
function outputError(err: unknown, file: string): FleetError {
  const { code } = toFleetError(err);
  return new FleetError(code === 'FC_ERR_INSUFFICIENT_STORAGE' ? code : 'FC_ERR_INTERNAL', `writing ${file}: ${errorMessage(err)}`, { cause: err });
}

/** Packs `root` into `file`, hashing on the way; neither `file` nor the paths of `alsoOwn` are packed. */
export async function packToFile(root: string, file: string, rules: PackRules = {}, signal?: AbortSignal, alsoOwn: readonly string[] = []): Promise<PackedFile> {
  const { stream, done } = packTree(root, await excludingOwn(root, rules, [file, ...alsoOwn]), signal);
  const { tap, result } = hashingTap();
  try {
    await pipeline(stream, tap, createWriteStream(file));
  } catch (err) {
    // The output's own failure (a full disk, a closed pipe) comes first: the pack then fails
    // too, only for having its stream destroyed.
    if ((err as NodeJS.ErrnoException).syscall === 'write') throw outputError(err, file);
    // a failure while packing reaches the pipeline as the raw cause; `done` has it explained
    const reason = await Promise.race([done.then(() => err, (e: unknown) => e), new Promise<unknown>((resolve) => setTimeout(() => resolve(err), 1000).unref())]);
    throw reason instanceof FleetError || (signal?.aborted && reason === signal.reason) ? reason : err;
  }
  const summary = await done;
  const { digest, size } = result();
  return { ...summary, size, sha256: digest.slice('sha256:'.length) };
}
