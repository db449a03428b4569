// Paths below a root that must never lead out of it: a lexical check, and a walk that
// looks at every component with lstat so nothing is created or written through a symlink.
// realpath checks are not enough: they run after `mkdir -p` has already followed a link,
// and a link that dangles when checked can resolve outside once a later entry exists.
// Shared by the project unpacker (pack/unpack.ts), the asset unpacker (assets/unpack.ts)
// and the artifact download (artifacts/download.ts).
import { lstat, mkdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';

/** True when `path` is `root` or below it, by the names alone (no symlink resolved). */
export function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/** lstat that answers undefined for a missing path instead of throwing. */
export async function lstatOrMissing(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

interface WalkOptions {
  /** Create missing directories (one component at a time); else the walk ends at the first missing one. */
  readonly create: boolean;
  /** The error to throw for a component that is a symlink or not a directory. */
  readonly refuse: (why: string) => Error;
}

/**
 * Walks `parts` below `root` (a real directory: symlinks in it already resolved), checking
 * each component with lstat: it must be a real directory, never a symlink (even one that
 * points inside) nor a file. Returns the directories it created, outermost first.
 */
export async function walkDirs(root: string, parts: readonly string[], options: WalkOptions): Promise<string[]> {
  const created: string[] = [];
  let path = root;
  for (let i = 0; i < parts.length; i++) {
    path = join(path, parts[i]!);
    let st = await lstatOrMissing(path);
    if (st === undefined) {
      if (!options.create) return created;
      try {
        await mkdir(path); // not recursive: the parent was just checked
        created.push(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      st = await lstat(path); // whatever is there now, created by us or not, is checked
    }
    const shown = parts.slice(0, i + 1).join('/');
    if (st.isSymbolicLink()) throw options.refuse(`${shown} is a symlink`);
    if (!st.isDirectory()) throw options.refuse(`${shown} is not a directory`);
  }
  return created;
}
