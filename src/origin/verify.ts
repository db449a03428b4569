// Scrubbing the origin's store: every blob is hashed again and compared with the digest it is
// stored under. A blob damaged on disk (bit rot, a restore gone wrong) is otherwise found only
// when a cache refuses it (a 502 on every fill) or a machine's download fails its check. With
// `remove`, a damaged blob is deleted, so that the next upload of that content stores it again
// (an upload of a digest the store has is skipped, see assets/upload.ts and push).
import { createHash } from 'node:crypto';
import type { BlobStore } from '../store/blob-store.js';
import { formatDigest } from '../store/digest.js';
import { errorMessage, NotFoundError } from '../errors.js';

interface DamagedBlob {
  /** "algo:hex", the digest it is stored under. */
  readonly digest: string;
  readonly size: number;
  /** The digest of what is stored ("algo:hex"), or the read error. */
  readonly found: string;
  readonly removed: boolean;
}

interface VerifyResult {
  readonly checked: number;
  readonly bytes: number;
  readonly damaged: readonly DamagedBlob[];
  /** Blobs listed but deleted before their read (retention of a live origin): not checked. */
  readonly gone: number;
}

interface VerifyOptions {
  readonly remove?: boolean;
  /** Told each damaged blob as it is found. */
  readonly onDamaged?: (blob: DamagedBlob) => void;
}

export async function verifyStore(store: BlobStore, options: VerifyOptions = {}): Promise<VerifyResult> {
  let checked = 0;
  let bytes = 0;
  let gone = 0;
  const damaged: DamagedBlob[] = [];
  for await (const blob of store.list()) {
    const hash = createHash(blob.digest.algo);
    let found: string;
    // Only a blob read whole that hashes to another digest is damaged for sure: a read that
    // failed (S3 throttling, a body cut short, a time-out) says nothing of the bytes stored.
    let readWhole = false;
    try {
      let read = 0;
      for await (const chunk of await store.createReadStream(blob.digest)) {
        hash.update(chunk as Buffer);
        read += (chunk as Buffer).length;
      }
      readWhole = read === blob.size;
      found = readWhole ? formatDigest({ algo: blob.digest.algo, hex: hash.digest('hex') }) : `unreadable: read ${read} of ${blob.size} bytes`;
    } catch (err) {
      if (err instanceof NotFoundError) {
        gone++;
        continue;
      }
      found = `unreadable: ${errorMessage(err)}`;
    }
    checked++;
    bytes += blob.size;
    const digest = formatDigest(blob.digest);
    if (found === digest) continue;
    const removed = options.remove === true && readWhole && (await store.delete(blob.digest));
    const entry = { digest, size: blob.size, found, removed };
    damaged.push(entry);
    options.onDamaged?.(entry);
  }
  return { checked, bytes, damaged, gone };
}
