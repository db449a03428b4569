// What every route of the cache shares, and the serving paths common to all namespaces:
// a disk hit, a fill (leader or joiner), and a plain passthrough.
import type { FileHandle } from 'node:fs/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { FleetError } from '../errors.js';
import { takeOver } from '../http/body-writer.js';
import { sendFileRange } from '../http/send-file.js';
import { SMALL_MAX, StorageError, type DiskStore, type Hit } from './disk-store.js';
import type { FillDecision, FillSpec } from './fill.js';
import type { FillHead, FillSource } from './fill-progress.js';
import type { Fills } from './fills.js';
import type { UploadsInFlight } from './uploads-in-flight.js';
import { readUntilClosed, sendFill } from './fill-cursor.js';
import { FillGoneError } from './remote-fill.js';
import type { CacheMetrics, Kind } from './metrics.js';
import { lacksType, sendBody, UNTYPED_BODY, type CacheStatus } from './serve.js';
import { endToEnd, pickHeaders, RANGE_FIELDS, type AnswerFields, type HeaderMap, type Upstream } from './upstream.js';
import { announcedLength, type AnswerHead, type UpstreamAnswer } from './answer-handler.js';

/** A configured mirror: its upstream, and whether it is a tooltool server (config.ts's MirrorConfig). */
export interface Mirror {
  readonly upstream: Upstream;
  readonly tooltool: boolean;
}

export interface CacheContext {
  readonly store: DiskStore;
  readonly fills: Fills;
  readonly uploads: UploadsInFlight;
  readonly metrics: CacheMetrics;
  readonly upstream: Upstream;
  readonly mirrors: ReadonlyMap<string, Mirror>;
  readonly log: Logger;
}

/**
 * Requests whose fill the disk refused on the fast path (fast-miss.ts), with upstream's
 * answer to it when its body was not read: the routes pass them through without filling again.
 */
const fillsRefused = new WeakMap<IncomingMessage, { readonly answered: UpstreamAnswer | undefined }>();

export function markFillRefused(req: IncomingMessage, answered: UpstreamAnswer | undefined): void {
  fillsRefused.set(req, { answered });
}

/** What markFillRefused left for `req`, once. */
export function takeFillRefused(req: IncomingMessage): { readonly answered: UpstreamAnswer | undefined } | undefined {
  const refused = fillsRefused.get(req);
  fillsRefused.delete(req);
  return refused;
}

/** Collapsing is only among requests with the same credentials, so no one is served another's private answer. */
export function flightKey(id: string, req: { readonly headers: IncomingHttpHeaders }, extra = ''): string {
  return `${id}\0${req.headers.authorization ?? ''}\0${extra}`;
}

export function authHeaders(req: { readonly headers: IncomingHttpHeaders }): HeaderMap {
  const auth = req.headers.authorization;
  return auth ? { authorization: auth } : {};
}

/** The Cache-Control directives of `headers`, as one string ('' when there are none). */
export function cacheControlOf(headers: Record<string, string | string[] | undefined>): string {
  const cc = headers['cache-control'];
  return Array.isArray(cc) ? cc.join(',') : cc ?? '';
}

/** Cache-Control private or no-store: never kept, only proxied. */
export function isPrivate(headers: Record<string, string | string[] | undefined>): boolean {
  return /(?:^|[\s,])(?:private|no-store)\b/i.test(cacheControlOf(headers));
}

/**
 * Serves a committed entry from disk (X-Cache `cache`: HIT, or STALE for a copy upstream did
 * not confirm, see CacheStatus). Resolves to false when the file vanished between lookup and
 * open (evicted meanwhile): the caller treats it as a miss.
 */
