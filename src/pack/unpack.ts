// tar → directory, refusing anything that would land outside it: absolute names, `..`
// components, and any entry created or written through a symlink (every parent is checked
// with lstat, component by component, and an entry's own path may not be a symlink either).
// The target must be missing or empty (as spread requires), so every entry is created
// exclusively and an archive cannot overwrite what is already there. Regular files,
// directories, symlinks, and hard links to a regular file unpacked before them; other entry
// types are refused. The archive's root directory (`./`, as `tar -C dir -c .` writes it) is
// skipped, and the stream must end with an end-of-archive marker: an empty or truncated
// stream is not taken for an empty project. The marker (a zero block) is its end, as for GNU
// tar: anything but zeros after it is refused, not unpacked nor left out.
import { closeSync, constants, fchmodSync, fstatSync, futimesSync, lstatSync, mkdirSync, openSync, type Stats, writeSync } from 'node:fs';
import { copyFile, link, lutimes, mkdir, open, readdir, realpath, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { errorMessage, FleetError } from '../errors.js';
import { pathError, requireInput } from '../path-checks.js';
import { CreatedFileModes } from './created-modes.js';
import { lstatOrMissing, walkDirs } from './safe-path.js';
import { writeFully } from '../write-fully.js';

function refusal(name: string, why: string): FleetError {
  return new FleetError('FC_ERR_BAD_NAME', `tar entry "${name}" refused: ${why}`);
}

function refuse(name: string, why: string): never {
  throw refusal(name, why);
}

/** The longest file name (one path component) Linux filesystems take, in bytes: a longer one fails every unpack (ENAMETOOLONG). */
const NAME_MAX = 255;
/** The size of the longest path Linux system calls take, in bytes, its closing NUL included: a longer path fails (ENAMETOOLONG). */
export const PATH_MAX = 4096;

/**
 * tar-stream decodes names as UTF-8, an invalid byte as U+FFFD: unpacked so, a file would get
 * another name than the archive's (spread's tar keeps the bytes). A name holding U+FFFD is
 * therefore refused, on unpack and, as it would be written, on pack.
 */
const NOT_UTF8 = 'holds U+FFFD (the replacement character), which unpacking cannot tell from an invalid byte: not valid UTF-8';

/**
 * Why an archive entry's name (decoded by tar-stream or yauzl) cannot be the name of the
 * file unpacked: not valid UTF-8, or a component longer than a file name may be. Undefined
 * when it can. Shared by the project and the asset unpackers.
 */
export function unnamableReason(name: string): string | undefined {
  if (name.includes('\uFFFD')) return NOT_UTF8;
  const long = name.split('/').find((p) => Buffer.byteLength(p) > NAME_MAX);
  if (long !== undefined) return `its component "${long}" is ${Buffer.byteLength(long)} bytes long, more than the ${NAME_MAX} a file name may have`;
  return undefined;
}

/**
 * The entry's path as safe components relative to the target directory. A backslash or a
 * colon is part of a name, as for GNU tar on Linux (`a\\b`, `C:` are file names there, the
 * only system machines unpack on).
 */
export function safeEntryPath(name: string): string {
  if (name.includes('\0')) refuse(name, 'contains NUL');
  if (name.startsWith('/')) refuse(name, 'absolute');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) refuse(name, 'empty name');
  if (parts.includes('..')) refuse(name, 'escapes the target directory');
  const unnamable = unnamableReason(name);
  if (unnamable !== undefined) refuse(name, unnamable);
  const path = parts.join('/');
  if (Buffer.byteLength(path) >= PATH_MAX) refuse(name, `it is ${Buffer.byteLength(path)} bytes long, more than the ${PATH_MAX - 1} a path may have (PATH_MAX)`);
  return path;
}

/**
 * Why a symlink's target cannot be unpacked as the archive has it (undefined when it can): not
 * valid UTF-8 (it would point elsewhere), or longer than symlink(2) takes. Shared by the
 * project and the asset unpackers.
 */
