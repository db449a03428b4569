// The local base cache of push (and of the runner, under its data directory): the plain tar
// of each base a push made or fetched, named by the base's blob digest (`<hex>.tar`), with the
// sha256 of the tar itself beside it (`<hex>.tar.sha256`), so that the slow link is crossed
// once per base. Projects share it. It is bounded in bytes: each use of a tar sets its mtime,
// and a push ends by removing the least recently used tars past the bound, never one that
// push used nor one used in the last RECENT_USE_MS (another push may be about to open it:
// once open, a removed tar still reads whole). Only the cache's own names are touched: the
// directory may be any directory a user names.
import { lstat, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes } from '../config/units.js';
import { parseDigestString } from '../store/digest.js';
import { writeAtomically } from './atomic-file.js';

/** The default bound of a base cache (as --base-cache-size takes it): a few bases of a few large projects. */
export const DEFAULT_BASE_CACHE_SIZE = '10GiB';

/** A tar used this recently is kept past the bound: a concurrent push may be using it. */
const RECENT_USE_MS = 10 * 60_000;
/** A temporary file older than this was left by a process that died (a write updates the mtime). */
const STALE_PARTIAL_MS = 24 * 3600_000;

/**
 * What a name of the cache's own is: a tar by its blob's hex digest, its recorded digest, or
 * a temporary file of either (tempNameFor); undefined for any other name.
 */
function ownName(name: string): 'tar' | 'digest' | 'temp' | undefined {
  const m = /^(?:[0-9a-f]{64}|[0-9a-f]{128})\.tar(\.sha256)?(\.[0-9a-f]{12}\.partial)?$/.exec(name);
  return !m ? undefined : m[2] ? 'temp' : m[1] ? 'digest' : 'tar';
}

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
 * take at most `maxBytes`: from the first one, newest first, that does not fit, every older
 * one goes. The paths in `keep`, and tars used in the last RECENT_USE_MS, stay whatever their
 * size. Temporary files a dead process left, and digests long without their tar, are removed
 * too. Only regular files of the cache's own names are looked at (a symlink is not followed).
 * Best effort: what cannot be removed is left (the next push tries again), and no failure
 * reaches the caller.
 */
export async function pruneBaseCache(baseCache: string, maxBytes: number, keep: ReadonlySet<string>): Promise<PruneResult> {
  const names = new Set(await readdir(baseCache).catch(() => [] as string[]));
  const tars: Array<{ path: string; size: number; used: number }> = [];
  const leftovers: string[] = [];
  const now = Date.now();
  for (const name of names) {
    const own = ownName(name);
    const path = join(baseCache, name);
    const st = own ? await lstat(path).catch(() => undefined) : undefined;
    if (!st?.isFile()) continue;
    const age = now - st.mtimeMs;
    if (own === 'tar') tars.push({ path, size: st.size, used: st.mtimeMs });
    else if (own === 'temp' && age > STALE_PARTIAL_MS) leftovers.push(path);
    else if (own === 'digest' && age > RECENT_USE_MS && !names.has(name.slice(0, -'.sha256'.length))) leftovers.push(path);
  }
  const kept = (tar: { path: string; used: number }): boolean => keep.has(tar.path) || now - tar.used < RECENT_USE_MS;
  let total = tars.filter(kept).reduce((sum, tar) => sum + tar.size, 0);
  let full = false;
  let removed = 0;
  let freedBytes = 0;
  for (const tar of tars.sort((a, b) => b.used - a.used)) {
    if (kept(tar)) continue;
    if (!full && total + tar.size <= maxBytes) {
      total += tar.size;
      continue;
    }
    full = true;
    try {
      await rm(tar.path);
    } catch {
      continue; // removed by another push meanwhile
    }
    removed++;
    freedBytes += tar.size;
    await rm(cachedDigestPath(tar.path), { force: true }).catch(() => undefined);
  }
  await Promise.all(leftovers.map((path) => rm(path, { force: true }).catch(() => undefined)));
  return { removed, freedBytes, maxBytes };
}
