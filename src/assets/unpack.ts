// Unpacking `unpack: true` assets like tooltool (shared/tooltool.md §3.5): the format is
// decided by content, the directory named like the archive minus its extensions is
// removed first, and every entry, link target and parent directory must stay inside
// the destination: no entry is created or written through a symlink (each component is
// checked with lstat, pack/safe-path.ts), symlink targets must stay inside by name (with
// `..` only at their start) and, once the whole archive is out, by what they resolve to;
// hard links may only join files this archive wrote. tar goes through tar-stream; gzip
// through node:zlib; bzip2, xz (and lzma-alone) and zstd through Debian's `bzip2`, `xz`
// and `zstd` as streaming filters (no npm library for them is both streaming and well
// kept on Node 20); zip through yauzl.
// A tar without any magic (v7) is known by its header checksum, as Python's tarfile
// knows it. Tar members keep their mode and modification time (directories get theirs
// once the archive is out, deepest first, as Python's extractall sets them: a shipped
// .pyc stays newer than its .py, a read-only directory is still filled; where a mode or
// time cannot be set, another user's directory, the unpack goes on, as Python's does);
// setuid/setgid files are refused, as tooltool's tar unpack does, a directory's setgid
// bit dropped; zip entries get no mode bits and no times at all, as with Python's
// extractall. A name that is not valid UTF-8, has a component over 255 bytes or makes a path of
// 4096 bytes or more below the destination, and a symlink target not valid UTF-8 or of 4096 bytes or
// more, are refused by name before anything is made for them, as project tars refuse them (pack/unpack.ts). An earlier unpack is removed first even where it made read-only directories.
import { spawn } from 'node:child_process';
import { close, constants, createReadStream, createWriteStream, fchmod, futimes } from 'node:fs';
import { chmod, link, open, readdir, realpath, rm, stat, symlink, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import * as tarStream from 'tar-stream';
import yauzl from 'yauzl';
import { errorMessage, FleetError } from '../errors.js';
import { isInside, lstatOrMissing, walkDirs } from '../pack/safe-path.js';
import { pathLengthReason, symlinkTargetReason, unnamableReason } from '../pack/unpack.js';

/** 'tar.lzma': a tar in the legacy lzma-alone format (`xz --format=lzma`), which Python's tarfile reads too. */
export type ArchiveKind = 'tar' | 'tar.gz' | 'tar.bz2' | 'tar.xz' | 'tar.lzma' | 'tar.zst' | 'zip';

/** Debian commands that decompress stdin to stdout. */
const FILTERS: Partial<Record<ArchiveKind, readonly string[]>> = {
  'tar.bz2': ['bzip2', '-dc'],
  'tar.xz': ['xz', '-dc'],
  'tar.lzma': ['xz', '--format=lzma', '-dc'],
  'tar.zst': ['zstd', '-dcq'],
};

/**
 * Refused entries (escapes, setuid tar members) are FC_ERR_BAD_NAME; broken or unknown archives FC_ERR_ARCHIVE,
 * and so are a zip's absolute or `..` names, which yauzl refuses as it reads the entry, before our own check.
 */
function unpackError(archive: string, why: string, cause?: unknown, code: 'FC_ERR_ARCHIVE' | 'FC_ERR_BAD_NAME' = 'FC_ERR_ARCHIVE'): FleetError {
  return new FleetError(code, `${archive}: cannot unpack: ${why}`, cause === undefined ? undefined : { cause });
}

function refused(archive: string, why: string): FleetError {
  return unpackError(archive, why, undefined, 'FC_ERR_BAD_NAME');
}

/**
 * A tar header as Python's tarfile accepts the first one (is_tarfile): a whole 512-byte
 * block, not all zeros, whose checksum field (octal, up to a NUL, blanks around it) equals
 * 256 plus the sum of the other bytes (the field counted as 8 spaces), taken unsigned or
 * signed. No magic is needed: v7 tars have none.
 */
function isTarHeader(block: Buffer): boolean {
  if (block.length !== 512 || block.every((b) => b === 0)) return false;
  const field = block.subarray(148, 156);
  const nul = field.indexOf(0);
  const text = field.subarray(0, nul === -1 ? field.length : nul).toString('latin1').trim();
  if (!/^[0-7]*$/.test(text)) return false;
  const stored = text === '' ? 0 : parseInt(text, 8);
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < 512; i++) {
    if (i >= 148 && i < 156) continue;
    unsigned += block[i]!;
    signed += block.readInt8(i);
  }
  return stored === unsigned || stored === signed;
}