export async function serveHit(
  ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: Kind, hit: Hit, headers: HeaderMap = hit.meta.headers, cache: 'HIT' | 'STALE' = 'HIT',
): Promise<boolean> {
  const size = hit.meta.size;
  let body = hit.body;
  let fh: FileHandle | undefined;
  if (!body && size <= SMALL_MAX) {
    // Small: one read, then kept in memory; no stream machinery per request.
    body = ctx.store.readSmall(hit);
    if (!body) return false;
  } else if (!body) {
    fh = await ctx.store.openBody(hit);
    if (!fh) return false;
  }
  const small = body;
  const file = fh;
  ctx.metrics.hit(kind);
  await sendBody(req, reply, {
    status: hit.meta.status,
    headers,
    size,
    content: small ?? ((reply, start, length, sent) => sendFileRange(reply, file!, start, length ?? size - start, sent)),
    ...(file ? { discard: () => void file.close().catch(() => undefined) } : {}),
  }, { kind, cache, ageSeconds: (Date.now() - hit.meta.storedAt) / 1000, metrics: ctx.metrics });
  return true;
}

/**
 * Serves a fill: a small one as one buffer once it has arrived and been verified (so a
 * failure is a clean 502, not a cut body), a large one from its growing file. A storage
 * failure before the first byte turns into a passthrough (of upstream's answer to the fill,
 * when the disk refused it before its body was read), and so does a fill of another worker
 * that ended before it could be followed.
 */
export async function serveFill(
  ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: Kind, fill: FillSource, cache: CacheStatus,
  passthrough: Direct, joins?: JoinCheck,
): Promise<void> {
  if (cache !== 'COLLAPSED') return answerFromFill(ctx, req, reply, kind, fill, cache, passthrough, joins);
  // counted while it waits and reads (fleetcache_cache_fill_joiners), when collapsed is not yet known
  const left = ctx.metrics.joiningFill();
  try {
    await answerFromFill(ctx, req, reply, kind, fill, cache, passthrough, joins);
  } finally {
    left();
  }
}

async function answerFromFill(
  ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: Kind, fill: FillSource, cache: CacheStatus,
  passthrough: Direct, joins?: JoinCheck,
): Promise<void> {
  let head;
  try {
    head = await fill.head;
  } catch (err) {
    // Refused by the disk: each waiter passes through, with an upstream request of its own
    // (the first one with the fill's), so none counts as collapsed.
    countFill(ctx, kind, err instanceof StorageError ? 'MISS' : cache);
    if (err instanceof StorageError) return passthrough(fill.takeUnkept());
    if (err instanceof FillGoneError) return passthrough();
    throw err;
  }
  // A range of a fill checked only once whole (FillHead.verified) holds its last byte back
  // to the end; a fill kept in memory only has dropped it by then: passed through instead.
  const unservableRange = head.verified && fill.memoryOnly && req.method === 'GET' && req.headers.range !== undefined;
  const asks = !unservableRange && cache === 'COLLAPSED' && joins !== undefined;
  // Held as a reader while it asks (a name's question is a round trip upstream): a fill
  // that ends meanwhile keeps its file open for its readers only. (Released at the latest
  // when the response closes: see readUntilClosed.)
  const asking = asks ? readUntilClosed(fill, reply.raw) : undefined;
  const verdict = asks ? await joins(head) : !unservableRange;
  if (!verdict) {
    asking?.release();
    ctx.metrics.miss(kind);
    return passthrough();
  }
  countFill(ctx, kind, cache);
  const said: CacheStatus = verdict === 'stale' ? 'STALE' : cache;
  const whole = req.method === 'GET' ? fill.wholeBody() : undefined;
  const small = whole && (await whole);
  // A Range of a body of unknown size is answered once the fill ended (to know the size):
  // held as a reader meanwhile, the fill keeps its file (or windows) for it.
  // Released when its client goes too, not only once the fill ended: a client gone while
  // a fill not kept runs (a stalled upstream, say) must not keep it going (see Fill.unread).
  const held = req.method === 'GET' && !small && head.size === undefined && req.headers.range !== undefined ? readUntilClosed(fill, reply.raw) : undefined;
  try {
    await sendBody(req, reply, {
      status: head.status,
      headers: head.headers,
      size: small ? small.length : head.size,
      content: small ?? ((reply, start, length, sent) => sendFill(takeOver(reply), fill, start, length === undefined ? Infinity : start + length - 1, sent)),
      finalSize: async () => {
        await fill.done;
        if (fill.error) throw fill.error;
        return fill.written;
      },
    }, { kind, cache: said, ageSeconds: 0, metrics: ctx.metrics });
  } finally {
    held?.release();
    asking?.release();
  }
}

