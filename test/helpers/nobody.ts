// The unprivileged user tests run commands as (root in CI reads, writes and removes whatever
// the modes say, so only another user shows what permissions do).
import { execFileSync } from 'node:child_process';

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
