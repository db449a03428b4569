// What every BlobStore.put does to the bytes on their way to storage: count them against
// the limits, hash them, and at the end verify size and digest before anything is visible.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { DigestMismatchError, FleetError, SizeMismatchError } from '../errors.js';
import type { PutOptions } from './blob-store.js';
import { sameDigest, type Digest, type DigestAlgorithm } from './digest.js';

interface PutMeter {
  /** Pipe the body through this before writing it anywhere. */
  readonly meter: Transform;
  /** After the body ended: the digest and size, or a size/digest mismatch error. */
  verify(): { digest: Digest; size: number };
}

export function putMeter(options: PutOptions): PutMeter {
  const algo: DigestAlgorithm = options.expected?.algo ?? options.algo ?? 'sha256';
  const hash = createHash(algo);
  let size = 0;
  const limit = options.maxSize ?? Infinity;
  const expectedSize = options.expectedSize;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > limit) return done(new FleetError('FC_ERR_TOO_LARGE', `body exceeds the limit of ${limit} bytes`));
      if (expectedSize !== undefined && size > expectedSize) return done(new SizeMismatchError(expectedSize, size));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  return {
    meter,
    verify() {
      if (expectedSize !== undefined && size !== expectedSize) throw new SizeMismatchError(expectedSize, size);
      const digest: Digest = { algo, hex: hash.digest('hex') };
      if (options.expected && !sameDigest(options.expected, digest)) {
        throw new DigestMismatchError(`${options.expected.algo}:${options.expected.hex}`, `${algo}:${digest.hex}`);
      }
      return { digest, size };
    },
  };
}
