// Files that appear whole or not at all: written under a unique temporary name beside the
// final one (same directory, so the rename is atomic), renamed on success, removed on
// failure. Concurrent writers of the same content each rename their own whole copy.
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';

/** A fresh name beside `final` for its content in progress. */
export function tempNameFor(final: string): string {
  return `${final}.${randomBytes(6).toString('hex')}.partial`;
}

/** Runs `write(tmp)`, then renames tmp to `final`; on any failure nothing is left at either. */
export async function writeAtomically<T>(final: string, write: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = tempNameFor(final);
  try {
    const result = await write(tmp);
    await rename(tmp, final);
    return result;
  } finally {
    await rm(tmp, { force: true });
  }
}
