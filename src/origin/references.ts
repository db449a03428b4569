// Keeps a prune (retention.ts) from deleting a blob that a write is about to name. A prune
// decides from the names on disk which blobs nothing names any more; a write in flight
// (an artifact stored by deduplication, a run manifest naming a delta uploaded a moment
// ago) may name one of them after the prune read its directory. Every write holds the
// digests it names from the moment it knows them until its record is written; a prune
// deletes no blob held or named by a write since it began. One origin process owns its
// data directory, so this state in memory is the whole truth.
import { FleetError } from '../errors.js';
import type { BlobStore } from '../store/blob-store.js';
import { parseDigestString } from '../store/digest.js';

export class BlobReferences {
  /** Digests ("algo:hex") writes in flight name, with how many of them do. */
  readonly #held = new Map<string, number>();
  /** While a prune runs: every digest a write named since it began. */
  #named: Set<string> | undefined;
  /** Blob deletions of the running (or last) prune: a write that deduplicated against one must know. */
  #deleted = new Map<string, Promise<unknown>>();

  /**
   * Marks `digests` as about to be named; call the result once the name is written (or not).
   * Then call `confirm`, which fails when a prune deleted the blob meanwhile.
   */
  hold(digests: readonly string[]): () => void {
    for (const d of digests) {
      this.#held.set(d, (this.#held.get(d) ?? 0) + 1);
      this.#named?.add(d);
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
      const deletion = this.#deleted.get(d);
      if (!deletion) continue;
      await deletion.catch(() => undefined);
      if (!(await store.has(parseDigestString(d)))) {
        throw new FleetError('FC_ERR_UNAVAILABLE', `${d} was deleted by the retention prune while this request named it; send it again`);
      }
    }
  }

  /** A prune begins: from now on every digest a write names is kept from deletion. */
  beginPrune(): void {
    this.#named = new Set(this.#held.keys());
    this.#deleted = new Map();
  }

  /**
   * Deletes `digest` with `remove` unless a write names it (held now, or named since the
   * prune began); synchronous up to the start of the deletion, so no write slips in between.
   * Resolves whether it was deleted.
   */
  deleteUnlessNamed(digest: string, remove: () => Promise<boolean>): Promise<boolean> {
    if (this.#named === undefined) throw new Error('deleteUnlessNamed outside a prune');
    if (this.#named.has(digest) || this.#held.has(digest)) return Promise.resolve(false);
    const deletion = remove();
    this.#deleted.set(digest, deletion);
    return deletion;
  }

  endPrune(): void {
    this.#named = undefined;
  }
}