/**
 * Whether the answer a fill got may also answer a request that joined it (a mirror's
 * answer can be one client's: Set-Cookie, private, another Vary variant; a name's may be
 * older than the request, namespace.ts's nameJoins). Without one, every joiner is served by
 * the fill it joined; one refused passes through. 'stale': upstream could not tell whether
 * the answer is still current; served, said STALE, as a stored copy is then.
 */
export type JoinCheck = (head: FillHead) => JoinVerdict | Promise<JoinVerdict>;
type JoinVerdict = boolean | 'stale';

/** How a request whose answer must be fresh for it (a mirror's, RFC 9111) uses other requests' answers. */
export interface Freshness {
  readonly joins: JoinCheck;
  /**
   * Serves the request from the entry another worker's fill just stored as it serves any
   * entry it finds: fresh for it, or revalidated (a request with no-cache is never
   * answered from it as it stands). Without it, the entry is served as it is found.
   */
  readonly stored?: () => Promise<void>;
}

function countFill(ctx: CacheContext, kind: Kind, cache: CacheStatus): void {
  if (cache === 'COLLAPSED') ctx.metrics.collapsed(kind);
  else ctx.metrics.miss(kind);
}

/**
 * A miss: joins the fill in flight for `key` (in this process, or in the worker that
 * claimed it), or starts it, so concurrent requests make one upstream request. The request
 * to upstream is made inside the fill: a request arriving while it waits for upstream's
 * headers joins too. `probed: false` when the caller did not look for the entry on disk:
 * in a worker, one another worker stored is found here.
 */
export async function fillOnce(
  ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: Kind, key: string, spec: FillSpec, direct: Direct,
  probed = true, freshness?: Freshness,
): Promise<void> {
  if (!probed && !ctx.fills.get(key) && ctx.store.storedElsewhere(spec.id)) return serveStored(ctx, req, reply, kind, spec.id, direct);
  let got;
  try {
    got = await ctx.fills.acquire(key, spec, req.method === 'GET' && req.headers.range !== undefined);
  } catch (err) {
    if (!(err instanceof StorageError)) throw err;
    ctx.metrics.miss(kind);
    return direct();
  }
  // Another worker's fill that ended meanwhile: its entry is likely stored.
  if (!got) return freshness?.stored ? freshness.stored() : serveStored(ctx, req, reply, kind, spec.id, direct);
  return serveFill(ctx, req, reply, kind, got.fill, got.lead ? 'MISS' : 'COLLAPSED', direct, freshness?.joins);
}

/** Serves an entry another worker stored; passes through when it is not there (evicted meanwhile, rare). */
async function serveStored(ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: Kind, id: string, direct: Direct): Promise<void> {
  const hit = await ctx.store.lookup(id);
  if (hit && (await serveHit(ctx, req, reply, kind, hit))) return;
  return direct();
}

/**
 * The headers of a passthrough GET, with the client's Range and If-Range: upstream answers
 * the range (206), as the cache would from a stored copy. A full answer already in hand (a
 * fill's, refused by the disk) is dropped for such a request and the range asked for.
 */
function withRange(req: FastifyRequest, headers: HeaderMap): HeaderMap {
  return req.headers.range === undefined ? headers : { ...headers, ...pickHeaders(req.headers, RANGE_FIELDS) };
}

/** Whether the request says `Cache-Control: only-if-cached` (RFC 9111 §5.2.1.7): a stored answer, or a 504, never upstream. */
export function onlyIfCached(req: FastifyRequest): boolean {
  return /(^|[\s,])only-if-cached\b/i.test(String(req.headers['cache-control'] ?? ''));
}

/**
 * The answer to an only-if-cached request that no stored answer can serve: the answer its
 * client asked for (push asks so which bases a region's cache holds, on every push), not a
 * failure, so neither logged nor counted as one (server.ts).
 */
export class NotCachedError extends FleetError {
  constructor() {
    super('FC_ERR_UPSTREAM_TIMEOUT', 'only-if-cached: no stored response can answer this request without asking upstream');
  }
}

export function notCached(): FleetError {
  return new NotCachedError();
}

