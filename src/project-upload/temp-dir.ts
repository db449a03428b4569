// A working directory under TMPDIR for one push or pull, removed when the work ends: on
// success, on failure, and on SIGINT/SIGTERM (which would otherwise end the process
// without running any finally and leave a base tar of hundreds of MB behind).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeOnSignal } from './signal-cleanup.js';

export async function withTempDir<T>(prefix: string, work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const forget = removeOnSignal(dir);
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}
