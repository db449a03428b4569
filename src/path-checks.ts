// Checks of the files and folders an operation is given, before anything is written: a
// missing input or output folder is the user's mistake and gets a clear error with a
// documented exit code (docs/errors.md), not a stack trace and exit 70. Used by the CLI and
// by the parts that take paths from it (unpack, manifests).
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { errorMessage, FleetError, NotFoundError, UsageError } from './errors.js';

/** An fs error about `path` (`what`: "base", "project directory"...) as a FleetError; other errors as they are. */
export function pathError(err: unknown, path: string, what: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new NotFoundError(`${what} ${path} does not exist`);
  if (code === 'ENOTDIR') return new UsageError(`${what} ${path}: a folder on its path is a file`);
  if (code === 'EACCES' || code === 'EPERM') return new UsageError(`${what} ${path}: permission denied`);
  if (code === 'EISDIR') return new UsageError(`${what} ${path} is a directory`);
  return err;
}

/**
 * A file that could not be read (`path`, named in the message): missing is not found (exit 4),
 * as for every other input; anything else a usage error with the system's words.
 */
export function unreadableFile(err: unknown, path: string): FleetError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new NotFoundError(`${path}: cannot read: it does not exist`);
  return new UsageError(`${path}: cannot read: ${errorMessage(err)}`);
}

/** A failed mkdir of `dir` (and its parents) as the user's mistake it is: a file in the way, a folder on the path that is a file. */
function makeDirError(err: unknown, dir: string, what: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EEXIST') return new UsageError(`${what} ${dir} is a file, not a directory`);
  // its parent is there (made or found just before): a filesystem that takes no new directory (/proc, /sys)
  if (code === 'ENOENT') return new UsageError(`${what} ${dir} cannot be created: ${errorMessage(err)}`);
  return pathError(err, dir, what);
}

/**
 * Makes the directory `dir` and the parents it lacks (each with `mode`, less the umask, as
 * node's recursive mkdir does), one at a time from the deepest that exists: node's recursive
 * mkdir never returns under /proc or /sys (mkdir answers ENOENT there for a parent that
 * exists, and node makes the parent again, for ever).
 */
function makeDirs(dir: string, mode: number | undefined): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode });
    } catch (err) {
      // made meanwhile by another process (a cache's workers start together); a file there fails below
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  if (!statSync(dir).isDirectory()) throw Object.assign(new Error(`${dir} exists`), { code: 'EEXIST' });
}

/**
 * Makes the directory `dir` (`what`: "data directory"...) and its parents, unless there;
 * those it makes get `mode` (default 0777), less the umask.
 */
export async function makeDir(dir: string, what: string, mode?: number): Promise<void> {
  makeDirSync(dir, what, mode); // a few system calls, at the start of a command or server
}

/** makeDir, for the synchronous start-up steps. */
function makeDirSync(dir: string, what: string, mode?: number): void {
  try {
    makeDirs(dir, mode);
  } catch (err) {
    throw makeDirError(err, dir, what);
  }
}

/**
 * Makes a server's or a run's data directory (`--data`, `data:`) unless there. One that
 * cannot be made (its parent not writable, a file in its place, /proc) is the configuration
 * the operator fixes, exit 3 as one that cannot be written (store/dir-lock.ts), not a malformed
 * command line.
 */
export function makeDataDir(dir: string, mode?: number): void {
  try {
    makeDirSync(dir, 'data directory', mode);
  } catch (err) {
    throw dataDirError(err, dir, 'cannot be created');
  }
}

/** A failure on the data directory `dir` (`doing`: "cannot be created"…) as FC_ERR_CONFIG, naming it. */
export function dataDirError(err: unknown, dir: string, doing: string): FleetError {
  // makeDirSync's own message names the directory already
  const message = err instanceof FleetError ? err.message : `data directory ${dir} ${doing}: ${errorMessage(err)}`;
  return new FleetError('FC_ERR_CONFIG', message, { cause: err });
}

/**
 * Fails unless `path` is an existing file or directory, as `kind` says. With `missingOk`, a
 * missing path passes: a target directory that will be made, whereas a file in its place
 * fails here rather than as mkdir's bare EEXIST.
 */
export async function requireInput(path: string, kind: 'file' | 'directory', what: string, { missingOk = false } = {}): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (err) {
    if (missingOk && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw pathError(err, path, what);
  }
  if (kind === 'directory' && !isDir) throw new UsageError(`${what} ${path} is not a directory`);
  if (kind === 'file' && isDir) throw new UsageError(`${what} ${path} is a directory, not a file`);
}

/** Fails unless `file` can be created: its folder exists and it is not itself a directory. */
export async function requireOutput(file: string): Promise<void> {
  const dir = dirname(resolve(file));
  try {
    if (!(await stat(dir)).isDirectory()) throw new UsageError(`output ${file}: ${dir} is not a directory`);
  } catch (err) {
    if (err instanceof FleetError) throw err;
    throw pathError(err, dir, `output folder of ${file}:`);
  }
  try {
    if ((await stat(file)).isDirectory()) throw new UsageError(`output ${file} is a directory`);
  } catch (err) {
    if (err instanceof FleetError) throw err;
  }
}
