// What must happen when SIGINT/SIGTERM/SIGHUP ends the process, which would otherwise end it
// without running any finally: the work directories of push and pull, and the partial
// files written beside their final names (a base in the base cache, an -o output, a
// runner's report, a download), are removed (also at an exit before their work ends); a
// repack script, in its own process group, gets the signal too. One handler does it all at
// once; each `finally` that would have done it runs too late.
import { rmSync } from 'node:fs';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const cleanups = new Set<(signal: NodeJS.Signals, ending: boolean) => void>();

function onSignal(signal: NodeJS.Signals): void {
  // whether the signal ends the process (below), or a handler of its own decides (a runner's stops the run)
  const ending = process.listeners(signal).every((listener) => listener === onSignal);
  for (const cleanup of cleanups) cleanup(signal, ending);
  // the process goes on, and so does the work: its cleanups stay for a signal that then ends
  // it (a SIGHUP, the terminal closed, after a runner's first Ctrl-C)
  if (!ending) return;
  cleanups.clear();
  for (const s of SIGNALS) process.off(s, onSignal);
  // nobody else handles it: end the process as the signal would have; otherwise the other
  // handlers (run after this one) decide, seeing the listeners as if this one never was
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/**
 * Runs `cleanup` (synchronous) at each signal up to the first that ends the process (no
 * other handler of it), which `ending` says. Call the result once it is no longer needed.
 */
export function atSignal(cleanup: (signal: NodeJS.Signals, ending: boolean) => void): () => void {
  if (cleanups.size === 0) for (const s of SIGNALS) process.prependListener(s, onSignal);
  cleanups.add(cleanup);
  return () => {
    if (!cleanups.delete(cleanup) || cleanups.size > 0) return;
    for (const s of SIGNALS) process.off(s, onSignal);
  };
}

/** The paths still being written, removed by one 'exit' listener if the process exits first. */
const removedAtExit = new Set<string>();

/** Best effort: the process is ending, and one path it cannot remove (another user's) must not stop the others. */
function remove(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // left behind, as a process killed outright leaves it
  }
}

function removeAll(): void {
  for (const path of removedAtExit) remove(path);
}

/**
 * Removes `path` (a file or a tree) if the process ends before its work does: by a signal
 * that ends it, or by an exit (a runner's second Ctrl-C calls process.exit, which runs no
 * finally). Not at a signal the process handles and goes on (a runner's first Ctrl-C stops
 * the run): the work still writing it goes on too. Call the result once it is dealt with.
 */
export function removeIfProcessEnds(path: string): () => void {
  const forget = atSignal((_signal, ending) => {
    if (ending) remove(path);
  });
  if (removedAtExit.size === 0) process.on('exit', removeAll);
  removedAtExit.add(path);
  return () => {
    forget();
    removedAtExit.delete(path);
    if (removedAtExit.size === 0) process.off('exit', removeAll);
  };
}
