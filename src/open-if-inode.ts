import { open, type FileHandle } from 'node:fs/promises';

/**
 * Opens `path` with `flags` when the file there is inode `ino`, or returns undefined, nothing
 * left open, when it is another (or cannot be looked at). For a file opened again by a name
 * that can name another file by then: a fill's claim beside its entry is the name of every
 * fill of its key in turn. A failing open is the caller's.
 */
export async function openIfInode(path: string, flags: string, ino: number): Promise<FileHandle | undefined> {
  const fh = await open(path, flags);
  const found = await fh.stat().then((st) => st.ino, () => undefined);
  if (found === ino) return fh;
  await fh.close().catch(() => undefined);
  return undefined;
}
