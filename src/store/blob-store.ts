// The seam between the servers and where bytes live: local disk (disk.ts) and S3-compatible
// object storage (s3.ts) implement the same calls.
import type { Readable } from 'node:stream';
import type { Digest, DigestAlgorithm } from './digest.js';
import { FleetError } from '../errors.js';

export interface BlobStat {
  readonly digest: Digest;
  readonly size: number;
  /** Last modification (commit) time, ms since the epoch. */
  readonly mtimeMs: number;
}

export interface PutOptions {
  /** When given, the put is refused (DigestMismatchError) unless the content hashes to it. */
  readonly expected?: Digest;
  /** Algorithm to hash with when no expected digest is given (default sha256). */
  readonly algo?: DigestAlgorithm;
  /** When given, the put is refused (SizeMismatchError) unless exactly this many bytes arrive. */
  readonly expectedSize?: number;
  /** Refuse (FC_ERR_TOO_LARGE) as soon as more than this many bytes arrive. */
  readonly maxSize?: number;
  readonly signal?: AbortSignal;
  /**
   * Called once the bytes are verified, before they may become visible under their digest
   * (whether this put creates the object or finds it there); a throw refuses the put. What
   * must be written down before a blob exists (the origin's naming marks, naming-marks.ts).
   */
  readonly beforeCommit?: (digest: Digest, size: number) => Promise<void>;
}

export interface PutResult {
  readonly digest: Digest;
  readonly size: number;
  /** False when the object already existed (the new copy was discarded). */
  readonly created: boolean;
}

export interface ReadRange {
  /** First byte, inclusive. */
  readonly start: number;
  /** Last byte, inclusive. */
  readonly end: number;
}

export interface BlobStore {
  /** Makes the store ready: creates directories, removes leftover temporary files. */
  open(): Promise<void>;
  has(digest: Digest): Promise<boolean>;
  /** Throws NotFoundError when absent. */
  stat(digest: Digest): Promise<BlobStat>;
  /** Throws NotFoundError when absent. The range is inclusive on both ends. */
  createReadStream(digest: Digest, range?: ReadRange): Promise<Readable>;
  /**
   * Streams `body` into the store, hashing as it goes. Nothing is visible under the
   * digest until every byte is written, verified and durably committed.
   */
  put(body: Readable, options?: PutOptions): Promise<PutResult>;
  /** Returns false when the object was absent. */
  delete(digest: Digest): Promise<boolean>;
  /** Every committed object, in no particular order (start-up scans). */
  list(): AsyncIterable<BlobStat>;
  /**
   * Removes what interrupted uploads left that open() removes too (S3: temporary keys older
   * than a day), for a server that runs long between starts. Absent where there is none to
   * find while running (the disk store's tmp/ holds only this process's uploads).
   */
  removeLeftovers?(): Promise<void>;
}

/** Whether `err` is an upload cut by its client (the connection reset or closed early) or by a signal. */
export function isAbort(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException;
  return e?.name === 'AbortError' || e?.code === 'ECONNRESET' || e?.code === 'ERR_STREAM_PREMATURE_CLOSE' || e?.code === 'ABORT_ERR';
}

/** The error of an upload its client cut (see isAbort): nothing was stored. */
export function uploadAborted(cause?: unknown): FleetError {
  return new FleetError('FC_ERR_ABORTED', 'upload aborted before completion; nothing was stored', cause === undefined ? {} : { cause });
}
