// Which candidate bases the regions' caches already hold. A base a region's cache lacks is
// fetched whole (its compressed size) across that region's slow link by the run's first
// machine there, where a delta is a few hundred bytes to a few hundred KB: push weighs that
// (push.ts, the candidates' ranking).
import { httpHead, joinUrl } from '../client/http.js';
import { casPath, parseDigestString } from '../store/digest.js';

/** How long a cache may take to accept the probe's connection and to answer it. */
const PROBE_TIMEOUT_MS = 2_000;

interface HeldBlob {
  readonly digest: string;
  /** Its size in bytes: a copy of another size is not the blob. */
  readonly size: number;
}

/**
 * Whether the cache at `cache` holds `blob`: a HEAD of it with `Cache-Control:
 * only-if-cached`, which a cache answers from what it stores (200) or with a 504, never
 * asking upstream. A cache that does not answer in time, or answers anything else, counts
 * as not holding it: its machines would fetch the base from further away, across a slow
 * link all the same, and a push is not held up by a cache that is down.
 */
async function holds(cache: string, blob: HeldBlob, signal: AbortSignal | undefined): Promise<boolean> {
  const timeout = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  const head = await httpHead(joinUrl(cache, casPath(parseDigestString(blob.digest))), {
    headers: { 'cache-control': 'only-if-cached' },
    connectTimeout: PROBE_TIMEOUT_MS,
    idleTimeout: PROBE_TIMEOUT_MS,
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  }).catch(() => undefined);
  return head !== undefined && Number(head['content-length']) === blob.size;
}

/**
 * For each of `blobs`, how many of `caches` (one per region) do not hold it; all asked at
 * once. No credentials go with the probes: a cache answers what it stores to anyone, and a
 * write token has no business at a cache.
 */
export async function cachesLacking(caches: readonly string[], blobs: readonly HeldBlob[], signal?: AbortSignal): Promise<number[]> {
  const held = await Promise.all(blobs.map((blob) => Promise.all(caches.map((cache) => holds(cache, blob, signal)))));
  signal?.throwIfAborted(); // an interrupted push, not caches that lack everything
  return held.map((answers) => answers.filter((h) => !h).length);
}
