// Answering clients: conditional GET (304, 412), single byte ranges (206/416), HEAD,
// X-Cache and Age, and accounting of the bytes actually sent.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FleetError } from '../errors.js';
import { checkReadPreconditions, parseHttpDate } from '../http/blob-reply.js';
import { asksOneRange, parseRange } from '../http/range.js';
import { loggedPath } from '../redact-url.js';
import type { ReadRange } from '../store/blob-store.js';
import type { CacheMetrics, Kind } from './metrics.js';
import { singleField, type AnswerFields } from './upstream.js';

/**
 * X-Cache: STALE is a stored copy served without upstream's confirmation: a name while
 * upstream is down or failing, a mirror answer past its freshness (stale-while-revalidate,
 * stale-if-error).
 */
export type CacheStatus = 'HIT' | 'STALE' | 'MISS' | 'COLLAPSED';

/**
 * Sends bytes [start, start + length) of a body (length undefined: to the end) straight to
 * the socket, with the status and headers set on `reply` (send-file.ts, fill-cursor.ts),
 * telling `sent` each chunk handed to the socket.
 */
type BodySender = (reply: FastifyReply, start: number, length: number | undefined, sent: (bytes: number) => void) => Promise<void>;

interface Body {
  readonly status: number;
  /** Headers without content-length (set here). */
  readonly headers: AnswerFields;
  /** Undefined while a fill without Content-Length is still running. */
  readonly size: number | undefined;
  /** The bytes themselves (small bodies), or what sends them. */
  readonly content: Buffer | BodySender;
  /** Resolves to the final size once known (fills without Content-Length): a Range of such a body waits for it. */
  readonly finalSize?: () => Promise<number>;
  /** Releases what `content` would have used when no body is sent (HEAD, 304, 416). */
  readonly discard?: () => void;
}

interface SendContext {
  readonly kind: Kind;
  readonly cache: CacheStatus;
  readonly ageSeconds: number;
  readonly metrics: CacheMetrics;
}

/**
 * What the log line of a failed request says besides its request id: the error, the method
 * and the path, without the query string (it may carry a token); never a header.
 */
export function failureFields(fe: FleetError, req: { readonly method?: string | undefined; readonly url?: string | undefined }): Record<string, unknown> {
  return { err: fe.message, code: fe.code, method: req.method, url: loggedPath(req.url ?? '') };
}

/** The JSON body of the cache's 416 to `range`, naming the object's size when it is known (upstream.ts's for a redirect target too). */
export function unsatisfiableBody(range: string | undefined, size: number | string | undefined): string {
  return JSON.stringify({ code: 'FC_ERR_RANGE', message: `range ${range} not satisfiable${size === undefined ? '' : ` (size ${size})`}` });
}

/** The range of `header` to answer (http/range.ts, as the origin reads it), or 'unsatisfiable' (416). */
function rangeOf(header: string, size: number): ReadRange | 'unsatisfiable' | undefined {
  try {
    return parseRange(header, size);
  } catch (err) {
    if (err instanceof FleetError && err.code === 'FC_ERR_RANGE') return 'unsatisfiable';
    throw err;
  }
}

/**
 * The preconditions of a GET or HEAD of a 200 answer, evaluated as the origin does
 * (checkReadPreconditions): throws FC_ERR_PRECONDITION_FAILED (412) when If-Match or
 * If-Unmodified-Since is false, having released the body; true: answer 304.
 */
function readPreconditions(req: FastifyRequest, body: Body): boolean {
  const h = req.headers;
  if (h['if-match'] === undefined && h['if-none-match'] === undefined && h['if-unmodified-since'] === undefined && h['if-modified-since'] === undefined) return false;
  const lastModified = singleField(body.headers, 'last-modified');
  try {
    return checkReadPreconditions(req, singleField(body.headers, 'etag'), lastModified === undefined ? undefined : parseHttpDate(lastModified));
  } catch (err) {
    body.discard?.();
    throw err;
  }
}

/** Representation metadata a 304 leaves out (RFC 9110 §8.3–8.5, §15.4.5). */
const REPRESENTATION_FIELDS = ['content-type', 'content-encoding', 'content-language'];

/** The Content-Type of a body upstream gave none: what fastify's reply.send gives a Buffer. */
export const UNTYPED_BODY = 'application/octet-stream';

/**
 * Whether an answer of `status` with `headers` is given UNTYPED_BODY: every one with content
 * and no type, whatever the method and however the body goes (a Buffer, a file, a fill), so
 * that a HEAD carries the fields of the GET (RFC 9110 §9.3.2), a large body those of a small one.
 */
