// A working directory under TMPDIR for one push or pull, removed when the work ends: on
// success, on failure, and on SIGINT/SIGTERM (which would otherwise end the process
// without running any finally and leave a base tar of hundreds of MB behind).
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export async function withTempDir<T>(prefix: string, work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const onSignal = (signal: NodeJS.Signals): void => {
    rmSync(dir, { recursive: true, force: true });
    for (const s of SIGNALS) process.off(s, onSignal);
    // nobody else handles it: end the process as the signal would have; otherwise the other
    // handlers (run after this one) decide, seeing the listeners as if this one never was
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  for (const s of SIGNALS) process.prependListener(s, onSignal);
  try {
    return await work(dir);
  } finally {
    for (const s of SIGNALS) process.off(s, onSignal);
    await rm(dir, { recursive: true, force: true });
  }
}