/**
 * The status and fields of upstream's answer, passed on: its Age as upstream said it (a CDN's
 * or a parent cache's copy is that old already: an Age of 0 would have a cache downstream
 * keep it fresh that much longer), 0 when it said none; UNTYPED_BODY when it gave a body no
 * type, as every other way of answering does (fastify would type a small body, sent as a
 * Buffer, and not a large one, sent as a stream).
 */
function passedOn(reply: FastifyReply, status: number, headers: AnswerFields): void {
  reply.code(status).headers(headers).header('x-cache', 'MISS');
  if (lacksType(status, headers)) reply.header('content-type', UNTYPED_BODY);
  if (headers.age === undefined) reply.header('age', '0');
}

/** A passthrough of the request being served, of `answered` when upstream has already answered it. */
export type Direct = (answered?: UpstreamAnswer) => Promise<void>;

/** How a route's passthrough answers: as its fill would decide, with what changes to upstream's fields. */
interface PassedThrough {
  /** The fill's decision (FillSpec.decide): the status and fields a HEAD is answered with, those its GET would have. */
  readonly decide: (head: AnswerHead) => FillDecision;
  /** Applied to the fields of upstream's answer to a GET (a mirror's redirects). */
  readonly adjust?: (headers: AnswerFields) => AnswerFields;
  /** Upstream's redirects are followed (a blob's, as its fill does: upstream.ts). */
  readonly follow?: boolean;
}

/**
 * The fields of a redirect target's blob (or part of it) as passed on: its size and range
 * (upstream.ts keeps no others), with the type, ETag and Cache-Control its fill would give
 * the whole blob (`decide`), as a stored blob's 206 has them.
 */
function redirectedBlobFields(res: AnswerHead, decide: PassedThrough['decide']): AnswerFields {
  return { ...endToEnd(res.headers), ...decide({ ...res, statusCode: 200 }).headers };
}

/** A HEAD's answer, which no body follows. */
const NO_BODY = Buffer.alloc(0);

/**
 * Proxies one request to upstream without keeping anything (HEAD misses, private answers,
 * full disk); `answered`: upstream's answer to a GET for it, already in hand. A HEAD is
 * answered with the fields the fill of a GET would give (`how.decide`), as a stored answer's
 * HEAD is: Accept-Ranges, the type, a blob's digest rather than its storage's ETag (RFC 9110 §9.3.2).
 */
export async function passthrough(
  ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: Kind, upstream: Upstream, path: string, headers: HeaderMap,
  answered: UpstreamAnswer | undefined, how: PassedThrough,
): Promise<void> {
  // a blob's source may redirect (a tooltool server, to a pre-signed URL): followed, as its fills do, the bodies dropped on the way counted
  const follow = how.follow ? (n: number): void => ctx.metrics.upstream(kind, n) : undefined;
  if (req.method === 'HEAD') {
    const head = await upstream.head(path, headers, follow);
    const decision = how.decide(head);
    const body = { status: decision.status, headers: decision.headers, size: announcedLength(head.headers), content: NO_BODY };
    return sendBody(req, reply, body, { kind, cache: 'MISS', ageSeconds: 0, metrics: ctx.metrics });
  }
  const adjust = how.adjust ?? ((h: AnswerFields) => h);
  let res = answered;
  if (res && res.statusCode === 200 && req.headers.range !== undefined) {
    res.body?.destroy(); // the whole object: the range is asked for instead
    res = undefined;
  }
  const ranged = withRange(req, headers);
  res ??= follow ? await upstream.fetch(path, ranged, 0, follow) : await upstream.request(path, { method: 'GET', headers: ranged });
  passedOn(reply, res.statusCode, res.redirected && res.statusCode < 300 ? redirectedBlobFields(res, how.decide) : adjust(endToEnd(res.headers)));
  if (res.whole !== undefined) {
    ctx.metrics.upstream(kind, res.whole.length);
    ctx.metrics.served(kind, res.whole.length);
    reply.send(res.whole);
    return;
  }
  // Upstream's bytes counted as they come: a client that goes away mid-body (the stream is
  // then destroyed) still cost them. Each is handed to the socket as it comes (piped): served.
  res.body.on('data', (c: Buffer) => {
    ctx.metrics.upstream(kind, c.length);
    ctx.metrics.served(kind, c.length);
  });
  reply.send(res.body);
}
