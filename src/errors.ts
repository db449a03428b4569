// One error catalogue for the whole product. Every failure a user can see has a
// stable code; the HTTP status and the CLI exit code of each code are set here and
// only here. docs/errors.md documents every code (a test keeps the two in step).
// Retired codes are never reused.

import { redactUrlAndQuery } from './redact-url.js';

interface ErrorSpec {
  /** HTTP status when the error reaches a server's error handler. */
  readonly status: number;
  /** Process exit code when the error reaches the CLI's main(). */
  readonly exit: number;
  /** One line for docs and --help. */
  readonly summary: string;
}

/** Exit codes scripts can rely on (documented in docs/errors.md). */
export const EXIT = {
  ok: 0,
  failure: 1, // generic failure; also "some tasks failed" for `run`
  usage: 2, // bad command line
  config: 3, // bad configuration or project file
  notFound: 4,
  integrity: 5, // digest or size mismatch
  unavailable: 6, // upstream or network failure
  auth: 7,
  internal: 70,
} as const;

export const ERROR_CODES = {
  FC_ERR_USAGE: { status: 400, exit: EXIT.usage, summary: 'The command line is malformed.' },
  FC_ERR_CONFIG: { status: 500, exit: EXIT.config, summary: 'A configuration file is invalid; the message names file, line and field.' },
  FC_ERR_BAD_REQUEST: { status: 400, exit: EXIT.usage, summary: 'The request is malformed (bad header, bad JSON body).' },
  FC_ERR_BAD_DIGEST: { status: 400, exit: EXIT.usage, summary: 'A digest is malformed: unknown algorithm, non-hex, or wrong length.' },
  FC_ERR_BAD_NAME: { status: 400, exit: EXIT.usage, summary: 'A name or path is refused: "..", absolute, backslash, NUL, control characters, too long, or not UTF-8 (a name to pack, an entry name or symlink target of an archive to unpack).' },
  FC_ERR_DIGEST_MISMATCH: { status: 400, exit: EXIT.integrity, summary: 'The content does not hash to the expected digest; nothing was stored.' },
  FC_ERR_SIZE_MISMATCH: { status: 400, exit: EXIT.integrity, summary: 'The content does not have the expected size; nothing was stored.' },
  FC_ERR_TOO_LARGE: { status: 413, exit: EXIT.failure, summary: 'The body exceeds the configured limit.' },
  FC_ERR_TOO_MANY_HEADERS: { status: 431, exit: EXIT.usage, summary: 'The request has more header fields than the server accepts, or more than 16 KiB of them.' },
  FC_ERR_REQUEST_TIMEOUT: { status: 408, exit: EXIT.failure, summary: 'The request did not arrive in time: the server closed the connection.' },
  FC_ERR_RANGE: { status: 416, exit: EXIT.usage, summary: 'The requested byte range cannot be satisfied.' },
  FC_ERR_PRECONDITION_FAILED: { status: 412, exit: EXIT.failure, summary: 'A condition is false: If-Match or If-None-Match of a write (nothing was written; a name whose record is damaged has no ETag, so If-Match of one and If-None-Match: * are false), If-Match or If-Unmodified-Since of a read (the object changed).' },
  FC_ERR_NOT_FOUND: { status: 404, exit: EXIT.notFound, summary: 'No such object, name or route.' },
  FC_ERR_METHOD_NOT_ALLOWED: { status: 405, exit: EXIT.usage, summary: 'The path exists but not with this method; Allow lists the methods it has.' },
  FC_ERR_NOT_IMPLEMENTED: { status: 501, exit: EXIT.usage, summary: 'The request method is one the server has on no path (neither GET, HEAD, PUT, POST, DELETE, PATCH, OPTIONS nor TRACE: PROPFIND, CONNECT, a method unknown to HTTP).' },
  FC_ERR_HTTP_VERSION: { status: 505, exit: EXIT.usage, summary: 'The request is in another HTTP version than 1.0 or 1.1 (HTTP/1.2, HTTP/2.0 in a request line, HTTP/0.9).' },
  FC_ERR_UNAUTHORIZED: { status: 401, exit: EXIT.auth, summary: 'The request needs a bearer token and has none.' },
  FC_ERR_FORBIDDEN: { status: 403, exit: EXIT.auth, summary: 'The bearer token is not accepted.' },
  FC_ERR_ABORTED: { status: 400, exit: EXIT.failure, summary: 'The client aborted the transfer; nothing was stored.' },
  FC_ERR_DIR_IN_USE: { status: 500, exit: EXIT.config, summary: 'The data directory is in use by another fleetcache server; each origin or cache needs its own.' },
  FC_ERR_INSUFFICIENT_STORAGE: { status: 507, exit: EXIT.failure, summary: 'The store, or a local disk being written (a quota, a file size limit), has no room for the object.' },
  FC_ERR_QUOTA: { status: 507, exit: EXIT.failure, summary: "A run's artifact budget at the origin (limits.maxRunArtifactsSize, maxRunArtifactsFiles) has no room for the upload; nothing was stored." },
  FC_ERR_LENGTH_REQUIRED: { status: 411, exit: EXIT.usage, summary: 'The upload must state its Content-Length (an artifact upload with a run token).' },
  FC_ERR_UNSUPPORTED_ENCODING: { status: 415, exit: EXIT.usage, summary: 'The upload has a Content-Encoding (gzip, …): the origin decodes none, and would serve the coded bytes as the content; nothing was stored.' },
  FC_ERR_UPSTREAM: { status: 502, exit: EXIT.unavailable, summary: 'The upstream answered with an error or broke the connection, or redirected where the cache does not follow (another scheme, too many hops, an address that is not public: loopback, private, link-local, unspecified, multicast or reserved, an IPv6 one embedding such an IPv4 one included: privateRedirects).' },
  FC_ERR_UPSTREAM_TIMEOUT: { status: 504, exit: EXIT.unavailable, summary: 'The upstream did not answer in time.' },
  FC_ERR_UNAVAILABLE: { status: 503, exit: EXIT.unavailable, summary: 'The service or upstream is temporarily unavailable.' },
  FC_ERR_DELTA: { status: 422, exit: EXIT.failure, summary: 'A VCDIFF delta could not be encoded or decoded.' },
  FC_ERR_PROJECT: { status: 422, exit: EXIT.config, summary: 'A spread project (spread.yaml, task.yaml) is invalid or a filter matches nothing.' },
  FC_ERR_ARCHIVE: { status: 422, exit: EXIT.failure, summary: 'An archive cannot be unpacked: unknown format, corrupt data or an unsupported entry type.' },
  FC_ERR_TASK_FAILED: { status: 500, exit: EXIT.failure, summary: 'One or more tasks failed or were aborted.' },
  FC_ERR_REBOOT: { status: 504, exit: EXIT.unavailable, summary: 'A machine asked to reboot (REBOOT) could not be rebooted or did not come back with a new boot identity in time.' },
  FC_ERR_RESTART_LIMIT: { status: 500, exit: EXIT.failure, summary: 'The workers of a multi-process cache kept dying (5 within a minute): the cache stopped rather than restart them without end.' },
  FC_ERR_INTERNAL: { status: 500, exit: EXIT.internal, summary: 'An unexpected internal error.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The request whose answer an error is about: its method and URL (credentials and query
 * string hidden: redactUrlAndQuery). What says which server failed (a cache, the origin),
 * rather than the message's words.
 */
export interface FailedRequest {
  readonly method: string;
  readonly url: string;
}

/** `method` and `url` as a FailedRequest names them. */
export function failedRequest(method: string, url: string): FailedRequest {
  return { method, url: redactUrlAndQuery(url) };
}

export class FleetError extends Error {
  readonly code: ErrorCode;
  /** Extra machine-readable fields sent in the JSON error body. */
  readonly details: Record<string, unknown> | undefined;
  /** The request whose answer failed, when a server's did (never sent in an error body). */
  readonly request: FailedRequest | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown>; request?: FailedRequest }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options?.details;
    this.request = options?.request;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.details };
  }
}

