// Whether a process still runs, for the records processes leave behind them (a cache
// primary's socket directories, a runner's list of its machines, the temp files of
// store/create-once.ts, the partial files of `artifacts get` and `assets fetch`, the working
// directories of push and pull) when killed outright.
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The fields of Linux's /proc/PID/stat from the third (the state) on, or undefined where
 * there is no such file (no such process, or no /proc).
 */
function statFieldsOf(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * True while `pid` runs, another user's included (EPERM). A zombie (state Z: exited, not yet
 * reaped by its parent) does not: signal 0 still reaches its PID, but it runs nothing and holds
 * nothing of what it left behind. Only a positive integer names one process: kill(2) takes 0
 * for the caller's own process group and -1 for every process, which signal 0 finds alive,
 * and a caller that then kills what is alive (a PID read from an empty file is Number('') = 0)
 * would take down its own group: a test, its runner, the CI job.
 */
export function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return statFieldsOf(pid)?.[0] !== 'Z';
}

/**
 * When `pid` started, in clock ticks since boot (field 22 of Linux's /proc/PID/stat);
 * undefined where there is no /proc. With the PID it names one process: a PID is reused,
 * a PID and its start time are not (until a reboot, which ends the process anyway).
 */
export function startTimeOf(pid: number): string | undefined {
  return statFieldsOf(pid)?.[19];
}

/** True while the process `pid` that started at `startTime` runs; without a start time, isAlive. */
export function isRunning(pid: number, startTime: string | undefined): boolean {
  if (!isAlive(pid)) return false;
  if (startTime === undefined) return true;
  const now = startTimeOf(pid);
  return now === undefined || now === startTime;
}

/**
 * How long what a process left must have gone unmodified to be taken for a leftover. A PID is
 * this host's and this PID namespace's only: what one dead here left may be another host's (a
 * shared directory) or another container's (a shared /tmp), whose process is alive and about
 * to use it, or using it. Generous, for the clocks of hosts sharing a disk. A process that
 * keeps something for longer (a cache primary's socket directory) touches it more often.
 */
const LEFTOVER_IDLE_MS = 10 * 60_000;

/**
 * Removes what processes killed outright left in `dir`: the entries whose name `pidOf` reads
 * a PID from (undefined: not such an entry) whose process is gone, unmodified for `idleMs`
 * (LEFTOVER_IDLE_MS unless what is in use is touched more seldom). One of a live PID (its process, or one reusing the PID since) is left
 * alone, and so is one modified since (its PID may not be this namespace's), and one this
 * user may not remove (another user's: its owner's next start sweeps it). A directory that
 * cannot be read has nothing to sweep.
 */
export function removeLeftoversOfDeadPids(dir: string, pidOf: (name: string) => number | undefined, idleMs = LEFTOVER_IDLE_MS): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  const now = Date.now();
  for (const name of names) {
    const pid = pidOf(name);
    if (pid === undefined || !isLeftover(join(dir, name), pid, undefined, now, idleMs)) continue;
    try {
      rmSync(join(dir, name), { recursive: true, force: true });
    } catch {
      // another user's (EACCES, EPERM), a read-only directory: left to its owner
    }
  }
}

/**
 * Whether `file`, written by the process `pid` that started at `startTime` (startTimeOf; none:
 * any process of that PID), is what that process left when killed: it no longer runs, and
 * the file went unmodified for `idleMs` before `now`.
 */
export function isLeftover(file: string, pid: number, startTime?: string, now = Date.now(), idleMs = LEFTOVER_IDLE_MS): boolean {
  return !isRunning(pid, startTime) && modifiedBefore(file, now - idleMs);
}

/** Whether `file` was last modified before `time` (false when it cannot be told: gone since, unreadable). */
function modifiedBefore(file: string, time: number): boolean {
  try {
    return statSync(file).mtimeMs < time;
  } catch {
    return false;
  }
}
