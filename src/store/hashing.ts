// Hashing what streams through, without holding it: used wherever bytes are written
// and their digest must be known at the end (packing, downloads, uploads).
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';

/** A Transform that hashes (sha256) and counts what passes through. */
export function hashingTap(): { tap: Transform; result: () => { digest: string; size: number } } {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  return { tap, result: () => ({ digest: `sha256:${hash.digest('hex')}`, size }) };
}
