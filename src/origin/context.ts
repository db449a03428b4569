// What the origin's route groups share: storage, accounting, auth and limits.
import type { FastifyRequest } from 'fastify';
import { bearerToken, type TokenCheck } from '../http/auth.js';
import type { TrafficLedger } from '../metrics/ledger.js';
import type { BlobStore } from '../store/blob-store.js';
import type { NameStore } from '../store/names.js';
import { FleetError } from '../errors.js';
import { formatDigest, type Digest } from '../store/digest.js';
import type { NamingMarks } from './naming-marks.js';
import type { BlobReferences } from './references.js';
import type { RunArtifactBudget } from './run-budget.js';

export interface OriginContext {
  readonly store: BlobStore;
  readonly names: NameStore;
  readonly ledger: TrafficLedger;
  readonly auth: TokenCheck;
  readonly readAccess: 'public' | 'token';
  readonly maxBlobSize: number;
  readonly maxRecordSize: number;
  /** What the machines of a run may still upload with its run token. */
  readonly runBudget: RunArtifactBudget;
  /** Digests ("algo:hex") uploaded with visibility internal: reads need a token. */
  readonly internal: Set<string>;
  /** The blobs writes in flight are naming, which a retention prune must not delete. */
  readonly references: BlobReferences;
  /** The blobs named uploads are storing, written down until named (naming-marks.ts). */
  readonly marks: NamingMarks;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Kind of route for accounting: cas, tooltool, artifacts, projects, ops. */
    kind?: string;
  }
}

/** What an upload record (uploadRecord) holds. */
export interface UploadRecord {
  /** When the upload stored (or found) the blob, ms since the epoch. */
  readonly created: number;
}

/**
 * The record that the blob `digest` was uploaded to /cas itself (a tooltool asset, a push's
 * delta), not only as an artifact's bytes: retention does not free it with an expiring
 * artifact that names it (a machine's run token can upload any bytes as an artifact), only
 * with a run or base (a delta), and then drops the record.
 */
export function uploadRecord(digest: string): string[] {
  const [algo, hex] = digest.split(':');
  return ['_uploads', algo ?? '', hex ?? ''];
}

/** What a name uploaded again pointed at before (a blob no longer named by it), kept until a prune looked at it. */
export interface ReplacedRecord {
  readonly size: number;
  /** When it was written (ms since the epoch): a prune deletes the record only as it read it. */
  readonly at: number;
}

/**
 * The record that a name was uploaded again and no longer points at the blob `digest`:
 * retention frees that blob at its next prune, unless something else accounts for it.
 */
export function replacedRecord(digest: string): string[] {
  const [algo, hex] = digest.split(':');
  return ['_retention', 'replaced', algo ?? '', hex ?? ''];
}

export type Visibility = 'public' | 'internal';

/**
 * X-Fleetcache-Visibility of an upload, tooltool's values exactly (its API takes no other
 * spelling); absent is public. GET and HEAD of /cas answer with the stored one in the same header.
 */
export function visibilityOf(request: FastifyRequest): Visibility {
  const value = request.headers['x-fleetcache-visibility'];
  if (value === undefined || value === 'public' || value === 'internal') return value ?? 'public';
  throw new FleetError('FC_ERR_BAD_REQUEST', `X-Fleetcache-Visibility must be "public" or "internal", not ${JSON.stringify(value)}`);
}

/** Whether the blob `digest` was uploaded internal: reading it needs a token, whatever readAccess says. */
export function isInternal(ctx: OriginContext, digest: Digest): boolean {
  return ctx.internal.has(formatDigest(digest));
}

/**
 * Refuses a read that needs a token: 401 without one (or with another scheme's credentials,
 * tooltool's Hawk), which the error handler sends with the Bearer challenge (RFC 9110
 * §15.5.2), 403 with one not accepted, as writes. tooltool's server answers 403 to both; its
 * client, `mach artifact toolchain` and fleetcache's tell them apart no more than that they
 * failed. `internal`: a read of an internal blob (isInternal).
 */
export function checkRead(ctx: OriginContext, request: FastifyRequest, internal = false): void {
  if (!internal && ctx.readAccess === 'public') return;
  if (ctx.auth.accepts(request)) return;
  const what = internal ? 'this asset is internal' : 'reads need a token here';
  if (bearerToken(request.headers.authorization) === undefined) throw new FleetError('FC_ERR_UNAUTHORIZED', `${what}: send "Authorization: Bearer <token>"`);
  throw new FleetError('FC_ERR_FORBIDDEN', `${what}: the bearer token is not accepted`);
}

/** `private` when reading needs a token (readAccess: token, or an internal blob), so that no shared cache serves it to a client without one. */
function sharedAs(ctx: OriginContext, internal: boolean): 'private' | 'public' {
  return ctx.readAccess === 'token' || internal ? 'private' : 'public';
}

/**
 * Cache-Control of a blob's answers (and of the PUT that stored it, which tells a cache in
 * between whether it may keep what it forwarded). `internal`: the blob is (isInternal).
 */
export function blobCacheControl(ctx: OriginContext, internal: boolean): string {
  return `${sharedAs(ctx, internal)}, max-age=31536000, immutable`;
}

/** Cache-Control of a name's answers: revalidated on every use. `internal`: the blob it names is (isInternal). */
export function nameCacheControl(ctx: OriginContext, internal = false): string {
  return `${sharedAs(ctx, internal)}, no-cache`;
}

/**
 * Refuses an upload from its head, before reading it: a declared length already over the
 * limit, or a content coding. The origin stores the bytes that come and serves them as they
 * are, so gzip bytes of a text would be served as that text (RFC 9110 §15.5.16: 415).
 */
export function checkUploadHead(request: FastifyRequest, limit: number): void {
  const declared = Number(request.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    throw new FleetError('FC_ERR_TOO_LARGE', `body of ${declared} bytes exceeds the limit of ${limit} bytes`);
  }
  const coding = request.headers['content-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'identity') {
    throw new FleetError('FC_ERR_UNSUPPORTED_ENCODING', `Content-Encoding ${JSON.stringify(coding)} is not accepted: send the bytes as they are to be served, without one`);
  }
}
