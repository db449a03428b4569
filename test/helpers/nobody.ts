// The unprivileged user tests run commands as (root in CI reads, writes and removes whatever
// the modes say, so only another user shows what permissions do).
import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

/** uid and gid of `nobody`, or why a test cannot run as it. */
export function nobody(): { uid: number; gid: number } | string {
  if (process.getuid?.() !== 0) return 'needs root to run a command as another user';
  try {
    const id = (flag: string): number => Number(execFileSync('id', [flag, 'nobody'], { encoding: 'utf8' }));
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return 'no user "nobody" on this machine';
  }
}

/**
 * A directory `nobody` reaches, removed when the test ends: in the system's temp directory,
 * as the test's own (under the repository) may be closed to other users; open to its writes
 * when `writable`, else to its reads only.
 */
export async function tempDirNobodyReaches(t: Test, prefix: string, writable: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, writable ? 0o777 : 0o755);
  return dir;
}
