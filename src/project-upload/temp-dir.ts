// A working directory under TMPDIR for one push or pull, removed when the work ends: on
// success, on failure, and on a signal or an exit that ends the process first (which would
// otherwise run no finally and leave a base tar of hundreds of MB behind). A process
// killed outright (SIGKILL, OOM) runs none of that: its directory names its PID, and the
// next push or pull removes those whose process is gone.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeLeftoversOfDeadPids } from '../pid-alive.js';
import { removeIfProcessEnds } from './signal-cleanup.js';

/**
 * Left alone while younger than this, its process gone or not: a PID from another PID
 * namespace sharing the directory (a container) looks gone, and a working directory in use
 * gets new files every few minutes at most (a base, a delta, a tar).
 */
const ABANDONED_AFTER_MS = 60 * 60 * 1000;

export async function withTempDir<T>(prefix: string, work: (dir: string) => Promise<T>): Promise<T> {
  removeAbandoned(prefix);
  const dir = await mkdtemp(join(tmpdir(), `${prefix}${process.pid}-`));
  const forget = removeIfProcessEnds(dir);
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}

/** Removes the working directories of `prefix` whose process is gone (killed outright) and that nothing touched for an hour. */
function removeAbandoned(prefix: string): void {
  removeLeftoversOfDeadPids(tmpdir(), (name) => {
    const pid = name.startsWith(prefix) ? /^(\d+)-/.exec(name.slice(prefix.length))?.[1] : undefined;
    return pid === undefined ? undefined : Number(pid);
  }, ABANDONED_AFTER_MS);
}