/** The only error that means "absent": a store miss, an unknown name. */
export class NotFoundError extends FleetError {
  constructor(message: string, request?: FailedRequest) {
    super('FC_ERR_NOT_FOUND', message, { request });
  }
}

/** "GET <url>: " before a message about `request`'s answer; nothing without one. */
function naming(request: FailedRequest | undefined): string {
  return request ? `${request.method} ${request.url}: ` : '';
}

export class DigestMismatchError extends FleetError {
  /** `request`: the one whose answer had the wrong digest, when a server gave it. */
  constructor(readonly expected: string, readonly actual: string, request?: FailedRequest) {
    super('FC_ERR_DIGEST_MISMATCH', `${naming(request)}digest mismatch: expected ${expected}, got ${actual}`, { details: { expected, actual }, request });
  }
}

export class SizeMismatchError extends FleetError {
  /** `request`: the one whose answer had the wrong size, when a server gave it. */
  constructor(readonly expected: number, readonly actual: number, request?: FailedRequest) {
    super('FC_ERR_SIZE_MISMATCH', `${naming(request)}size mismatch: expected ${expected} bytes, got ${actual}`, { details: { expected, actual }, request });
  }
}

/**
 * `err` as the answer to `request` when it is a digest or size mismatch that names none (a
 * hashing tap's, refusing bytes past the size as they come), or the connection's failure
 * while the answer's body came (cut, stalled: undici's raw error, which names no URL); anything
 * else as it is: a local write's failure (a full disk) stays the raw error isNoRoom knows.
 */
export function answerOf(err: unknown, request: FailedRequest): unknown {
  if (err instanceof DigestMismatchError && !err.request) return new DigestMismatchError(err.expected, err.actual, request);
  if (err instanceof SizeMismatchError && !err.request) return new SizeMismatchError(err.expected, err.actual, request);
  if (isNetworkError(err)) return connectionFailure(err, request);
  return err;
}

