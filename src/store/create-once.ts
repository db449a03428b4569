// A file made by whichever of several processes starting at once gets there first (a data
// directory's lock secret, an origin's own write token), read alike by all of them.
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { removeLeftoversOfDeadPids, writtenBefore } from '../pid-alive.js';
import { fsyncFileSync } from './durable.js';

/** The hex of a temp file's name (randomBytes(6)). */
const TEMP_HEX_LENGTH = 12;

/**
 * How old a dead PID's temp file must be to be removed. A temp file is linked within
 * milliseconds of its writing; but a PID is this host's and this PID namespace's only: a
 * younger one may be another host's (a shared directory) or another container's, whose
 * process, alive, is about to link it. Generous, for the clocks of hosts sharing a disk.
 */
const ABANDONED_AFTER_MS = 10 * 60_000;

/**
 * The trimmed text of `file`, made with `make()`'s text (mode `mode`) when missing. Written
 * whole under a name of its own, then linked: of two processes making it at once, one
 * links and the other reads the winner's text, and neither reads it half-written. Flushed
 * before the link: after a power loss the file is whole or absent, never empty (an empty
 * lock secret names the lock as anyone on the machine can, and take it first); an empty
 * one found is refused. The directory is synced after the link: an origin's token lost to a
 * power loss would be made anew, locking out the clients given the old one.
 */
export function readOrCreate(file: string, make: () => string, mode: number): string {
  const read = (): string => {
    const text = readFileSync(file, 'utf8').trim();
    // What a power loss left before the flush above (a version without it): refused, not taken
    // for a secret everyone knows. Removed, it is made anew.
    if (text === '') throw new Error(`${file} is empty (a power loss after it was made?): remove it, and a new one is made at start`);
    return text;
  };
  removeDeadTemps(file);
  try {
    return read();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const temp = `${file}.${process.pid}.${randomBytes(TEMP_HEX_LENGTH / 2).toString('hex')}`;
  writeFileSync(temp, `${make()}\n`, { mode, flush: true });
  try {
    linkSync(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(temp, { force: true });
  }
  fsyncFileSync(dirname(file));
  return read();
}

/**
 * Removes the temp files of `file` that a process killed between their writing and their link
 * left (a SIGKILL, a power loss): those named with the PID of a process no longer running,
 * written ABANDONED_AFTER_MS ago or more. A live one's may be about to be linked. One that
 * cannot be removed keeps no start from going on.
 */
function removeDeadTemps(file: string): void {
  const dir = dirname(file);
  const prefix = `${basename(file)}.`;
  const rest = new RegExp(`^(\\d+)\\.[0-9a-f]{${TEMP_HEX_LENGTH}}$`);
  const abandonedBefore = Date.now() - ABANDONED_AFTER_MS;
  removeLeftoversOfDeadPids(dir, (name) => {
    const pid = name.startsWith(prefix) ? rest.exec(name.slice(prefix.length))?.[1] : undefined;
    // a young one is left as though not a temp file: its PID may not be this host's
    return pid === undefined || !writtenBefore(join(dir, name), abandonedBefore) ? undefined : Number(pid);
  });
}
