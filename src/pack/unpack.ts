// tar → directory, refusing anything that would land outside it: absolute names, `..`
// components, and any entry created or written through a symlink (every parent is checked
// with lstat, component by component, and an entry's own path may not be a symlink either).
// The target must be missing or empty (as spread requires), so every entry is created
// exclusively and an archive cannot overwrite what is already there. Regular files,
// directories and symlinks only; other entry types are refused.
import { closeSync, constants, fchmodSync, openSync, writeSync } from 'node:fs';
import { lstat, mkdir, open, readdir, realpath, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { FleetError } from '../errors.js';
import { pathError, requireInput } from '../path-checks.js';
import { lstatOrMissing, walkDirs } from './safe-path.js';

function refusal(name: string, why: string): FleetError {
  return new FleetError('FC_ERR_BAD_NAME', `tar entry "${name}" refused: ${why}`);
}

function refuse(name: string, why: string): never {
  throw refusal(name, why);
}

/** The entry's path as safe components relative to the target directory. */
export function safeEntryPath(name: string): string {
  if (name.includes('\0')) refuse(name, 'contains NUL');
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name) || name.includes('\\')) refuse(name, 'absolute or with backslashes');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) refuse(name, 'empty name');
  if (parts.includes('..')) refuse(name, 'escapes the target directory');
  return parts.join('/');
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

export interface UnpackSummary {
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
  readonly dev: number;
  readonly ino: number;
}

/** chmod of exactly the directory recorded: opened without following a symlink, inode compared. */
async function chmodDir(dir: MadeDir): Promise<void> {
  const fh = await open(dir.path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    const st = await fh.stat();
    if (st.dev !== dir.dev || st.ino !== dir.ino) throw new FleetError('FC_ERR_BAD_NAME', `${dir.path} was replaced during the unpack; its mode is not set`);
    await fh.chmod(dir.mode);
  } finally {
    await fh.close();
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

/** O_EXCL never follows a symlink at the path; the mode is set on the open descriptor. */
function writeSmallFile(abs: string, body: Buffer, mode: number): void {
  const fd = openSync(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    fchmodSync(fd, mode);
    for (let off = 0; off < body.length;) off += writeSync(fd, body, off, body.length - off);
  } finally {
    closeSync(fd);
  }
}

/** Unpacks a tar stream into `dir` (created when missing; must be empty). */
export async function unpackTar(input: Readable, dir: string): Promise<UnpackSummary> {
  await ensureEmptyDir(dir);
  const root = await realpath(dir);
  const extract = tar.extract();
  const feeding = pipeline(input, extract);
  feeding.catch(() => undefined); // reported through the iteration below
  const dirModes = new Map<string, MadeDir>(); // a repeated directory entry: the last mode wins
  // Directories already checked (or made) as real ones: an archive cannot turn one into a
  // symlink later (every entry is created exclusively), so their entries skip the walk.
  const realDirs = new Set<string>([root]);
  let entries = 0;
  for await (const entry of extract) {
    const { header } = entry;
    const rel = safeEntryPath(header.name);
    const parts = rel.split('/');
    // Parents: real directories only, created one by one; a symlink on the way is refused.
    const abs = join(root, ...parts);
    const parent = dirname(abs);
    if (!realDirs.has(parent)) {
      await walkDirs(root, parts.slice(0, -1), { create: true, refuse: (why) => refusal(header.name, why) });
      realDirs.add(parent);
    }
    const mode = entryMode(header.mode);
    if (header.type === 'directory') {
      // Like tar --no-overwrite-dir: an existing directory is kept, anything else at that
      // path (a symlink above all: its chmod would act on the link's target) is refused.
      const existing = await lstatOrMissing(abs);
      if (existing?.isSymbolicLink()) refuse(header.name, 'a symlink of the archive is in the way of this directory');
      if (existing && !existing.isDirectory()) refuse(header.name, 'a non-directory of the archive is in the way of this directory');
      if (!existing) await mkdir(abs);
      const st = await lstat(abs);
      if (!st.isDirectory()) refuse(header.name, 'not a directory once created');
      dirModes.set(abs, { path: abs, mode, dev: st.dev, ino: st.ino });
      realDirs.add(abs);
      entry.resume();
    } else if (header.type === 'symlink') {
      await symlink(header.linkname ?? '', abs); // EEXIST for any existing path
      entry.resume();
    } else if ((header.type === 'file' || header.type === 'contiguous-file') && (header.size ?? 0) <= SMALL_FILE) {
      writeSmallFile(abs, await bodyOf(entry), mode);
    } else if (header.type === 'file' || header.type === 'contiguous-file') {
      // O_EXCL: never follows a symlink at the path; the mode is set on the open descriptor.
      const fh = await open(abs, 'wx', 0o600);
      try {
        await fh.chmod(mode); // writing goes on through the open descriptor even if read-only
      } catch (err) {
        await fh.close();
        throw err;
      }
      await pipeline(entry, fh.createWriteStream()); // closes the descriptor, also on error
    } else {
      refuse(header.name, `entry type ${header.type ?? 'unknown'} is not supported`);
    }
    entries++;
  }
  await feeding;
  // directory modes last, so a read-only directory does not block its own contents
  for (const made of [...dirModes.values()].reverse()) await chmodDir(made);
  return { entries };
}
