// Paths removed when SIGINT/SIGTERM/SIGHUP ends the process, which would otherwise end it
// without running any finally: the work directories of push and pull, and the partial
// files written beside their final names (a base in the base cache, an -o output). One
// handler removes them all at once; each `finally` that would have removed one runs too late.
import { rmSync } from 'node:fs';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const paths = new Set<string>();

function onSignal(signal: NodeJS.Signals): void {
  for (const path of paths) rmSync(path, { recursive: true, force: true });
  paths.clear();
  for (const s of SIGNALS) process.off(s, onSignal);
  // nobody else handles it: end the process as the signal would have; otherwise the other
  // handlers (run after this one) decide, seeing the listeners as if this one never was
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/** Removes `path` (a file or a tree) if a signal ends the process; call the result once it is dealt with. */
export function removeOnSignal(path: string): () => void {
  if (paths.size === 0) for (const s of SIGNALS) process.prependListener(s, onSignal);
  paths.add(path);
  return () => {
    if (!paths.delete(path) || paths.size > 0) return;
    for (const s of SIGNALS) process.off(s, onSignal);
  };
}
