// Answering GET/HEAD for an immutable blob: strong ETag = digest, immutable caching,
// If-None-Match → 304, a single Range → 206 (416 when unsatisfiable), never encoded.
import { open } from 'node:fs/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FleetError, NotFoundError } from '../errors.js';
import type { BlobStore, ReadRange } from '../store/blob-store.js';
import { DiskBlobStore } from '../store/disk.js';
import { formatDigest, type Digest } from '../store/digest.js';
import type { TrafficLedger } from '../metrics/ledger.js';
import { parseRange } from './range.js';
import { sendFileRange } from './send-file.js';

export const IMMUTABLE_CACHE_CONTROL = 'public, max-age=31536000, immutable';

export function etagOf(d: Digest): string {
  return `"${formatDigest(d)}"`;
}

/** True when an If-None-Match header matches the ETag (weak comparison, as RFC 9110 says for 304). */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  const bare = etag.replace(/^W\//, '');
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === bare);
}

/**
 * If-Match and If-None-Match of a write (RFC 9110 §13.1.1, §13.1.2, evaluated in the order
 * of §13.2.2): throws FC_ERR_PRECONDITION_FAILED (412) when one is false. `etag` is the
 * current representation's, undefined when there is none.
 */
export function checkWritePreconditions(request: FastifyRequest, etag: string | undefined): void {
  const ifMatch = request.headers['if-match'];
  if (ifMatch !== undefined && !ifMatchHolds(ifMatch, etag)) {
    throw new FleetError('FC_ERR_PRECONDITION_FAILED', etag ? `If-Match: the current ETag is ${etag}` : 'If-Match: there is no current representation');
  }
  const ifNoneMatch = request.headers['if-none-match'];
  if (ifNoneMatch !== undefined && etag !== undefined && ifNoneMatchHits(ifNoneMatch, etag)) {
    throw new FleetError('FC_ERR_PRECONDITION_FAILED', `If-None-Match: the current ETag is ${etag}`);
  }
}

/** Strong comparison (§8.8.3.2): a weak tag never matches. */
function ifMatchHolds(header: string, etag: string | undefined): boolean {
  if (etag === undefined) return false;
  if (header.trim() === '*') return true;
  return !etag.startsWith('W/') && header.split(',').some((t) => t.trim() === etag);
}

export interface BlobReplyOptions {
  readonly kind: string;
  readonly ledger: TrafficLedger;
  readonly cacheControl?: string;
  readonly contentType?: string;
  readonly extraHeaders?: Record<string, string>;
}

export async function replyWithBlob(
  request: FastifyRequest,
  reply: FastifyReply,
  store: BlobStore,
  digest: Digest,
  opts: BlobReplyOptions,
): Promise<FastifyReply> {
  const st = await store.stat(digest);
  const etag = etagOf(digest);
  reply
    .header('etag', etag)
    .header('cache-control', opts.cacheControl ?? IMMUTABLE_CACHE_CONTROL)
    .header('accept-ranges', 'bytes')
    .header('x-fleetcache-digest', formatDigest(digest))
    .header('last-modified', new Date(st.mtimeMs).toUTCString())
    .type(opts.contentType ?? 'application/octet-stream');
  if (opts.extraHeaders) reply.headers(opts.extraHeaders);
  if (ifNoneMatchHits(request.headers['if-none-match'], etag)) return reply.code(304).send();
  const ifRange = request.headers['if-range'];
  let range: ReadRange | undefined;
  try {
    range = ifRange && ifRange !== etag ? undefined : parseRange(request.headers.range, st.size);
  } catch (err) {
    // The 416 says how long the object is (RFC 9110 §14.4), so that a client can ask again.
    reply.header('content-range', `bytes */${st.size}`);
    throw err;
  }
  const length = range ? range.end - range.start + 1 : st.size;
  if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${st.size}`);
  reply.header('content-length', length);
  if (request.method === 'HEAD') return reply.send();
  if (store instanceof DiskBlobStore && length > 0) {
    // Local files go out through recycled buffers (see send-file.ts), not a read stream.
    const file = await open(store.pathOf(digest), 'r').catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT' ? new NotFoundError(`no object ${digest.algo}:${digest.hex}`) : err;
    });
    await sendFileRange(reply, file, range?.start ?? 0, length, (n) => opts.ledger.bytesOut(opts.kind, n));
    return reply;
  }
  const body = await store.createReadStream(digest, range);
  body.on('data', (chunk: Buffer) => opts.ledger.bytesOut(opts.kind, chunk.length));
  return reply.send(body);
}
