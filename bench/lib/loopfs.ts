// A fresh ext4 filesystem in a sparse image file, loop-mounted for one bench run (needs
// root). Both caches under test keep their data on it, as on a dedicated cache disk: the
// root filesystem of the bench machines is ext4 without a journal, where creating a file
// soon after many deletions scans the recently freed inodes and costs up to 600 µs.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { undoAtExit } from '../../test/helpers/processes.js';

interface LoopFs {
  readonly dir: string;
  unmount(): Promise<void>;
}

/** Mounts a new ext4 of `sizeGiB` at `<parent>/mnt`, or resolves to undefined when this process cannot. */
export async function mountLoopExt4(parent: string, sizeGiB: number): Promise<LoopFs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const image = join(parent, 'fs.img');
  const dir = join(parent, 'mnt');
  try {
    execFileSync('truncate', ['-s', `${sizeGiB}G`, image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    await mkdir(dir, { recursive: true });
    execFileSync('mount', ['-o', 'loop', image, dir]);
  } catch (err) {
    process.stderr.write(`no loop-mounted ext4 (${(err as Error).message.split('\n')[0]}): data on ${parent}\n`);
    await rm(image, { force: true });
    return undefined;
  }
  // An interrupted bench (Ctrl-C) unmounts too: lazily, as its servers may still hold files.
  const forget = undoAtExit(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(image, { force: true });
  });
  return {
    dir,
    unmount: async () => {
      forget();
      execFileSync('umount', [dir]);
      await rm(image, { force: true });
    },
  };
}
