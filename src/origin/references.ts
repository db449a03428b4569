// Keeps a prune (retention.ts) from deleting a blob that a write is about to name. A prune
// decides from the names on disk which blobs nothing names any more; a write in flight
// (an artifact stored by deduplication, a run manifest naming a delta uploaded a moment
// ago) may name one of them after the prune read its directory. Every write holds the
// digests it names from the moment it knows them until its record is written; a prune
// deletes no blob held, named by a write since it began, or uploaded in the last minutes
// (push uploads a delta to /cas, then a run manifest naming it). One origin process owns
// its data directory, so this state in memory is the whole truth of what happened since it
// started; what came before is not known, so every blob counts as recent for RECENT_MS
// after the last moment an earlier process may have taken an upload: its clean stop as it
// recorded it, else (a crash) this start.
import { FleetError } from '../errors.js';
import type { BlobStore } from '../store/blob-store.js';
import { parseDigestString } from '../store/digest.js';

/** A blob held this recently is not deleted: the name that follows its upload has time to come. */
export const RECENT_MS = 10 * 60_000;

export class BlobReferences {
  /** Digests ("algo:hex") writes in flight name, with how many of them do. */
  readonly #held = new Map<string, number>();
  /** While a prune runs: every digest a write named since it began. */
  #named: Set<string> | undefined;
  /** When each digest was last held (kept for RECENT_MS). */
  readonly #recent = new Map<string, number>();
  /**
   * Blob deletions of the running (or last) prune, and of the one before: a write that
   * found one stored before it went must know (the gap is short; two prunes are not).
   */
  #deleted = new Map<string, Promise<unknown>>();
  #deletedBefore = new Map<string, Promise<unknown>>();

  /** `unseenUntil`: until when uploads may have come that this process did not see. */
  constructor(readonly unseenUntil = Date.now()) {}

  /**
   * Marks `digests` as about to be named; call the result once the name is written (or not).
   * Then call `confirm`, which fails when a prune deleted the blob meanwhile.
   */
  hold(digests: readonly string[]): () => void {
    const now = Date.now();
    for (const d of digests) {
      this.#held.set(d, (this.#held.get(d) ?? 0) + 1);
      this.#named?.add(d);
      this.#recent.delete(d); // re-inserted last: the map stays ordered by time
      this.#recent.set(d, now);
    }
    return () => {
      for (const d of digests) {
        const n = (this.#held.get(d) ?? 1) - 1;
        if (n === 0) this.#held.delete(d);
        else this.#held.set(d, n);
      }
    };
  }

  /**
   * After `hold`: refuses (503, retryable) when a prune deleted one of `digests` after the
   * write found it stored (a deduplicated upload, a manifest's checked blob).
   */
  async confirm(store: BlobStore, digests: readonly string[]): Promise<void> {
    for (const d of digests) {
      const deletion = this.#deleted.get(d) ?? this.#deletedBefore.get(d);
      if (!deletion) continue;
      await deletion.catch(() => undefined);
      if (!(await store.has(parseDigestString(d)))) {
        throw new FleetError('FC_ERR_UNAVAILABLE', `${d} was deleted by the retention prune while this request named it; send it again`);
      }
    }
  }

  /** Whether a write holds `digest` now or may have held it in the RECENT_MS before `now`. */
  inUse(digest: string, now = Date.now()): boolean {
    const recentSince = now - RECENT_MS;
    return this.#held.has(digest) || this.unseenUntil > recentSince || (this.#recent.get(digest) ?? -Infinity) >= recentSince;
  }

  /** A prune begins (at `now`, its reference time): from now on every digest a write names is kept from deletion. */
  beginPrune(now = Date.now()): void {
    this.#named = new Set(this.#held.keys());
    this.#deletedBefore = this.#deleted;
    this.#deleted = new Map();
    const since = now - RECENT_MS;
    for (const [d, at] of this.#recent) {
      if (at >= since) break;
      this.#recent.delete(d);
    }
  }

  /**
   * Deletes `digest` with `remove` unless a write names it (held now, named since the prune
   * began, or in the last RECENT_MS); synchronous up to the start of the deletion, so no
   * write slips in between.
   * Resolves `deleted`, `absent` (`remove` found nothing: gone already) or `kept`.
   */
  deleteUnlessNamed(digest: string, remove: () => Promise<boolean>, now = Date.now()): Promise<'deleted' | 'absent' | 'kept'> {
    if (this.#named === undefined) throw new Error('deleteUnlessNamed outside a prune');
    if (this.#named.has(digest) || this.inUse(digest, now)) return Promise.resolve('kept');
    const deletion = remove();
    this.#deleted.set(digest, deletion);
    return deletion.then((deleted) => (deleted ? 'deleted' : 'absent'));
  }

  endPrune(): void {
    this.#named = undefined;
  }
}
