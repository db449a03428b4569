// The temp file a download goes into, beside its final name (the rename into place is then
// atomic): `.<label>.<pid>-<hex>.fleetcache-part`, the label being the start of the final
// file's name (a name up to NAME_MAX still fits). withPartialFile removes it when the work
// ends, renamed or not, and if a signal (Ctrl-C, SIGTERM) ends the process first; not at a
// signal the process handles itself (a runner's first Ctrl-C stops the run, and the
// artifacts being fetched still land), but at an exit before the work ends (the runner's
// second Ctrl-C exits at once: process.exit runs no finally) or at a later signal that
// ends it (a SIGHUP, the terminal closed). One that a process killed
// outright (SIGKILL, OOM) left is removed by the next download into its directory
// (removeAbandonedPartials): repeated kills must not fill a user's directory with them.
// Used by `artifacts get` and `assets fetch` (its destination and its cache folder).
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { removeLeftoversOfDeadPids } from './pid-alive.js';
import { removeIfProcessEnds } from './project-upload/signal-cleanup.js';

const PARTIAL = /^\..*\.(\d+)-[0-9a-f]{12}\.fleetcache-part$/s;

/**
 * Runs `write(partial)` with a new partial file's path in `dir` (not created: `write` does,
 * and renames it into place when whole and verified); the partial file is removed when
 * `write` ends, and if a signal or an exit ends the process before. Its own removal failing
 * (a read-only directory) is not `write`'s outcome.
 */
export async function withPartialFile<T>(dir: string, label: string, write: (partial: string) => Promise<T>): Promise<T> {
  const partial = join(dir, `.${Array.from(label).slice(0, 32).join('')}.${process.pid}-${randomBytes(6).toString('hex')}.fleetcache-part`);
  const forget = removeIfProcessEnds(partial);
  try {
    return await write(partial);
  } finally {
    await rm(partial, { force: true }).catch(() => undefined);
    forget();
  }
}

/**
 * Removes the partial files in `dir` of processes that are gone, once unwritten for a while
 * (see removeLeftoversOfDeadPids: the PID may be another host's or container's, whose live
 * download writes it every few seconds at most).
 */
export function removeAbandonedPartials(dir: string): void {
  removeLeftoversOfDeadPids(dir, (name) => {
    const pid = PARTIAL.exec(name)?.[1];
    return pid === undefined ? undefined : Number(pid);
  });
}
