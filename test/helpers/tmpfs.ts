// A small tmpfs mounted by a test (needs root): a real filesystem that fills up.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmdirSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { undoAtExit } from './processes.js';

interface Tmpfs {
  readonly dir: string;
  /**
   * Unmounts and removes the mount point; the test's teardown calls it once nothing uses it.
   * A file a closed server still closes (its last answer's descriptor) is waited for, up to
   * 5 s; one still open then is named in the error, and the tmpfs is unmounted lazily so
   * that nothing waits on it.
   */
  unmount(): Promise<void>;
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
    unmount: async () => {
      forget();
      for (let waited = 0; ; waited += 100) {
        try {
          execFileSync('umount', [dir], { stdio: 'pipe' });
          break;
        } catch (err) {
          if (waited < 5000 && /busy/.test(String((err as { stderr?: Buffer }).stderr))) {
            await new Promise((r) => setTimeout(r, 100));
            continue;
          }
          const holders = openBelow(dir);
          execFileSync('umount', ['-l', dir]);
          throw new Error(`${dir} still in use after ${waited} ms (${holders.join(', ') || 'by no process of this test'}): ${(err as Error).message}`);
        }
      }
      rmdirSync(dir);
    },
  };
}

/** The descriptors of this process that are open below `dir`, as "fd N: path". */
function openBelow(dir: string): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return target.startsWith(`${dir}/`) ? [`fd ${fd}: ${target}`] : [];
    } catch {
      return []; // closed meanwhile
    }
  });
}

/**
 * Takes the rest of the filesystem of `file`, to its last page, with that file (what the
 * blobs of a busy server end up doing); removing it makes the room again.
 */
export function fillDisk(file: string): void {
  const filler = openSync(file, 'w');
  try {
    for (const chunk of [Buffer.alloc(64 * 1024), Buffer.alloc(1024), Buffer.alloc(1)]) {
      try { for (;;) writeSync(filler, chunk); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err; }
    }
  } finally {
    closeSync(filler);
  }
}
