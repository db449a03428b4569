// Files that appear whole or not at all: written under a unique temporary name beside the
// final one (same directory, so the rename is atomic), flushed to disk, renamed on success,
// removed on failure and when a signal or an exit ends the process first (not at a signal
// the process handles and goes on: after a runner's first Ctrl-C the write still lands).
// Concurrent writers of the same content each rename their own whole copy.
import { randomBytes } from 'node:crypto';
import { realpath, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { removeIfProcessEnds } from './signal-cleanup.js';
import { fsyncFile } from '../store/durable.js';

/** A fresh name beside `final` for its content in progress. */
export function tempNameFor(final: string): string {
  return `${final}.${randomBytes(6).toString('hex')}.partial`;
}

/**
 * Runs `write(tmp)`, then renames tmp to `final`; on any failure nothing is left at either.
 * A `final` that is a symbolic link is written through (its target is replaced); one that is
 * not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) is written to in place, as `tar -f`
 * does: renaming over it would replace the device itself.
 */
export async function writeAtomically<T>(given: string, write: (tmp: string) => Promise<T>): Promise<T> {
  const existing = await stat(given).catch(() => undefined);
  if (existing && !existing.isFile()) return write(given);
  const final = existing ? await realpath(given) : given;
  const tmp = tempNameFor(final);
  const forget = removeIfProcessEnds(tmp);
  try {
    const result = await write(tmp);
    // the data before the name: after a power loss the final name is whole or absent, never empty
    await fsyncFile(tmp);
    await rename(tmp, final);
    await fsyncFile(dirname(final));
    return result;
  } finally {
    await rm(tmp, { force: true });
    forget();
  }
}