export function symlinkTargetReason(target: string): string | undefined {
  if (target.includes('\uFFFD')) return `its symlink target ${NOT_UTF8}`;
  const length = Buffer.byteLength(target);
  if (length >= PATH_MAX) return `its symlink target is ${length} bytes long, more than the ${PATH_MAX - 1} a path may have (PATH_MAX)`;
  return undefined;
}

/** A symlink's target, refused where symlinkTargetReason says why. */
export function checkSymlinkTarget(name: string, target: string): void {
  const reason = symlinkTargetReason(target);
  if (reason !== undefined) refuse(name, reason);
}

/**
 * Why `abs`, the path an entry unpacks to, cannot be made (the target directory's own path
 * counts): longer than Linux takes. Undefined when it can. Shared by the project and the asset unpackers.
 */
export function pathLengthReason(abs: string): string | undefined {
  const length = Buffer.byteLength(abs);
  if (length >= PATH_MAX) return `unpacked there, its path would be ${length} bytes long, more than the ${PATH_MAX - 1} a path may have (PATH_MAX): unpack into a directory with a shorter path`;
  return undefined;
}

function checkPathLength(abs: string, header: tar.Header): void {
  const reason = pathLengthReason(abs);
  if (reason !== undefined) refuse(header.name, reason);
}

/**
 * The archive's root directory itself (`./`, `.`): `tar xz` into the target keeps the
 * target as it is, and so do we (its mode would be that of a repack script's temp dir).
 */
function isRootDir(header: tar.Header): boolean {
  const { name } = header;
  return header.type === 'directory' && name !== '' && !name.startsWith('/') && name.split('/').every((p) => p === '' || p === '.');
}

const SUPPORTED = new Set<tar.Header['type']>(['file', 'contiguous-file', 'directory', 'symlink', 'link']);

/**
 * Where an entry goes below the target (undefined: the root directory, skipped), refused
 * when unsafe or of a type we do not unpack. A hard link's target must be safe too.
 */
function entryPath(header: tar.Header): string | undefined {
  if (isRootDir(header)) return undefined;
  const rel = safeEntryPath(header.name);
  if (!SUPPORTED.has(header.type)) refuse(header.name, `entry type ${header.type ?? 'unknown'} is not supported`);
  if (header.type === 'symlink') checkSymlinkTarget(header.name, header.linkname ?? '');
  return rel;
}

/** A hard link's target as safe components; it must name a regular file of the archive. */
function linkTarget(header: tar.Header): string {
  try {
    return safeEntryPath(header.linkname);
  } catch {
    return refuse(header.name, `hard link target "${header.linkname}" is not a path inside the target directory`);
  }
}

const BLOCK = 512;

const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** A block tar-stream skips where it reads a header: zero bytes, but for its checksum field (bytes 148 to 155). */
function isZeroBlock(block: Buffer): boolean {
  return block[0] === 0 && ZERO_BLOCK.subarray(156).equals(block.subarray(156)) && ZERO_BLOCK.subarray(0, 148).equals(block.subarray(0, 148));
}

/**
 * Counts a tar stream's bytes and where its final run of zero bytes starts, to tell a
 * complete archive (zero blocks after the last entry) from an empty or truncated one.
 * Only each chunk's tail is scanned, back to its last non-zero byte.
 *
 * It also finds a zero block where a header is due after an entry: the archive ends there
 * (GNU tar stops), where tar-stream skips it and reads on. (Only there: a long name's data
 * may hold one, its last block when the name with its NUL takes one byte more than whole
 * blocks.) It runs ahead of the parser, which tells it where each entry's data ends
 * (`entryData`): the blocks before are not looked at, and the zero blocks noted stay few.
 */
