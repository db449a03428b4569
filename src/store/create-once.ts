// A file made by whichever of several processes starting at once gets there first (a data
// directory's lock secret, an origin's own write token), read alike by all of them.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { removeLeftoversOfDeadPids } from '../pid-alive.js';
import { fsyncFileSync } from './durable.js';
import { linkUnlessTaken } from './link-unless-taken.js';

/** The hex of a temp file's name (randomBytes(6)). */
const TEMP_HEX_LENGTH = 12;

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
  linkUnlessTaken(temp, file);
  fsyncFileSync(dirname(file));
  return read();
}

/**
 * Removes the temp files of `file` that a process killed between their writing and their link
 * left (a SIGKILL, a power loss): those named with the PID of a process no longer running,
 * written long enough ago (see LEFTOVER_IDLE_MS: a young one may be another host's or
 * container's, about to be linked). A live one's may be about to be linked. One that cannot
 * be removed keeps no start from going on.
 */
function removeDeadTemps(file: string): void {
  const prefix = `${basename(file)}.`;
  const rest = new RegExp(`^(\\d+)\\.[0-9a-f]{${TEMP_HEX_LENGTH}}$`);
  removeLeftoversOfDeadPids(dirname(file), (name) => {
    const pid = name.startsWith(prefix) ? rest.exec(name.slice(prefix.length))?.[1] : undefined;
    return pid === undefined ? undefined : Number(pid);
  });
}