export function lacksType(status: number, headers: AnswerFields): boolean {
  return headers['content-type'] === undefined && status !== 204 && status !== 304;
}

/** Sends the answer (never awaits the reply itself: a FastifyReply is a thenable). */
export async function sendBody(req: FastifyRequest, reply: FastifyReply, body: Body, ctx: SendContext): Promise<void> {
  // Before the object's headers are set: a 412 is not the object.
  const unchanged = body.status === 200 && readPreconditions(req, body);
  reply.headers(body.headers);
  if (lacksType(body.status, body.headers)) reply.header('content-type', UNTYPED_BODY);
  reply.header('x-cache', ctx.cache);
  if (body.headers.age === undefined) reply.header('age', String(Math.max(0, Math.floor(ctx.ageSeconds))));
  const head = req.method === 'HEAD';
  if (body.status !== 200) {
    reply.code(body.status);
    if (body.size !== undefined) reply.header('content-length', String(body.size));
    if (head) return void done(reply, body);
    return sendContent(reply, ctx, body, 0, body.size);
  }
  if (unchanged) {
    // RFC 9110 §15.4.5: a 304 carries no metadata of the representation (a client's stored
    // copy may be another one: a gzip copy's Content-Encoding would be applied to it)
    for (const field of REPRESENTATION_FIELDS) reply.removeHeader(field);
    return void done(reply.code(304), body);
  }
  reply.header('accept-ranges', 'bytes');
  const rangeHeader = req.headers.range;
  const ifRange = req.headers['if-range'];
  // GET is the only method with ranges: a HEAD ignores its Range (RFC 9110 §14.2), a 200 as a GET's
  // If-Range compares strongly (RFC 9110 §13.1.5): a weak tag never matches, the whole body goes
  // Only one range is answered with a 206 (http/range.ts): for any other (several ranges,
  // another unit) a body of unknown size goes out whole at once, not after the whole fill.
  const wantsRange = req.method === 'GET' && typeof rangeHeader === 'string' && asksOneRange(rangeHeader) && (typeof ifRange !== 'string' || (ifRange === body.headers.etag && !ifRange.startsWith('W/')) || ifRange === body.headers['last-modified']);
  let size = body.size;
  if (wantsRange && size === undefined && body.finalSize) {
    try {
      size = await body.finalSize();
    } catch (err) {
      withoutObjectHeaders(reply, body); // the error handler answers: not with the object's headers
      throw err;
    }
  }
  const range = wantsRange && size !== undefined ? rangeOf(rangeHeader, size) : undefined;
  if (range === 'unsatisfiable') {
    withoutObjectHeaders(reply, body).header('cache-control', 'no-store').header('content-range', `bytes */${size}`);
    return void done(reply.code(416).type('application/json'), body, unsatisfiableBody(rangeHeader, size));
  }
  if (range) {
    const len = range.end - range.start + 1;
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', String(len));
    if (head) return void done(reply, body);
    return sendContent(reply, ctx, body, range.start, len);
  }
  reply.code(200);
  if (size !== undefined) reply.header('content-length', String(size));
  if (head) return void done(reply, body);
  return sendContent(reply, ctx, body, 0, size);
}

/** An error answer is not the object: none of its caching, validator or encoding headers. */
function withoutObjectHeaders(reply: FastifyReply, body: Body): FastifyReply {
  for (const name of Object.keys(body.headers)) reply.removeHeader(name);
  return reply.removeHeader('age');
}

/**
 * Sends the body, its bytes counted as served as they are handed to the socket: a whole
 * buffer at once (as fast-hit.ts does), a streamed body chunk by chunk, so that an answer
 * cut short (its client gone, its fill failed upstream) counts what went out.
 */
function sendContent(reply: FastifyReply, ctx: SendContext, body: Body, start: number, length: number | undefined): Promise<void> | undefined {
  const content = body.content;
  if (typeof content === 'function') return content(reply, start, length, (n) => ctx.metrics.served(ctx.kind, n));
  const bytes = content.subarray(start, length === undefined ? undefined : start + length);
  if (bytes.length > 0 && !reply.raw.destroyed) ctx.metrics.served(ctx.kind, bytes.length);
  reply.send(bytes);
  return undefined;
}

function done(reply: FastifyReply, body: Body, payload?: string): void {
  body.discard?.();
  reply.send(payload);
}
