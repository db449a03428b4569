// Blob transfers for push and pull: downloads that hash while streaming to a file and refuse
// a digest or size mismatch (the file is removed).
import { createGunzip } from 'node:zlib';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { answerOf, DigestMismatchError, failedRequest, FleetError, SizeMismatchError, type ErrorCode } from '../errors.js';
import { httpGet, joinUrl, type RequestOptions } from '../client/http.js';
import { casPath, parseDigestString } from '../store/digest.js';
import { hashingTap } from '../store/hashing.js';
import { writeAtomically } from './atomic-file.js';
import { redactUrl } from '../redact-url.js';

/**
 * How many times a tar its base may inflate to when nothing states the base's plain size (a
 * run manifest of an older push; a push's candidate bases, whose records at the origin hold
 * only their blob): push passes over a base whose gzip is more than twice the run's
 * (MAX_BASE_GROWTH), so a real one is within a few times; a gzip bomb inflates a thousand
 * times its blob.
 */
export const UNSTATED_BASE_GROWTH = 8;

/**
 * With gunzip, the most bytes the plain content may take: a small blob that inflates without
 * end (a gzip bomb) is refused there, with `code`, instead of filling the disk. `what` says
 * where the bound comes from, for the message.
 */
export interface PlainBound {
  readonly bytes: number;
  readonly code: ErrorCode;
  readonly what: string;
}

interface Downloaded {
  /** Bytes received (the blob's size). */
  readonly received: number;
  /** Digest and size of what was written to the file: the blob, or with gunzip the plain bytes. */
  readonly written: { readonly digest: string; readonly size: number };
}

/**
 * Downloads /cas/sha256/<hex> from `baseUrl` (a cache or the origin) into `file`, verifying
 * digest and size on the way. Nothing is left at `file` unless it verified.
 */
export async function downloadBlob(baseUrl: string, digest: string, size: number, file: string, options: RequestOptions & { gunzip?: boolean; plainBound?: PlainBound; label?: string } = {}): Promise<Downloaded> {
  const url = joinUrl(baseUrl, casPath(parseDigestString(digest)));
  // each failure of the bytes names the request: which cache, or the origin, sent them
  const request = failedRequest('GET', url);
  // a unique name per download: pushes sharing a base cache may fetch the same base at once,
  // and each renames its own verified copy into place (the last one wins, same bytes)
  return writeAtomically(file, async (partial) => {
    const res = await httpGet(url, options);
    // more bytes than the blob has (a cache serving another object) are refused as they come,
    // not once they filled the disk: the next URL may then serve the pull
    const { tap, result } = hashingTap(options.progress?.(options.label ?? digest, size), size);
    const plain = hashingTap(undefined, options.plainBound?.bytes);
    // The digest and size are those of the bytes sent; a gzip blob (a base) is stored unpacked.
    if (options.gunzip) {
      await pipeline(res.body, tap, createGunzip(), plain.tap, createWriteStream(partial)).catch((err: NodeJS.ErrnoException) => {
        // corrupt compressed bytes fail before the digest is known: the same integrity error
        if (err.code?.startsWith('Z_')) throw new FleetError('FC_ERR_DIGEST_MISMATCH', `${redactUrl(url)}: corrupt gzip data (${err.message})`, { cause: err, request });
        // the plain tap's bound, not the blob's (whose tap has then counted past `size`)
        const bound = options.plainBound;
        if (bound && err instanceof SizeMismatchError && result().size <= size) {
          throw new FleetError(bound.code, `${options.label ?? digest} ${redactUrl(url)}: its gzip inflates past ${bound.bytes} bytes, ${bound.what} (a gzip bomb?); refused, nothing kept`, { cause: err, details: { expected: bound.bytes, actual: err.actual }, request });
        }
        throw answerOf(err, request);
      });
    } else {
      await pipeline(res.body, tap, createWriteStream(partial)).catch((err: unknown) => {
        throw answerOf(err, request);
      });
    }
    const got = result();
    if (got.size !== size) throw new SizeMismatchError(size, got.size, request);
    if (got.digest !== digest) throw new DigestMismatchError(digest, got.digest, request);
    return { received: got.size, written: options.gunzip ? plain.result() : got };
  });
}

