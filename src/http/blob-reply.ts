// Answering GET/HEAD for an immutable blob: strong ETag = digest, immutable caching,
// If-None-Match → 304, a single Range → 206 (416 when unsatisfiable), never encoded.
import { open } from 'node:fs/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { NotFoundError } from '../errors.js';
import type { BlobStore } from '../store/blob-store.js';
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
  const range = ifRange && ifRange !== etag ? undefined : parseRange(request.headers.range, st.size);
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
