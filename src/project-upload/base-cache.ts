// The local base cache of push (and of the runner, under its data directory): the plain tar
// of each base a push made or fetched, named by the base's blob digest (`<hex>.tar`), with the
// sha256 of the tar itself beside it (`<hex>.tar.sha256`), so that the slow link is crossed
// once per base. Projects share it. It is bounded in bytes: each use of a tar sets its mtime,
// and a push ends by removing the least recently used tars past the bound, never one that
// push used. A concurrent push that loses its tar that way fetches it again.
import { readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes } from '../config/units.js';
import { parseDigestString } from '../store/digest.js';
import { writeAtomically } from './atomic-file.js';

/** The default bound of a base cache: a few bases of a few large projects. */
export const DEFAULT_BASE_CACHE_SIZE = 10 * 1024 ** 3;

/** A temporary file older than this was left by a process that died (a write updates the mtime). */
const STALE_PARTIAL_MS = 24 * 3600_000;

export function baseCachePath(baseCache: string, digest: string): string {
  return join(baseCache, `${parseDigestString(digest).hex}.tar`);
}

/** Beside each cached tar, the sha256 of the tar itself (the cache is named by the gzip blob). */
function cachedDigestPath(local: string): string {
  return `${local}.sha256`;
}

/** The digest the cached tar must have; undefined when the tar or its digest is missing. */
export async function cachedDigest(local: string): Promise<string | undefined> {
  try {
    const text = (await readFile(cachedDigestPath(local), 'utf8')).trim();
    if (!/^sha256:[0-9a-f]{64}$/.test(text)) return undefined;
    await stat(local);
    return text;
  } catch {
    return undefined;
  }
}

/** Records beside the cached tar `local` the digest it must have. */
export async function recordCachedDigest(local: string, digest: string): Promise<void> {
  await writeAtomically(cachedDigestPath(local), (tmp) => writeFile(tmp, `${digest}\n`));
}

/** Marks the cached tar `local` as just used (its mtime), which keeps it longest from pruning. */
export async function markUsed(local: string): Promise<void> {
  const now = new Date();
  await utimes(local, now, now).catch(() => undefined); // gone meanwhile: fetched again when needed
}

export interface PruneResult {
  readonly removed: number;
  readonly freedBytes: number;
  readonly maxBytes: number;
}

/** What a prune did, as push and run tell it. */
export function prunedLine(pruned: PruneResult, baseCache: string): string {
  const bases = pruned.removed === 1 ? 'base' : 'bases';
  return `removed ${pruned.removed} least recently used ${bases} (${formatBytes(pruned.freedBytes)}) from the base cache ${baseCache}, bound ${formatBytes(pruned.maxBytes)}`;
}

/**
 * Removes the least recently used tars of `baseCache` (and their digests) until the tars left
 * take at most `maxBytes`; the paths in `keep` stay whatever their size. Temporary files a
 * dead process left, and digests whose tar is gone, are removed too. Best effort: what cannot
 * be removed is left (the next push tries again), and no failure reaches the caller.
 */
export async function pruneBaseCache(baseCache: string, maxBytes: number, keep: ReadonlySet<string>): Promise<PruneResult> {
  const names = new Set(await readdir(baseCache).catch(() => [] as string[]));
  const tars: Array<{ path: string; size: number; used: number }> = [];
  const leftovers: string[] = [];
  const now = Date.now();
  for (const name of names) {
    const path = join(baseCache, name);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) continue;
    if (/^[0-9a-f]+\.tar$/.test(name)) tars.push({ path, size: st.size, used: st.mtimeMs });
    else if (name.endsWith('.partial') && now - st.mtimeMs > STALE_PARTIAL_MS) leftovers.push(path);
    else if (name.endsWith('.tar.sha256') && !names.has(name.slice(0, -'.sha256'.length))) leftovers.push(path);
  }
  let total = tars.filter((tar) => keep.has(tar.path)).reduce((sum, tar) => sum + tar.size, 0);
  let removed = 0;
  let freedBytes = 0;
  for (const tar of tars.sort((a, b) => b.used - a.used)) {
    if (keep.has(tar.path)) continue;
    if (total + tar.size <= maxBytes) {
      total += tar.size;
      continue;
    }
    try {
      await rm(tar.path);
      await rm(cachedDigestPath(tar.path), { force: true });
      removed++;
      freedBytes += tar.size;
    } catch {
      // removed by another push meanwhile, or not ours to remove
    }
  }
  await Promise.all(leftovers.map((path) => rm(path, { force: true }).catch(() => undefined)));
  return { removed, freedBytes, maxBytes };
}
