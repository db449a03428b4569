// What the origin's route groups share: storage, accounting, auth and limits.
import type { FastifyRequest } from 'fastify';
import type { TokenCheck } from '../http/auth.js';
import type { TrafficLedger } from '../metrics/ledger.js';
import type { BlobStore } from '../store/blob-store.js';
import type { NameStore } from '../store/names.js';
import { FleetError } from '../errors.js';
import { formatDigest, type Digest } from '../store/digest.js';

export interface OriginContext {
  readonly store: BlobStore;
  readonly names: NameStore;
  readonly ledger: TrafficLedger;
  readonly auth: TokenCheck;
  readonly readAccess: 'public' | 'token';
  readonly maxBlobSize: number;
  readonly maxRecordSize: number;
  /** Digests ("algo:hex") uploaded with visibility internal: reads need a token. */
  readonly internal: Set<string>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Kind of route for accounting: cas, tooltool, artifacts, projects, ops. */
    kind?: string;
  }
}

/** Refuses a read that needs a token. Internal blobs answer 403 without one, as tooltool does. */
export function checkRead(ctx: OriginContext, request: FastifyRequest, digest?: Digest): void {
  const internal = digest !== undefined && ctx.internal.has(formatDigest(digest));
  if (!internal && ctx.readAccess === 'public') return;
  if (!ctx.auth.accepts(request)) {
    throw new FleetError('FC_ERR_FORBIDDEN', internal ? 'this asset is internal: a bearer token is required' : 'reads need a bearer token');
  }
}

/**
 * Cache-Control of a blob's answers (and of the PUT that stored it, which tells a cache in
 * between whether it may keep what it forwarded): `private` when reading it needs a token
 * (internal, or readAccess: token), so that no shared cache serves it to a client without one.
 */
export function blobCacheControl(ctx: OriginContext, digest: Digest): string {
  const restricted = ctx.readAccess === 'token' || ctx.internal.has(formatDigest(digest));
  return `${restricted ? 'private' : 'public'}, max-age=31536000, immutable`;
}

/**
 * Cache-Control of a name's answers: revalidated on every use; `private` when reads need a
 * token (readAccess: token, or `digest`, the blob it names, is internal).
 */
export function nameCacheControl(ctx: OriginContext, digest?: Digest): string {
  const restricted = ctx.readAccess === 'token' || (digest !== undefined && ctx.internal.has(formatDigest(digest)));
  return `${restricted ? 'private' : 'public'}, no-cache`;
}

/** Refuses an upload whose declared length is already over the limit, before reading it. */
export function checkDeclaredLength(request: FastifyRequest, limit: number): void {
  const declared = Number(request.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    throw new FleetError('FC_ERR_TOO_LARGE', `body of ${declared} bytes exceeds the limit of ${limit} bytes`);
  }
}
