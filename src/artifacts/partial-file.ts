// The temp file an artifact is downloaded into, beside its target (the rename into place is
// then atomic): `.<pid>-<hex>.fleetcache-partial`. The download removes it when it ends,
// renamed or not, and a signal (Ctrl-C) that ends the process removes it too. One that a
// process killed outright (SIGKILL, OOM) left is removed by the next download into its
// directory: repeated kills must not fill the user's artifacts directory with them.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { removeLeftoversOfDeadPids, writtenBefore } from '../pid-alive.js';

const SUFFIX = '.fleetcache-partial';
const PARTIAL = /^\.(\d+)-[0-9a-f]{12}\.fleetcache-partial$/;

/**
 * How long a dead PID's partial file is left alone. A download writes its file every few
 * seconds at most (the client's timeouts); but the PID is this host's and this PID
 * namespace's only, and a directory may be shared with another host or container whose
 * process, alive, writes it. Generous, for the clocks of hosts sharing a disk.
 */
const ABANDONED_AFTER_MS = 10 * 60_000;

/** A new partial file's path in `dir`, named with this process's PID. */
export function partialFileIn(dir: string): string {
  return join(dir, `.${process.pid}-${randomBytes(6).toString('hex')}${SUFFIX}`);
}

/** Removes the partial files in `dir` of processes that are gone, unwritten for ABANDONED_AFTER_MS. */
export function removeAbandonedPartials(dir: string): void {
  const abandonedBefore = Date.now() - ABANDONED_AFTER_MS;
  removeLeftoversOfDeadPids(dir, (name) => {
    const pid = PARTIAL.exec(name)?.[1];
    // a young one is left as though not a partial file: its PID may not be this host's
    return pid === undefined || !writtenBefore(join(dir, name), abandonedBefore) ? undefined : Number(pid);
  });
}