/**
 * The 13-byte lzma-alone header as liblzma's format auto-detection (Python's lzma module,
 * `xz -d`) accepts it: lc/lp/pb properties in range with lc + lp <= 4, a dictionary size of
 * 2^n, 2^n + 2^(n-1) or 0xffffffff, and an uncompressed size below 256 GiB or unknown.
 */
function isLzmaAlone(head: Buffer): boolean {
  if (head.length < 13) return false;
  const props = head[0]!;
  if (props > (4 * 5 + 4) * 9 + 8) return false;
  const lp = Math.floor((props % 45) / 9);
  const lc = props % 9;
  if (lc + lp > 4) return false;
  const dict = head.readUInt32LE(1);
  if (dict !== 0xffffffff) {
    let d = (dict - 1) >>> 0;
    for (const shift of [2, 3, 4, 8, 16]) d = (d | (d >>> shift)) >>> 0;
    if (((d + 1) >>> 0) !== dict) return false;
  }
  const size = head.readBigUInt64LE(5);
  return size === 0xffffffffffffffffn || size < 1n << 38n;
}

/** Reads the first bytes and names the archive format (undefined: not an archive we know). */
async function detectArchive(path: string): Promise<ArchiveKind | undefined> {
  const fh = await open(path, 'r');
  const head = Buffer.alloc(512);
  let read: number;
  try {
    read = (await fh.read(head, 0, 512, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return 'tar.gz';
  if (head.subarray(0, 3).toString('latin1') === 'BZh') return 'tar.bz2';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'tar.xz';
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'tar.zst';
  if (head.subarray(0, 2).toString('latin1') === 'PK') return 'zip';
  if (head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  // Without a magic: what Python's tarfile.is_tarfile (tooltool's test) also takes for a tar.
  if (isTarHeader(head.subarray(0, read))) return 'tar';
  if (isLzmaAlone(head.subarray(0, read))) return 'tar.lzma';
  return undefined;
}

/**
 * The directory an earlier unpack left, removed first: `toolchain.tar.gz` → `toolchain` (a tar:
 * tooltool strips any two extensions); `pkg.zip` → `pkg` (a zip: only its `.zip`, as tooltool
 * names it with `replace(".zip", "")`). A zip named otherwise (`browser.xpi`, `app.jar`) names
 * none: the name itself, which is never removed (tooltool stops there, its rmtree refusing a
 * file), so no directory such as `browser/` is taken for an earlier unpack.
 */
export function unpackDirName(filename: string, kind: ArchiveKind): string {
  if (kind === 'zip') return filename.endsWith('.zip') ? filename.slice(0, -'.zip'.length) : filename;
  const strip = (name: string): string => {
    const dot = name.lastIndexOf('.');
    return dot > 0 ? name.slice(0, dot) : name;
  };
  return strip(strip(filename));
}

class Target {
  readonly #root: string;
  readonly #archive: string;
  /** The archive file itself (dev:ino): no entry may replace it while it is being read. */
  readonly #self: string;
  /** Regular files written by this archive: the only targets a hard link may have. */
  readonly #files = new Set<string>();
  /** Symlinks created by this archive, checked again once every entry is out. */
  readonly #links = new Set<string>();
  /** Directory entries' mode and time, set once every entry is out (writing into one changes its time). */
  readonly #directories = new Map<string, EntryMeta>();

  constructor(root: string, archive: string, self: string) {
    this.#root = root;
    this.#archive = archive;
    this.#self = self;
  }

  /** Resolves an entry name inside the root; refuses absolute names and `..` escapes. */
  path(name: string): string {
    const clean = name.replace(/\/+$/, '');
    if (clean === '' || clean === '.' || clean === './') return this.#root;
    if (clean.includes('\0')) throw refused(this.#archive, `entry ${JSON.stringify(name)} contains NUL, which no file name may`);
    // before the disk is touched: such a name would be unpacked under another (U+FFFD) or fail midway (ENAMETOOLONG)
    const unnamable = unnamableReason(clean);
    if (unnamable !== undefined) throw refused(this.#archive, `entry ${JSON.stringify(name)}: ${unnamable}`);
    if (isAbsolute(clean)) throw refused(this.#archive, `entry "${name}" has an absolute path`);
    const full = resolve(this.#root, clean);
    this.#inside(full, `entry "${name}" escapes the destination`);
    // the destination's own path counts: a deep entry would otherwise fail midway (ENAMETOOLONG)
    const tooLong = pathLengthReason(full);
    if (tooLong !== undefined) throw refused(this.#archive, `entry ${JSON.stringify(name)}: ${tooLong}`);
    return full;
  }

  #inside(full: string, why: string): void {
    if (!isInside(this.#root, full)) throw refused(this.#archive, why);
  }

  /** The components of `full` (from path()) below the root. */
  #parts(full: string): string[] {
    const rel = relative(this.#root, full);
    return rel === '' ? [] : rel.split(sep);
  }

  /** Creates `full` and the directories above it; a symlink or file on the way is refused. */
  async directory(full: string, name: string): Promise<void> {
    await walkDirs(this.#root, this.#parts(full), { create: true, refuse: (why) => refused(this.#archive, `entry "${name}": ${why}`) });
  }

  /** Keeps a directory entry's mode and time for finishDirectories(); the destination's own are left alone. */
  directoryMeta(full: string, meta: EntryMeta): void {
    if (full !== this.#root) this.#directories.set(full, meta);
  }

  /**
   * Gives the directory entries their mode and time, deepest first (a directory made
   * read-only is then no longer written into). Each is opened without following a link; one
   * that cannot take them (another user's, a link that replaced it) keeps its own, as Python's
   * extractall leaves it (its chmod and utime failures are not fatal).
   */
  async finishDirectories(): Promise<void> {
    const deepestFirst = [...this.#directories].sort(([a], [b]) => b.split(sep).length - a.split(sep).length);
    for (const [full, meta] of deepestFirst) {
      const dir = await open(full, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_DIRECTORY).catch(() => undefined);
      if (!dir) continue;
      try {
        await setMeta(dir.fd, meta);
      } finally {
        await dir.close();
      }
    }
  }

  /** Creates the directories above `full`; a symlink or file on the way is refused. */
  async parent(full: string, name: string): Promise<void> {
    await this.directory(dirname(full), name);
  }

  /**
   * A symlink's target: relative, inside by name, and with `..` only at its start
   * (`../lib/x`). A `..` after a name (`q/..`) goes up from wherever that name leads, which a
   * later entry, or a later archive unpacked here, can make a link (`q -> .`): the link
   * would then point out of the destination, checked or not when its archive was out.
   */
  linkTarget(full: string, target: string, name: string): void {
    // not valid UTF-8, it would point elsewhere than the archive's link; too long, symlink(2) fails on it
    const unlinkable = symlinkTargetReason(target);
    if (unlinkable !== undefined) throw refused(this.#archive, `entry ${JSON.stringify(name)}: ${unlinkable}`);
    if (isAbsolute(target)) throw refused(this.#archive, `link "${name}" points to the absolute path ${target}`);
    const parts = target.split('/').filter((p) => p !== '' && p !== '.');
    const firstName = parts.findIndex((p) => p !== '..');
    if (firstName !== -1 && parts.slice(firstName).includes('..')) {
      throw refused(this.#archive, `link "${name}" points to "${target}", with ".." after a name: where that leads depends on what the name is then (a link a later entry or archive makes), so ".." is taken only at the start of a link's target`);
    }
    this.#inside(resolve(dirname(full), target), `link "${name}" points out of the destination`);
  }

  /** A created link: through earlier links it may resolve outside; then it goes. */
  async linkCreated(full: string, name: string): Promise<void> {
    this.#links.add(full);
    await this.#linkResolved(full, name);
  }

  async #linkResolved(full: string, name: string): Promise<void> {
    const real = await realpath(full).catch(() => undefined); // dangling: checked again at the end
    if (real === undefined) return;
    try {
      this.#inside(real, `link "${name}" points out of the destination`);
    } catch (err) {
      await unlink(full);
      throw err;
    }
  }

  /**
   * Once the archive is out (or has failed): a link that dangled when made (`p -> q/..`
   * before `q -> .`) may now resolve outside. Nothing was written through it, but it is
   * not left behind: every such link is removed, and the first one is the error.
   */
  async checkLinks(): Promise<void> {
    let first: unknown;
    for (const full of this.#links) {
      const st = await lstatOrMissing(full);
      if (st?.isSymbolicLink()) await this.#linkResolved(full, relative(this.#root, full)).catch((err: unknown) => { first ??= err; });
    }
    if (first !== undefined) throw first;
  }

  /**
   * Hard link target: a regular file this archive wrote, reached without any symlink, and
   * not the link's own path `linkPath` (clearing it for the link would delete the target).
   */
  async hardLinkTarget(linkname: string, name: string, linkPath: string): Promise<string> {
    const full = this.path(linkname);
    const refuse = (why: string): FleetError => refused(this.#archive, `hard link "${name}" to "${linkname}": ${why}`);
    if (full === linkPath) throw refuse('a link to itself');
    await walkDirs(this.#root, this.#parts(dirname(full)), { create: false, refuse });
    const st = await lstatOrMissing(full);
    if (!this.#files.has(full) || !st?.isFile()) throw refuse('not a regular file of this archive');
    return full;
  }

  wrote(full: string): void {
    this.#files.add(full);
  }

  /**
   * Removes whatever is at `full`, so a new file or link entry never writes through an old
   * link; a directory there is refused (as Python's extractall fails on it), not removed.
   */
  async clear(full: string, name: string): Promise<void> {
    const st = await lstatOrMissing(full);
    if (!st) return;
    if (`${st.dev}:${st.ino}` === this.#self) throw refused(this.#archive, `entry "${name}" would replace the archive being unpacked`);
    if (st.isDirectory()) throw refused(this.#archive, `entry "${name}": a directory is in its place (the archive has this path twice, or it was there before)`);
    await unlink(full);
    this.#files.delete(full);
    this.#links.delete(full);
  }
}

function checkMode(archive: string, name: string, mode: number | undefined): number {
  const m = mode ?? 0o644;
  if (m & 0o6000) throw refused(archive, `entry "${name}" is setuid or setgid`);
  return m & 0o777;
}

/** A tar member's mode (setuid/setgid refused, see checkMode) and modification time. */
interface EntryMeta {
  readonly mode: number;
  readonly mtime: Date;
}

const fchmodFd = promisify(fchmod);
const futimesFd = promisify(futimes);
const closeFd = promisify(close);

/**
 * Sets mode and times as Python's tarfile does (chmod, not subject to the umask; utime), and
 * as it does, goes on without them where the filesystem or the owner refuses.
 */
async function setMeta(fd: number, meta: EntryMeta): Promise<void> {
  await fchmodFd(fd, meta.mode).catch(() => undefined);
  await futimesFd(fd, meta.mtime, meta.mtime).catch(() => undefined);
}

/**
 * Writes a regular file entry. A tar member's file (`meta`) is made 0600, written, then
 * given its mode and time through the same descriptor: a mode the owner cannot read or write
 * by (0200, 0111) is no obstacle, and nothing is looked up by name again. A zip entry (none)
 * gets open()'s 0666 less the umask, and the time of its writing.
 */
async function writeEntry(target: Target, full: string, name: string, body: AsyncIterable<unknown>, meta?: EntryMeta): Promise<void> {
  await target.parent(full, name);
  await target.clear(full, name);
  // 'wx' = O_CREAT|O_EXCL: never follows a link that appeared at the path.
  const out = createWriteStream(full, { flags: 'wx', mode: meta ? 0o600 : 0o666, autoClose: false });
  let fd: number | undefined;
  out.once('open', (opened: number) => { fd = opened; });
  try {
    await pipeline(body, out);
    if (meta) await setMeta(fd!, meta);
  } finally {
    if (fd !== undefined) await closeFd(fd);
  }
  target.wrote(full);
}

function wrap(archive: string, err: unknown): FleetError {
  return err instanceof FleetError ? err : unpackError(archive, errorMessage(err), err);
}

async function extractTar(archive: string, streams: [Readable, ...Duplex[]], target: Target): Promise<void> {
  // v7 headers have no magic, which tar-stream refuses unless told (an option its types lack); Python's tarfile reads them.
  const options: Parameters<typeof tarStream.extract>[0] & { allowUnknownFormat: boolean } = { allowUnknownFormat: true };
  const extract = tarStream.extract(options);
  const done = pipeline([...streams, extract]);
  done.catch(() => undefined); // awaited below; a throw inside the loop must not leave it unhandled
  // A stream error does not always end the current entry's stream (streamx and node
  // streams differ), so writing an entry also stops when the whole pipeline fails.
  const failed = new Promise<never>((_, reject) => { done.catch(reject); });
  failed.catch(() => undefined);
  try {
    for await (const entry of extract) {
      const { name, type, mode, mtime, linkname } = entry.header;
      const full = target.path(name);
      if (type === 'directory') {
        await target.directory(full, name);
        // a directory's setgid bit (its files take its group) harms nothing: dropped, not refused, as ever
        target.directoryMeta(full, { mode: (mode ?? 0o755) & 0o777, mtime: mtime ?? new Date() });
        entry.resume();
      } else if (type === 'file' || type === 'contiguous-file') {
        await Promise.race([writeEntry(target, full, name, entry, { mode: checkMode(archive, name, mode), mtime: mtime ?? new Date() }), failed]);
      } else if (type === 'symlink' || type === 'link') {
        entry.resume();
        if (!linkname) throw unpackError(archive, `link "${name}" has no target`);
        await target.parent(full, name);
        if (type === 'symlink') {
          target.linkTarget(full, linkname, name);
          await target.clear(full, name);
          await symlink(linkname, full);
          await target.linkCreated(full, name);
        } else {
          // hard link targets are archive paths, resolved from the root
          const existing = await target.hardLinkTarget(linkname, name, full);
          await target.clear(full, name);
          await link(existing, full);
          target.wrote(full);
        }
      } else {
        entry.resume();
        throw unpackError(archive, `entry "${name}" has unsupported type ${type ?? 'unknown'}`);
      }
    }
    await done;
    await target.checkLinks();
    await target.finishDirectories();
  } catch (err) {
    await target.checkLinks().catch(() => undefined); // a failed unpack leaves no escaping link either
    throw wrap(archive, err);
  }
}

/** Pipes the archive through a Debian decompressor into the tar reader. */
async function extractFiltered(archive: string, command: readonly string[], target: Target): Promise<void> {
  const [cmd, ...args] = command as [string, ...string[]];
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-2000); });
  const exited = new Promise<number | null>((res, rej) => {
    child.once('error', (err) => rej(unpackError(archive, `cannot run ${cmd} (Debian package ${cmd === 'xz' ? 'xz-utils' : cmd}): ${err.message}`, err)));
    child.once('close', (code) => res(code));
  });
  exited.catch(() => undefined);
  try {
    await Promise.all([pipeline(createReadStream(archive), child.stdin), extractTar(archive, [child.stdout], target)]);
    const code = await exited;
    if (code !== 0) throw unpackError(archive, `${cmd} exited with ${code}: ${stderr.trim()}`);
  } catch (err) {
    child.kill();
    const code = await exited; // a spawn failure rejects here with the clearer message
    // A corrupt stream shows first as a short tar; the decompressor's own message is better.
    // Not over the verdict on an entry: the decompressor then fails only because its output
    // was closed on it (bzip2: "I/O or other error", zstd: "Broken pipe").
    if (!isEntryVerdict(err) && code !== 0 && code !== null && stderr.trim()) throw unpackError(archive, `${cmd} exited with ${code}: ${stderr.trim()}`);
    throw wrap(archive, err);
  }
}

/** An entry refused or not unpacked, said by the unpack itself: not a reading error wrapped (those keep their cause). */
function isEntryVerdict(err: unknown): boolean {
  return err instanceof FleetError && err.cause === undefined;
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((res, rej) => yauzl.open(path, { lazyEntries: true, autoClose: true }, (err, zip) => (err ? rej(err) : res(zip))));
}

async function extractZip(archive: string, target: Target): Promise<void> {
  const zip = await openZip(archive).catch((err: unknown) => { throw unpackError(archive, errorMessage(err), err); });
  await new Promise<void>((res, rej) => {
    const fail = (err: unknown): void => {
      zip.close();
      rej(err instanceof FleetError ? err : unpackError(archive, errorMessage(err), err));
    };
    zip.on('error', fail);
    zip.on('end', res);
    zip.on('entry', (entry: yauzl.Entry) => {
      (async () => {
        const full = target.path(entry.fileName);
        if (entry.fileName.endsWith('/')) {
          await target.directory(full, entry.fileName);
        } else {
          // Like Python's extractall (tooltool's zip unpack): the entries' mode bits are ignored,
          // a file gets open()'s 0666 less the umask (so nothing is setuid), links become plain files.
          const body = await new Promise<Readable>((ok, ko) => zip.openReadStream(entry, (err, s) => (err ? ko(err) : ok(s))));
          await writeEntry(target, full, entry.fileName, body);
        }
        zip.readEntry();
      })().catch(fail);
    });
    zip.readEntry();
  });
}

/**
 * rm -rf of an earlier unpack. Refused (not root, and a read-only directory inside, which a
 * tar member's 0555 gives): its directories are made the owner's to write first, then removed.
 */
async function removeTree(path: string): Promise<void> {
  try {
    return await rm(path, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
  }
  await makeWritable(path);
  await rm(path, { recursive: true, force: true });
}

/** u+rwx on `dir` and every directory below it (links not followed: only what lstat says is a directory). */
async function makeWritable(dir: string): Promise<void> {
  const st = await lstatOrMissing(dir);
  if (!st?.isDirectory()) return;
  await chmod(dir, (st.mode & 0o7777) | 0o700).catch(() => undefined);
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) await makeWritable(join(dir, entry.name));
  }
}

/**
 * Unpacks `archive` (a file named `filename`) into `dest`, after removing the directory
 * tooltool removes. Returns the format found.
 */
export async function unpackArchive(archive: string, filename: string, dest: string): Promise<ArchiveKind> {
  const kind = await detectArchive(archive);
  if (!kind) throw unpackError(archive, 'unknown archive format (expected tar, tar.gz, tar.bz2, tar.xz, tar.lzma, tar.zst or zip)');
  const root = await realpath(dest);
  const self = await stat(archive);
  const target = new Target(root, archive, `${self.dev}:${self.ino}`);
  const stale = unpackDirName(filename, kind);
  if (stale !== filename && stale !== '' && stale !== '.' && stale !== '..') {
    // A stale unpack is a directory; a file there (or a link to one) may be another manifest record.
    const path = join(root, stale);
    const st = await lstatOrMissing(path);
    const file = st?.isFile() || (st?.isSymbolicLink() && (await stat(path).catch(() => undefined))?.isFile());
    if (st && !file) await removeTree(path).catch((err: unknown) => { throw wrap(archive, err); });
  }
  if (kind === 'zip') {
    await extractZip(archive, target);
  } else if (kind === 'tar') {
    await extractTar(archive, [createReadStream(archive)], target);
  } else if (kind === 'tar.gz') {
    await extractTar(archive, [createReadStream(archive), createGunzip()], target);
  } else {
    await extractFiltered(archive, FILTERS[kind]!, target);
  }
  return kind;
}
