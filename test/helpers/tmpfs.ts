// A small tmpfs mounted by a test (needs root): a real filesystem that fills up.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { undoAtExit } from './processes.js';

export interface Tmpfs {
  readonly dir: string;
  /** Unmounts and removes the mount point; the test's teardown calls it once nothing uses it. */
  unmount(): void;
}

/**
 * Mounts a tmpfs of `size` (e.g. "8m") on a new directory of the system's temp directory
 * (not t.testdir(): tap removes that before the teardowns run). A test file that ends
 * without its teardowns (a timeout) still unmounts it, lazily, as it exits.
 */
export function mountTmpfs(size: string, name: string): Tmpfs {
  const dir = mkdtempSync(path.join(tmpdir(), `fleetcache-${name}-`));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  const forget = undoAtExit(() => {
    execFileSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  return {
    dir,
    unmount: () => {
      forget();
      execFileSync('umount', [dir]);
      rmdirSync(dir);
    },
  };
}
