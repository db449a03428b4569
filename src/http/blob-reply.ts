// Answering GET/HEAD for an immutable blob: strong ETag = digest, immutable caching,
// If-None-Match / If-Modified-Since → 304, If-Match / If-Unmodified-Since → 412, a single
// Range → 206 (416 when unsatisfiable), never encoded.
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

/** An entity tag of a list (RFC 9110 §8.8.3): a quoted string may hold commas, so the list is not split on them. */
const ENTITY_TAG = /(?:W\/)?"[^"]*"/g;

/** The entity tags of an If-Match or If-None-Match list, as written. */
function entityTags(header: string): string[] {
  return header.match(ENTITY_TAG) ?? [];
}

/** True when an If-None-Match header matches the ETag (weak comparison, as RFC 9110 says for 304). */
function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  const bare = etag.replace(/^W\//, '');
  return entityTags(header).some((t) => t.replace(/^W\//, '') === bare);
}

/**
 * If-Match and If-None-Match of a write (RFC 9110 §13.1.1, §13.1.2, evaluated in the order
 * of §13.2.2): throws FC_ERR_PRECONDITION_FAILED (412) when one is false. `etag` is the
 * current representation's, undefined when there is none or it has none (`exists`): only
 * `*` then matches, in If-Match or If-None-Match.
 */
export function checkWritePreconditions(request: FastifyRequest, etag: string | undefined, exists = etag !== undefined): void {
  checkIfMatch(request, etag, exists);
  const ifNoneMatch = request.headers['if-none-match'];
  if (ifNoneMatch === undefined) return;
  if (etag !== undefined && ifNoneMatchHits(ifNoneMatch, etag)) throw new FleetError('FC_ERR_PRECONDITION_FAILED', `If-None-Match: the current ETag is ${etag}`);
  if (exists && ifNoneMatch.trim() === '*') throw new FleetError('FC_ERR_PRECONDITION_FAILED', 'If-None-Match: *: there is a current representation');
}

/**
 * The preconditions of a GET or HEAD, in the order of RFC 9110 §13.2.2: throws
 * FC_ERR_PRECONDITION_FAILED (412) when If-Match, or without it If-Unmodified-Since, is
 * false; returns true (answer 304) when If-None-Match, or without it If-Modified-Since, is.
 * `etag`, `modifiedMs`: the current representation's, undefined when it has none (an entry
 * a cache keeps without ETag or Last-Modified): only `*` then matches, in If-Match or
 * If-None-Match, and the date conditions are ignored.
 */
export function checkReadPreconditions(request: FastifyRequest, etag: string | undefined, modifiedMs: number | undefined): boolean {
  if (request.headers['if-match'] !== undefined) checkIfMatch(request, etag, true);
  else if (modifiedMs !== undefined && unchangedSince(request.headers['if-unmodified-since'], modifiedMs) === false) {
    throw new FleetError('FC_ERR_PRECONDITION_FAILED', `If-Unmodified-Since: changed since, at ${new Date(modifiedMs).toUTCString()}`);
  }
  const ifNoneMatch = request.headers['if-none-match'];
  // `*` matches any current representation, one without an ETag too (§13.1.2).
  if (ifNoneMatch !== undefined) return ifNoneMatch.trim() === '*' || (etag !== undefined && ifNoneMatchHits(ifNoneMatch, etag));
  return modifiedMs !== undefined && unchangedSince(request.headers['if-modified-since'], modifiedMs) === true;
}

/** `exists`: whether there is a current representation (one may have no ETag). */
function checkIfMatch(request: FastifyRequest, etag: string | undefined, exists = etag !== undefined): void {
  const ifMatch = request.headers['if-match'];
  if (ifMatch !== undefined && !ifMatchHolds(ifMatch, etag, exists)) {
    const why = etag ? `the current ETag is ${etag}` : exists ? 'the current representation has no ETag' : 'there is no current representation';
    throw new FleetError('FC_ERR_PRECONDITION_FAILED', `If-Match: ${why}`);
  }
}

/** Strong comparison (§8.8.3.2): a weak tag never matches; `*` matches any current representation. */
function ifMatchHolds(header: string, etag: string | undefined, exists: boolean): boolean {
  if (header.trim() === '*') return exists;
  return etag !== undefined && !etag.startsWith('W/') && entityTags(header).includes(etag);
}

interface BlobReplyOptions {
  readonly kind: string;
  readonly ledger: TrafficLedger;
  readonly cacheControl?: string;
  /** A name's (name-etag.ts); without it, the blob's: its digest. */
  readonly etag?: string;
  readonly contentType?: string;
  readonly extraHeaders?: Record<string, string>;
  /**
   * For content that can change under its URL (a name): when it last did, its Last-Modified.
   * Without it, the blob's commit time is used; a blob never changes.
   */
  readonly modifiedMs?: number;
}

const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const MONTH = `(${MONTHS.join('|')})`;
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`);
const RFC850_DATE = new RegExp(`^(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`);
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);

/** An HTTP-date (RFC 9110 §5.6.7) in ms since the epoch, in any of its three forms; undefined when it is none. */
export function parseHttpDate(value: string): number | undefined {
  let parts: [day: string, month: string, year: number, h: string, m: string, s: string];
  let match: RegExpExecArray | null;
  if ((match = IMF_FIXDATE.exec(value))) {
    parts = [match[1]!, match[2]!, Number(match[3]), match[4]!, match[5]!, match[6]!];
  } else if ((match = RFC850_DATE.exec(value))) {
    // A two-digit year more than 50 years ahead is the most recent past one (§5.6.7).
    const thisYear = new Date().getUTCFullYear();
    let year = Math.floor(thisYear / 100) * 100 + Number(match[3]);
    if (year > thisYear + 50) year -= 100;
    parts = [match[1]!, match[2]!, year, match[4]!, match[5]!, match[6]!];
  } else if ((match = ASCTIME_DATE.exec(value))) {
    parts = [match[2]!.trim(), match[1]!, Number(match[6]), match[3]!, match[4]!, match[5]!];
  } else {
    return undefined;
  }
  const [day, month, year, h, m, sec] = parts;
  const ms = Date.UTC(year, MONTHS.indexOf(month), Number(day), Number(h), Number(m), Number(sec));
  // Date.UTC rolls "31 Feb" or "25:00" over into another date: those are no dates.
  return new Date(ms).getUTCDate() === Number(day) && Number(h) < 24 && Number(m) < 60 && Number(sec) < 61 ? ms : undefined;
}

/**
 * Whether the content has not changed since the date of an If-Modified-Since or
 * If-Unmodified-Since header (RFC 9110 §13.1.3, §13.1.4), to the second; undefined when
 * the header is absent or no HTTP-date (the condition is then ignored).
 */
function unchangedSince(header: string | undefined, lastModifiedMs: number): boolean | undefined {
  const since = header === undefined ? undefined : parseHttpDate(header.trim());
  return since === undefined ? undefined : Math.floor(lastModifiedMs / 1000) <= Math.floor(since / 1000);
}

/**
 * If-Range (RFC 9110 §13.1.5): an entity tag compared strongly, or exactly the Last-Modified
 * date, which counts only when it is a strong validator: a blob's always (it never changes),
 * a name's once it is a second old (two changes within one second share a date, §8.8.2.2).
 */
function ifRangeHolds(header: string, etag: string, lastModified: string, dateIsStrong: boolean): boolean {
  const value = header.trim();
  if (value.startsWith('"') || value.startsWith('W/')) return value === etag && !etag.startsWith('W/');
  return dateIsStrong && value === lastModified;
}

export async function replyWithBlob(
  request: FastifyRequest,
  reply: FastifyReply,
  store: BlobStore,
  digest: Digest,
  opts: BlobReplyOptions,
): Promise<FastifyReply> {
  const st = await store.stat(digest);
  const etag = opts.etag ?? etagOf(digest);
  const modifiedMs = opts.modifiedMs ?? st.mtimeMs;
  const lastModified = new Date(modifiedMs).toUTCString();
  const unchanged = checkReadPreconditions(request, etag, modifiedMs); // a 412 goes out without the object's headers
  reply
    .header('etag', etag)
    .header('cache-control', opts.cacheControl ?? IMMUTABLE_CACHE_CONTROL)
    .header('accept-ranges', 'bytes')
    .header('x-fleetcache-digest', formatDigest(digest))
    .header('last-modified', lastModified)
    .type(opts.contentType ?? 'application/octet-stream');
  if (opts.extraHeaders) reply.headers(opts.extraHeaders);
  if (unchanged) return reply.removeHeader('content-type').code(304).send(); // no representation metadata (RFC 9110 §15.4.5)
  const ifRange = request.headers['if-range'];
  const dateIsStrong = opts.modifiedMs === undefined || Date.now() - modifiedMs >= 1000;
  // GET is the only method with ranges: a HEAD ignores its Range (RFC 9110 §14.2), a 200 as a GET's
  const rangeAllowed = request.method === 'GET' && (ifRange === undefined || (typeof ifRange === 'string' && ifRangeHolds(ifRange, etag, lastModified, dateIsStrong)));
  let range: ReadRange | undefined;
  try {
    range = rangeAllowed ? parseRange(request.headers.range, st.size) : undefined;
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
