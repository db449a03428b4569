// Whether a process still runs, for the records processes leave behind them (a cache
// primary's socket directories, a runner's list of its machines) when killed outright.
import { readFileSync } from 'node:fs';

/** True while `pid` runs, another user's included (EPERM). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When `pid` started, in clock ticks since boot (field 22 of Linux's /proc/PID/stat);
 * undefined where there is no /proc. With the PID it names one process: a PID is reused,
 * a PID and its start time are not (until a reboot, which ends the process anyway).
 */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** True while the process `pid` that started at `startTime` runs; without a start time, isAlive. */
export function isRunning(pid: number, startTime: string | undefined): boolean {
  if (!isAlive(pid)) return false;
  if (startTime === undefined) return true;
  const now = startTimeOf(pid);
  return now === undefined || now === startTime;
}