class EndWatch extends Transform {
  total = 0;
  #zerosFrom = 0;
  /** Runs of zero blocks seen at or after #dataEnd, [start, end) in bytes. */
  #zeroRuns: Array<[number, number]> = [];
  /** Where the last entry the parser read ends: the blocks before are its data. */
  #dataEnd = 0;
  /** The bytes of a block a chunk ended inside of. */
  #carry: Buffer | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let i = chunk.length - 1;
    while (i >= 0 && chunk[i] === 0) i--;
    if (i >= 0) this.#zerosFrom = this.total + i + 1;
    this.#scanBlocks(chunk);
    this.total += chunk.length;
    done(null, chunk);
  }

  #scanBlocks(chunk: Buffer): void {
    let i = 0;
    if (this.#carry) {
      i = Math.min(BLOCK - this.#carry.length, chunk.length);
      this.#carry = Buffer.concat([this.#carry, chunk.subarray(0, i)]);
      if (this.#carry.length < BLOCK) return;
      this.#noteBlock(this.total + i - BLOCK, this.#carry);
      this.#carry = undefined;
    }
    for (i = Math.max(i, this.#dataEnd - this.total); i + BLOCK <= chunk.length; i += BLOCK) this.#noteBlock(this.total + i, chunk.subarray(i, i + BLOCK));
    if (i < chunk.length) this.#carry = Buffer.from(chunk.subarray(i));
  }

  #noteBlock(offset: number, block: Buffer): void {
    if (offset < this.#dataEnd || !isZeroBlock(block)) return;
    const last = this.#zeroRuns.at(-1);
    if (last?.[1] === offset) last[1] += BLOCK;
    else this.#zeroRuns.push([offset, offset + BLOCK]);
  }

  /** Whether the block at `offset` (one the parser read past) is a zero block. */
  zeroBlockAt(offset: number): boolean {
    return this.#zeroRuns.some(([start, end]) => start <= offset && offset < end);
  }

  /** The parser read an entry whose data ends at `end` (a multiple of BLOCK). */
  entryData(end: number): void {
    this.#dataEnd = end;
    this.#zeroRuns = this.#zeroRuns.filter(([, e]) => e > end).map(([start, e]) => [Math.max(start, end), e]);
  }

  /** At least one zero block after `entriesEnd` (GNU tar accepts a lone one, with a warning). */
  hasEndMarker(entriesEnd: number): boolean {
    const from = Math.max(entriesEnd, Math.ceil(this.#zerosFrom / BLOCK) * BLOCK);
    return this.total - from >= BLOCK;
  }
}

/** The refusal of an archive that goes on after its end: GNU tar would unpack less than tar-stream reads. */
function dataAfterEnd(zeroBlock: number): FleetError {
  return new FleetError('FC_ERR_ARCHIVE', `not a single tar: data follows its end (the zero block at byte ${zeroBlock}), which GNU tar would leave out (a second archive appended?)`);
}

/** tar-stream's entry (a readable of its data, with its header and offset); not exported by name. */
type TarEntry = tar.Extract extends AsyncIterable<infer E> ? E : never;

/** Whether tar-stream failed to read the bytes, not the input to give them (a read error, a digest mismatch). */
function isParseError(err: unknown): boolean {
  return !(err instanceof FleetError) && (err as NodeJS.ErrnoException).code === undefined;
}

/** A reason the stream is not a readable tar as FC_ERR_ARCHIVE; the input's own errors unchanged. */
function archiveError(err: unknown): unknown {
  if (!isParseError(err)) return err;
  return new FleetError('FC_ERR_ARCHIVE', `not a readable tar: ${errorMessage(err)}`, { cause: err });
}

/**
 * Runs `each` on every entry of a tar stream, in order; once the last is read, the stream
 * must have ended with an end-of-archive marker.
 */
async function forEachEntry(input: Readable, each: (entry: TarEntry) => Promise<void>): Promise<void> {
  const watch = new EndWatch();
  const extract = tar.extract();
  let broken: unknown;
  extract.on('error', (err: unknown) => {
    broken = err;
  });
  const feeding = pipeline(input, watch, extract);
  feeding.catch(() => undefined); // reported through the iteration below
  let entriesEnd = 0;
  try {
    for await (const entry of extract) {
      const { header } = entry;
      // entry.offset: where its own header starts (after any pax or long-name headers)
      if (watch.zeroBlockAt(entriesEnd)) throw dataAfterEnd(entriesEnd);
      const data = header.type === 'directory' ? 0 : Math.ceil(header.size / BLOCK) * BLOCK;
      entriesEnd = entry.offset + BLOCK + data;
      watch.entryData(entriesEnd);
      await each(entry);
    }
    await feeding;
  } catch (err) {
    // what follows the end of the archive is no tar: said so, rather than why it is none
    if (broken !== undefined && isParseError(broken) && watch.zeroBlockAt(entriesEnd)) throw dataAfterEnd(entriesEnd);
    // a broken archive also fails the entry being read ("stream was destroyed"): say why
    throw archiveError(broken ?? err);
  }
  if (watch.total === 0) throw new FleetError('FC_ERR_ARCHIVE', 'not a tar: the stream is empty (0 bytes)');
  if (!watch.hasEndMarker(entriesEnd)) throw new FleetError('FC_ERR_ARCHIVE', 'not a complete tar: no end-of-archive marker after the last entry (truncated?)');
}

interface TarCheck {
  readonly entries: number;
}

/**
 * A dry run of unpackTar on the stream, writing nothing: every entry's name and type must
 * be acceptable, each hard link must join a regular file before it, and the archive must be
 * complete. Used on a repack script's output before anything is uploaded.
 */
export async function checkTar(input: Readable): Promise<TarCheck> {
  // what each path of the archive is so far: as unpackTar would find it on disk
  const paths = new Map<string, tar.Header['type']>();
  let entries = 0;
  await forEachEntry(input, async (entry) => {
    const { header } = entry;
    const rel = entryPath(header);
    entry.resume();
    if (rel === undefined) return;
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const type = paths.get(parent);
      if (type === undefined) paths.set(parent, 'directory');
      else if (type !== 'directory') refuse(header.name, `a ${type === 'symlink' ? 'symlink' : 'file'} of the archive ("${parent}") is on its way`);
    }
    const before = paths.get(rel);
    if (before !== undefined && !(before === 'directory' && header.type === 'directory')) {
      refuse(header.name, 'the archive has this path twice (spread\'s tar would keep the last; remove the earlier one, e.g. with tar --delete)');
    }
    if (header.type === 'link' && !isFile(paths.get(linkTarget(header)))) refuse(header.name, `hard link target "${header.linkname}" is not a regular file before it in the archive`);
    paths.set(rel, header.type);
    entries++;
  });
  return { entries };
}

function isFile(type: tar.Header['type'] | undefined): boolean {
  return type === 'file' || type === 'contiguous-file' || type === 'link';
}

async function ensureEmptyDir(dir: string): Promise<void> {
  const what = 'target directory';
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    await requireInput(dir, 'directory', what, { missingOk: true }); // a file in its place: not EEXIST
    throw pathError(err, dir, what);
  }
  const existing = await readdir(dir).catch((err: unknown) => { throw pathError(err, dir, what); });
  if (existing.length > 0) throw new FleetError('FC_ERR_BAD_NAME', `${dir} is not empty; refusing to unpack into it`);
}

interface UnpackSummary {
  readonly entries: number;
}

/**
 * The mode an entry gets: permission bits and sticky, never setuid/setgid. spread's
 * `tar xz` as root keeps them only together with the archive's owner (GNU tar drops them
 * when it cannot restore the owner); we never restore owners, so a kept bit would make an
 * archive-supplied file setuid root on a machine whose agent runs as root. Asset
 * unpacking refuses such entries outright, as tooltool does.
 */
function entryMode(mode: number | undefined): number {
  return (mode ?? 0o644) & 0o1777;
}

/** A directory this unpack made, identified by inode so its deferred chmod hits nothing else. */
interface MadeDir {
  readonly path: string;
  readonly mode: number;
  /** False when mkdir already gave it the archive's mode (the umask left it intact): its fchmod is skipped. */
  readonly needsChmod: boolean;
  readonly mtime: Date;
  readonly dev: number;
  readonly ino: number;
}

/**
 * The directory entry at `abs`, made (or, for a repeated entry, found) and recorded for its
 * deferred mode and time. Like tar --no-overwrite-dir: an existing directory is kept,
 * anything else at that path (a symlink above all: its chmod would act on the link's
 * target) is refused. Blocking calls, as for small files: two system calls, where three
 * thread-pool round trips (lstat, mkdir, lstat) cost more than the calls themselves.
 */
function makeDir(abs: string, header: tar.Header, mode: number, mtime: Date): MadeDir {
  let st: Stats;
  try {
    // created with its final mode where it leaves us room to fill it (owner rwx): where the
    // umask keeps that mode too, the lstat below shows it and finishDir saves a fchmod
    mkdirSync(abs, (mode & 0o700) === 0o700 ? mode : 0o777);
    st = lstatSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    st = lstatSync(abs);
    if (st.isSymbolicLink()) refuse(header.name, 'a symlink of the archive is in the way of this directory');
  }
  if (!st.isDirectory()) refuse(header.name, 'a non-directory of the archive is in the way of this directory');
  return { path: abs, mode, needsChmod: (st.mode & 0o7777) !== mode, mtime, dev: st.dev, ino: st.ino };
}

/**
 * chmod (and time) of exactly the directory recorded: opened without following a symlink,
 * inode compared. Blocking calls: this runs after the last entry, with nothing to overlap.
 */
function finishDir(dir: MadeDir): void {
  const fd = openSync(dir.path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    const st = fstatSync(fd);
    if (st.dev !== dir.dev || st.ino !== dir.ino) throw new FleetError('FC_ERR_BAD_NAME', `${dir.path} was replaced during the unpack; its mode is not set`);
    if (dir.needsChmod) fchmodSync(fd, dir.mode);
    futimesSync(fd, dir.mtime, dir.mtime);
  } finally {
    closeSync(fd);
  }
}

/**
 * Files up to this size are gathered in memory and written with blocking calls: a project
 * is mostly small files, and four thread-pool round trips and a stream each cost far more
 * than the write itself (pull runs as a command, with nothing else to serve meanwhile).
 */
const SMALL_FILE = 64 * 1024;

async function bodyOf(entry: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of entry) chunks.push(chunk as Buffer);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** O_EXCL never follows a symlink at the path; the mode (where creation did not give it) and the time are set on the open descriptor. */
function writeSmallFile(abs: string, body: Buffer, mode: number, mtime: Date, modes: CreatedFileModes): void {
  const fd = openSync(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode); // writable even if mode is not
  try {
    modes.settle(fd, mode);
    for (let off = 0; off < body.length;) off += writeSync(fd, body, off, body.length - off);
    futimesSync(fd, mtime, mtime);
  } finally {
    closeSync(fd);
  }
}

/**
 * A hard link entry at `abs` to a regular file this unpack wrote (the target was empty, so
 * any regular file inside is one), reached without a symlink on the way like every path.
 * Where the filesystem cannot link (EPERM, EMLINK, EXDEV), the file is copied instead.
 */
async function hardLink(root: string, header: tar.Header, abs: string): Promise<void> {
  const target = linkTarget(header).split('/');
  const refuseLink = (why: string): Error => refusal(header.name, `hard link target: ${why}`);
  await walkDirs(root, target.slice(0, -1), { create: false, refuse: refuseLink });
  const from = join(root, ...target);
  if (!(await lstatOrMissing(from))?.isFile()) refuse(header.name, `hard link target "${header.linkname}" is not a regular file unpacked before it`);
  try {
    await link(from, abs); // linkat without AT_SYMLINK_FOLLOW: never follows a symlink at `from`
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw err;
    await copyFile(from, abs, constants.COPYFILE_EXCL);
  }
}

/**
 * Unpacks a tar stream into `dir` (created when missing; must be empty). Modes and
 * modification times are the archive's, as `tar x` sets them (a build that compares times,
 * make, sees the tree as the archive has it). A failed unpack removes what it made, and
 * nothing else: something another process put in the directory meanwhile stays.
 */
export async function unpackTar(input: Readable, dir: string): Promise<UnpackSummary> {
  await ensureEmptyDir(dir);
  const root = await realpath(dir);
  /** The top-level names this unpack made (the directory was empty): what a failure removes. */
  const made = new Set<string>();
  try {
    return await unpackInto(input, root, made);
  } catch (err) {
    await Promise.all([...made].map((name) => rm(join(root, name), { recursive: true, force: true }).catch(() => undefined)));
    throw err;
  }
}

async function unpackInto(input: Readable, root: string, made: Set<string>): Promise<UnpackSummary> {
  const dirModes = new Map<string, MadeDir>(); // a repeated directory entry: the last mode wins
  // Directories already checked (or made) as real ones: an archive cannot turn one into a
  // symlink later (every entry is created exclusively), so their entries skip the walk.
  const realDirs = new Set<string>([root]);
  const fileModes = new CreatedFileModes();
  let entries = 0;
  await forEachEntry(input, async (entry) => {
    const { header } = entry;
    const rel = entryPath(header);
    if (rel === undefined) {
      entry.resume();
      return;
    }
    const parts = rel.split('/');
    made.add(parts[0]!);
    // Parents: real directories only, created one by one; a symlink on the way is refused.
    const abs = join(root, ...parts);
    checkPathLength(abs, header);
    const parent = dirname(abs);
    if (!realDirs.has(parent)) {
      await walkDirs(root, parts.slice(0, -1), { create: true, refuse: (why) => refusal(header.name, why) });
      realDirs.add(parent);
    }
    const mode = entryMode(header.mode);
    const mtime = header.mtime ?? new Date(0);
    try {
      if (header.type === 'directory') {
        dirModes.set(abs, makeDir(abs, header, mode, mtime));
        realDirs.add(abs);
        entry.resume();
      } else if (header.type === 'symlink') {
        await symlink(header.linkname, abs); // EEXIST for any existing path
        await lutimes(abs, mtime, mtime);
        entry.resume();
      } else if (header.type === 'link') {
        await hardLink(root, header, abs);
        entry.resume();
      } else if ((header.type === 'file' || header.type === 'contiguous-file') && header.size <= SMALL_FILE) {
        writeSmallFile(abs, await bodyOf(entry), mode, mtime, fileModes);
      } else if (header.type === 'file' || header.type === 'contiguous-file') {
        // As writeSmallFile does, streamed: the time after the last write, on the descriptor.
        const fh = await open(abs, 'wx', mode); // writable even if mode is not
        try {
          fileModes.settle(fh.fd, mode);
          // Not through a write stream: one made on the handle keeps it from closing until the
          // stream closes it, which is before the time can be set.
          for await (const chunk of entry as AsyncIterable<Buffer>) {
            await writeFully(fh, chunk);
          }
          await fh.utimes(mtime, mtime);
        } finally {
          await fh.close();
        }
      }
    } catch (err) {
      // the target was empty: what is in the way came from the archive itself
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') refuse(header.name, 'the archive has this path twice, or a path through it');
      throw err;
    }
    entries++;
  });
  // directory modes and times last, so that neither a read-only directory blocks its own
  // contents nor their creation moves its time
  for (const dir of [...dirModes.values()].reverse()) finishDir(dir);
  return { entries };
}
