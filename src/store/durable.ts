// What a power loss cannot take back: file contents, and the directory entries (renames,
// new directories) that name them, synced before the caller goes on.
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Syncs in progress of the parents of directories this process made, by directory made.
 * Another caller that finds such a directory already there waits for its sync too: else it
 * could link a blob into a new shard and answer while the shard itself may still vanish.
 */
const parentSyncs = new Map<string, Promise<void>>();
/** mkdirs one at a time, so that each one's new directories are in parentSyncs before the next looks. */
let mkdirTurn: Promise<unknown> = Promise.resolve();

/** `mkdir -p` whose directories, new or made a moment ago by another caller, outlive a power loss. */
export async function mkdirDurable(dir: string): Promise<void> {
  const made = mkdirTurn.then(() => mkdirSyncingParents(dir));
  mkdirTurn = made.catch(() => undefined);
  await made;
  const pending: Promise<void>[] = [];
  for (let d = dir; ; d = dirname(d)) {
    const sync = parentSyncs.get(d);
    if (sync) pending.push(sync);
    if (dirname(d) === d) break;
  }
  await Promise.all(pending);
}

/** Makes `dir` and starts syncing the parent of each directory made, recorded in parentSyncs until done. */
async function mkdirSyncingParents(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  const made: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    made.push(d);
    if (d === first) break;
  }
  const sync = (async () => {
    for (const d of made) await fsyncFile(dirname(d));
  })();
  for (const d of made) parentSyncs.set(d, sync);
  const forget = () => {
    for (const d of made) if (parentSyncs.get(d) === sync) parentSyncs.delete(d);
  };
  sync.then(forget, forget);
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

/** fsyncFile for the few callers that must stay synchronous (create-once.ts: read at start-up). */
export function fsyncFileSync(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
