// tooltool's `purge -c DIR [-s GB]` (shared/tooltool.md §3.4): deletes the cache folder's
// files, oldest modification time first, until GB gigabytes (GiB, as tooltool counts) are
// free on its filesystem; without a size, or with 0, deletes them all. Only the folder's
// own files (a symlink judged by its target) are deleted: sub-directories are left alone.
import { readdir, stat, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { requireInput } from '../path-checks.js';
import { errorMessage } from '../errors.js';

export const GIGABYTE = 1024 ** 3;

interface PurgeOptions {
  readonly folder: string;
  /** Free space wanted, in gigabytes; 0 (the default): delete every file. */
  readonly gigabytes?: number;
  /** Free bytes on the folder's filesystem (statfs by default; tests may replace it). */
  readonly freeSpace?: (folder: string) => Promise<number>;
}

interface PurgedFile {
  readonly name: string;
  readonly size: number;
  readonly mtime: Date;
}

interface PurgeResult {
  readonly removed: readonly PurgedFile[];
  /** Files that could not be deleted, with why. */
  readonly failed: readonly { readonly name: string; readonly message: string }[];
  /** Bytes wanted free (0 for a full purge). */
  readonly wanted: number;
  /** Free bytes before and after (after: null for a full purge, which does not look). */
  readonly freeBefore: number | null;
  readonly freeAfter: number | null;
}

/** Free bytes for an unprivileged user on the filesystem of `path` (statvfs's f_bavail blocks). */
async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

export async function purgeCacheFolder(options: PurgeOptions): Promise<PurgeResult> {
  const { folder } = options;
  await requireInput(folder, 'directory', 'cache folder');
  const gigabytes = options.gigabytes ?? 0;
  const full = gigabytes === 0;
  const wanted = full ? 0 : gigabytes * GIGABYTE;
  const free = options.freeSpace ?? freeBytes;
  const freeBefore = full ? null : await free(folder);
  if (freeBefore !== null && freeBefore >= wanted) return { removed: [], failed: [], wanted, freeBefore, freeAfter: freeBefore };

  const files: PurgedFile[] = [];
  for (const name of await readdir(folder)) {
    const st = await stat(join(folder, name)).catch(() => undefined); // gone meanwhile, or a dangling link
    if (st?.isFile()) files.push({ name, size: st.size, mtime: st.mtime });
  }
  files.sort((a, b) => a.mtime.getTime() - b.mtime.getTime() || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const removed: PurgedFile[] = [];
  const failed: { name: string; message: string }[] = [];
  let freeAfter = freeBefore;
  for (const file of files) {
    try {
      await unlink(join(folder, file.name));
      removed.push(file);
    } catch (err) {
      // Deleted meanwhile (another purge, a fetch replacing a bad entry) is as good as deleted.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') failed.push({ name: file.name, message: errorMessage(err) });
    }
    if (!full) {
      freeAfter = await free(folder);
      if (freeAfter >= wanted) break;
    }
  }
  return { removed, failed, wanted, freeBefore, freeAfter };
}