/** Failures of the bytes themselves: a cache's damaged copy causes them, and a recheck (Cache-Control: no-cache) mends it. */
export const DAMAGED_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['FC_ERR_DIGEST_MISMATCH', 'FC_ERR_SIZE_MISMATCH']);

/** Whether `err` is a failure of the bytes themselves (DAMAGED_CODES). */
export function isDamagedBytes(err: unknown): err is FleetError {
  return err instanceof FleetError && DAMAGED_CODES.has(err.code);
}

export class ConfigError extends FleetError {
  constructor(message: string, readonly file?: string, readonly line?: number, readonly field?: string) {
    super('FC_ERR_CONFIG', message, { details: { file, line, field } });
  }
}

export class UsageError extends FleetError {
  constructor(message: string) {
    super('FC_ERR_USAGE', message);
  }
}

export class UpstreamError extends FleetError {
  constructor(message: string, options?: { cause?: unknown; timeout?: boolean; status?: number; request?: FailedRequest }) {
    super(options?.timeout ? 'FC_ERR_UPSTREAM_TIMEOUT' : 'FC_ERR_UPSTREAM', message, {
      cause: options?.cause,
      details: options?.status === undefined ? undefined : { upstreamStatus: options.status },
      request: options?.request,
    });
  }

  /** The status the server answered with; undefined when it did not answer (unreachable, cut, timed out). */
  get upstreamStatus(): number | undefined {
    const status = this.details?.upstreamStatus;
    return typeof status === 'number' ? status : undefined;
  }
}

/** A machine's reboot (spread's REBOOT) could not be requested, or the machine did not come back in time. */
export class RebootError extends FleetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FC_ERR_REBOOT', message, options);
  }
}

/** A full disk or quota (or a file over the size limit): the machine's state, not a bug. */
const NO_ROOM = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/**
 * Whether `err` is a write refused for lack of room (a full disk, a quota): the system's
 * error, or the 507 noRoomError made of it (a name record's write, names.ts, says so).
 */
export function isNoRoom(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (NO_ROOM.has(code) || code === 'FC_ERR_INSUFFICIENT_STORAGE');
}

/**
 * The 507 for a write isNoRoom refused, said alike wherever the origin or a machine's pull
 * writes (`where`: "on" or "in" the device or directory, and what for) rather than as the
 * system's "ENOSPC: no space left on device, write".
 */
export function noRoomError(where: string, cause: unknown): FleetError {
  return new FleetError('FC_ERR_INSUFFICIENT_STORAGE', `no room left ${where} (full, or over a quota or file size limit)`, { cause });
}

/** undici's codes that are not about the connection: a caller's abort, a bad argument. */
const NOT_NETWORK = new Set(['UND_ERR_ABORTED', 'UND_ERR_INVALID_ARG', 'UND_ERR_INVALID_RETURN_VALUE', 'UND_ERR_NOT_SUPPORTED']);
const NETWORK_ERRNO = /^E(CONNRESET|CONNREFUSED|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN)$/;

/**
 * Whether `err` is the failure of a connection to another server (undici's errors, the
 * system's for a peer gone or out of reach), however late: a body cut or stalled mid-way
 * fails while it is read, after the request itself succeeded.
 */
function isNetworkError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return code.startsWith('UND_ERR_') ? !NOT_NETWORK.has(code) : NETWORK_ERRNO.test(code);
}

/**
 * A connection's failure (isNetworkError) as an UpstreamError, a timeout's code when it is
 * one; `request`, when known, is named in its message and carried.
 */
function connectionFailure(err: unknown, request?: FailedRequest): UpstreamError {
  const code = String((err as { code?: unknown }).code);
  return new UpstreamError(`${naming(request)}${errorMessage(err)}`, { cause: err, timeout: /TIMEOUT|TIMEDOUT/.test(code), request });
}

/** The message of anything thrown: an Error's message, anything else as a string. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * `err` as a FleetError with `details` added: what a caller learnt before the failure (the
 * URLs it gave up on, the files it stored). A copy of the same class and fields (an
 * UpstreamError stays one, with its upstreamStatus), so that `instanceof` still tells it.
 */
export function withDetails(err: unknown, details: Record<string, unknown>): FleetError {
  const error = toFleetError(err);
  const copy: FleetError = Object.create(Object.getPrototypeOf(error), {
    ...Object.getOwnPropertyDescriptors(error),
    details: { value: { ...error.details, ...details }, enumerable: true, writable: true, configurable: true },
  });
  return copy;
}

/** Wraps anything thrown into a FleetError, keeping FleetErrors as they are. */
export function toFleetError(err: unknown): FleetError {
  if (err instanceof FleetError) return err;
  const message = errorMessage(err);
  if (isNetworkError(err)) return connectionFailure(err);
  if (isNoRoom(err)) return new FleetError('FC_ERR_INSUFFICIENT_STORAGE', message, { cause: err });
  return new FleetError('FC_ERR_INTERNAL', message, { cause: err });
}
