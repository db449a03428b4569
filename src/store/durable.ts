// What a power loss cannot take back: file contents, and the directory entries (renames,
// new directories) that name them, synced before the caller goes on.
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

/** `mkdir -p` whose new directories outlive a power loss: each one's parent is synced. */
export async function mkdirDurable(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    await fsyncFile(dirname(d));
    if (d === first) return;
  }
}

/** Makes a file's content, or for a directory the renames in it, durable. */
export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
