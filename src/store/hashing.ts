// Hashing what streams through, without holding it: used wherever bytes are written
// and their digest must be known at the end (packing, downloads, uploads).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SizeMismatchError } from '../errors.js';

/** A Transform that hashes (sha256) and counts what passes through; more than `atMost` bytes fail it (SizeMismatchError) as they come. */
export function hashingTap(tick?: (bytes: number) => void, atMost = Infinity): { tap: Transform; result: () => { digest: string; size: number } } {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > atMost) return cb(new SizeMismatchError(atMost, size));
      hash.update(chunk);
      tick?.(chunk.length);
      cb(null, chunk);
    },
  });
  return { tap, result: () => ({ digest: `sha256:${hash.digest('hex')}`, size }) };
}

/** The sha256 digest ("sha256:<hex>") and size of a file, read as a stream. */
export async function sha256File(file: string): Promise<{ digest: string; size: number }> {
  const { tap, result } = hashingTap();
  await pipeline(createReadStream(file), tap, async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) void chunk;
  });
  return result();
}
