// Whether a process still runs, for the records processes leave behind them (a cache
// primary's socket directories, a runner's list of its machines) when killed outright.

/** True while `pid` runs, another user's included (EPERM). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
