// GET and HEAD for the shared namespace: immutable content (/cas/{algo}/{hex} and the
// tooltool alias /{algo}/{hex}) is never revalidated once cached; names (/artifacts,
// /projects) are revalidated with upstream on every request and served stale if it is down.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { Dispatcher } from 'undici';
import { FleetError, UpstreamError } from '../errors.js';
import { etagOf } from '../http/blob-reply.js';
import { etagDigest } from '../http/name-etag.js';
import { ALGO_HEX_ROUTE, casPath, parseAliasDigest, parseDigest, type Digest } from '../store/digest.js';
import { authHeaders, cacheControlOf, fillOnce, notCached, onlyIfCached, takeFillRefused, type Direct, flightKey, isPrivate, passthrough, serveFill, serveHit, type CacheContext, type JoinCheck } from './context.js';
import { casHeaders, casId, httpId, type Hit } from './disk-store.js';
import type { FillDecision, FillSpec } from './fill.js';
import { dumpCounted, endToEnd, pickHeaders, singleField, type AnswerFields, type HeaderMap, type Upstream } from './upstream.js';
import { loggedPath } from '../redact-url.js';
import { REQUEST_ID_HEADER } from '../http/request-id.js';
import type { AnswerHead } from './answer-handler.js';

/** Immutable content: /cas/{algo}/{hex}, or the tooltool alias /{algo}/{hex}. */
export type ImmutableKind = 'cas' | 'tooltool';

/** How upstream has a named blob served to browsers (the origin: NAMED_BLOB_HEADERS), kept with it. */
export const BROWSER_HEADERS = ['x-content-type-options', 'content-security-policy'];

/** Headers of a name kept in its sidecar and replayed on hits. */
const NAME_HEADERS = ['content-type', 'etag', 'last-modified', 'cache-control', 'content-disposition', 'expires', ...BROWSER_HEADERS];

function passHeaders(res: AnswerHead): AnswerFields {
  const h = endToEnd(res.headers);
  delete h['content-length'];
  return h;
}

/** Cache-Control directives that let a shared cache keep an answer to a request with credentials (RFC 9111 §3.5). */
const SHARED_WITH_CREDENTIALS = /(?:^|[\s,])(?:public|s-maxage|must-revalidate)\b/i;

/**
 * `credentialed`: asked with the client's credentials. The answer is then kept only when
 * upstream says others may have it too (RFC 9111 §3.5: the origin marks public blobs
 * `public`); otherwise, or through a redirect (tooltool's, to a pre-signed URL, which says
 * nothing of the blob), it is served to that client as private and not kept.
 */
function decideImmutable(d: Digest, credentialed: boolean) {
  const key = casPath(d);
  return (res: AnswerHead): FillDecision => {
    if (res.statusCode !== 200 || isPrivate(res.headers)) return { status: res.statusCode, headers: passHeaders(res) };
    if (credentialed && (res.redirected || !SHARED_WITH_CREDENTIALS.test(cacheControlOf(res.headers)))) {
      return { status: 200, headers: { 'content-type': 'application/octet-stream', etag: etagOf(d), 'cache-control': 'private' } };
    }
    const headers = casHeaders(d);
    return { status: 200, headers, meta: { key, status: 200, headers } };
  };
}

function decideName(key: string) {
  return (res: AnswerHead): FillDecision => {
    if (res.statusCode !== 200 || isPrivate(res.headers)) return { status: res.statusCode, headers: passHeaders(res) };
    const headers = pickHeaders(res.headers, NAME_HEADERS);
    // Upstream's Age (its copy is that old already) goes to this answer, not to the entry, whose age counts from now.
    const age = res.headers.age;
    return { status: 200, headers: typeof age === 'string' ? { ...headers, age } : headers, meta: { key, status: 200, headers } };
  };
}

/** Where a blob is fetched from upstream: its own path (/cas/… or the tooltool alias /{algo}/…). */
function upstreamPath(kind: ImmutableKind, d: Digest): string {
  return kind === 'cas' ? `/cas/${d.algo}/${d.hex}` : `/${d.algo}/${d.hex}`;
}

/** Headers a GET sends upstream: the client's credentials, no compression (bodies are stored as they are), and the request's id if given. */
export function forwardHeaders(req: { readonly headers: IncomingHttpHeaders; readonly id?: string }): HeaderMap {
  const headers: HeaderMap = { ...authHeaders(req), 'accept-encoding': 'identity' };
  if (req.id !== undefined) headers[REQUEST_ID_HEADER] = req.id;
  return headers;
}

/** Where a blob is fetched from, and whose figures it counts in. */
interface BlobSource {
  readonly kind: string;
  readonly upstream: Upstream;
  readonly path: string;
}

/** The origin (or parent cache) as the source of a blob asked for as `kind`. */
export function originSource(ctx: CacheContext, kind: ImmutableKind, d: Digest): BlobSource {
  return { kind, upstream: ctx.upstream, path: upstreamPath(kind, d) };
}

/**
 * The fill of a blob: verified against its digest, kept under its content address.
 * Upstream's redirects are followed (see Upstream.fetch).
 */
export function immutableFill(ctx: CacheContext, source: BlobSource, d: Digest, fwd: HeaderMap): FillSpec {
  const { kind, upstream, path } = source;
  const onUpstreamBytes = (n: number): void => ctx.metrics.upstream(kind, n);
  return {
    id: casId(d),
    request: (gatherUpTo) => upstream.fetch(path, fwd, gatherUpTo, onUpstreamBytes),
    decide: decideImmutable(d, fwd.authorization !== undefined),
    verify: d,
    upstreamRequest: () => upstream.namedGet(path),
    onUpstreamBytes,
  };
}

/** GET or HEAD of a blob from `source`: a hit, a fill to join, or a new fill. */
export async function getImmutable(ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, source: BlobSource, d: Digest): Promise<void> {
  const { kind } = source;
  const id = casId(d);
  const key = flightKey(id, req);
  // A tooltool mirror's server is none of fleetcache's: the cache's request ids are not its business.
  const fwd = forwardHeaders(source.upstream.external ? { headers: req.headers } : req);
  const direct: Direct = (answered) => passthrough(ctx, req, reply, kind, source.upstream, source.path, fwd, answered, { decide: decideImmutable(d, fwd.authorization !== undefined), follow: true });
  const refused = takeFillRefused(req.raw);
  if (refused) {
    ctx.metrics.miss(kind);
    return direct(refused.answered);
  }
  // A GET that misses here asks the primary of a multi-process cache whether another
  // worker stored it (with its claim, see fillOnce) instead of looking on disk first.
  const probe = req.method === 'HEAD';
  const cachedOnly = onlyIfCached(req); // a stored copy (or a fill whose body is all here), or a 504: no fill led
  if (cachedOnly || !ctx.fills.get(key)) {
    // A copy damaged on disk since it was verified (bit rot, a bad block): dropped and fetched
    // again, instead of sending every machine of the region to the origin for good.
    // only-if-cached reaches no fillOnce: it looks on disk itself for what another worker
    // stored (workers are told of evictions only, never of each other's commits).
    const hit = await unlessDamaged(ctx, req, await ctx.store.lookup(id, probe || cachedOnly), d, 'stored blob does not match its digest');
    if (hit && (await serveHit(ctx, req, reply, kind, hit))) return;
    if (cachedOnly) {
      // A fill that received its whole body (verified) stores a blob after its readers end
      // (they do not wait for its flush to disk): until then, it answers as the copy would,
      // if it keeps it. The same in another worker (one process leads a key's fill).
      const received = await ctx.fills.findReceived(key, id);
      if (received) return serveFill(ctx, req, reply, kind, received, 'COLLAPSED', () => Promise.reject(notCached()));
      // Stored since it was looked for (the other worker's fill ended meanwhile)
      const stored = await ctx.store.lookup(id, true);
      if (stored && (await serveHit(ctx, req, reply, kind, stored))) return;
      throw notCached();
    }
    if (req.method === 'HEAD' && !ctx.fills.get(key)) {
      ctx.metrics.miss(kind);
      return direct();
    }
  }
  return fillOnce(ctx, req, reply, kind, key, immutableFill(ctx, source, d, fwd), direct, probe);
}

/**
 * A request with `Cache-Control: no-cache` (or `Pragma: no-cache`): RFC 9111 §5.2.1.4 asks a
 * stored answer be validated first. An immutable blob has nothing to revalidate upstream; what
 * can have gone wrong is the stored copy itself, so it is hashed again before it is served
 * (the agent asks so after a digest mismatch from a cache).
 */
function wantsRecheck(req: FastifyRequest): boolean {
  if (req.headers['cache-control'] === undefined) return /\bno-cache\b/i.test(String(req.headers.pragma ?? ''));
  return /(?:^|[\s,])no-cache\b/i.test(cacheControlOf(req.headers));
}

/**
 * `hit`, unless the request has no-cache and the copy does not hash to `d` (recheck): then it
 * is dropped (logged: `mismatch`) and undefined returned, for it to be fetched again.
 */
async function unlessDamaged(ctx: CacheContext, req: FastifyRequest, hit: Hit | undefined, d: Digest | undefined, mismatch: string): Promise<Hit | undefined> {
  if (!hit || !d || !wantsRecheck(req) || (await recheck(ctx, hit, d))) return hit;
  ctx.log.warn({ id: hit.id }, `${mismatch} (a client asked with no-cache): dropped, fetched again`);
  ctx.store.delete(hit.id);
  return undefined;
}

/**
 * Blobs hashed again in the last RECHECK_EVERY_MS: a no-cache request costs a read of the
 * whole blob, which clients (a browser's reload, a loop) must not be able to repeat at will.
 */
const RECHECK_EVERY_MS = 60_000;
/** Per cache process (tests run several caches in one): blobs hashed lately, and hashes under way. */
const rechecks = new WeakMap<CacheContext, { recent: LRUCache<string, true>; inflight: Map<string, Promise<boolean>> }>();

/**
 * Whether the stored copy `hit` may be served to a no-cache request: true when it hashes to
 * `d`, or was hashed within the last RECHECK_EVERY_MS. Requests that come while it is being
 * hashed wait for that hash (a region's machines retry together) rather than skip it.
 */
function recheck(ctx: CacheContext, hit: Hit, d: Digest): Promise<boolean> {
  let state = rechecks.get(ctx);
  if (!state) rechecks.set(ctx, (state = { recent: new LRUCache<string, true>({ max: 10_000, ttl: RECHECK_EVERY_MS }), inflight: new Map() }));
  const { recent, inflight } = state;
  if (recent.has(hit.id)) return Promise.resolve(true);
  let hashing = inflight.get(hit.id);
  if (!hashing) {
    hashing = intact(hit, d).finally(() => {
      inflight.delete(hit.id);
      recent.set(hit.id, true);
    });
    inflight.set(hit.id, hashing);
  }
  return hashing;
}

/** Whether the stored copy `hit` still hashes to `d`. */
async function intact(hit: Hit, d: Digest): Promise<boolean> {
  const hash = createHash(d.algo);
  if (hit.body) return hash.update(hit.body).digest('hex') === d.hex;
  try {
    for await (const chunk of createReadStream(hit.file)) hash.update(chunk as Buffer);
  } catch {
    return false; // unreadable: as damaged
  }
  return hash.digest('hex') === d.hex;
}

/**
 * The one spelling of a name's path: each segment decoded and encoded again, no query (the
 * origin reads neither). The entry's key and the path asked upstream: `?x=1`, `?x=2` or
 * `%61.txt` for `a.txt` would each be another entry, fetched over the slow link again.
 * A segment that does not decode is left as it is (upstream refuses it); one that decodes
 * to "." or ".." is refused here, as the origin refuses it: sent decoded, a proxy that
 * normalises paths would take it for another route.
 */
export function namePath(url: string): string {
  const q = url.indexOf('?');
  return (q >= 0 ? url.slice(0, q) : url).split('/').map((segment) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return segment;
    }
    if (decoded === '.' || decoded === '..') throw new FleetError('FC_ERR_BAD_NAME', 'name: "." or ".." segment refused');
    return encodeURIComponent(decoded);
  }).join('/');
}

/**
 * Whether a request for a name that came at `arrivedAt` may be served by the fill in flight
 * it joins: at once when the fill asked upstream after the request came; else only when
 * upstream says the name is unchanged since that answer (a HEAD with its ETag: 304, or the
 * same ETag from an upstream that answers conditions with the whole answer), as a stored
 * copy is revalidated. A name is revalidated on every request: a fill that asked before an
 * upload completed, behind a slow upstream or led by a stalled worker, must not hand out a
 * version older than an upload completed before the request came, however late its answer
 * came. Upstream failing that question: the fill's answer, said STALE, as a stored copy is
 * served then.
 */
function nameJoins(ctx: CacheContext, upath: string, fwd: HeaderMap, arrivedAt: number): JoinCheck {
  return async (head) => {
    if (head.askedAt > arrivedAt) return true;
    const etag = singleField(head.headers, 'etag');
    if (etag === undefined) return false;
    let now: AnswerHead;
    try {
      now = await ctx.upstream.head(upath, { ...fwd, 'if-none-match': etag });
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      ctx.log.warn({ url: loggedPath(upath), err: err.message }, 'upstream down: serving the answer of a fill in flight');
      return 'stale';
    }
    return now.statusCode === 304 || (now.statusCode === 200 && now.headers.etag === etag);
  };
}

async function getName(ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: 'artifacts' | 'projects'): Promise<void> {
  const arrivedAt = Date.now();
  const upath = namePath(req.url);
  const cacheKey = `GET ${upath}`;
  const id = httpId(cacheKey);
  const key = flightKey(id, req);
  const fwd = forwardHeaders(req);
  const decide = decideName(cacheKey);
  const direct: Direct = (answered) => passthrough(ctx, req, reply, kind, ctx.upstream, upath, fwd, answered, { decide });
  // a stored name is revalidated before it is served (no-cache): never without upstream
  if (onlyIfCached(req)) throw notCached();
  const joins = nameJoins(ctx, upath, fwd, arrivedAt);
  const joined = ctx.fills.get(key);
  if (joined) return serveFill(ctx, req, reply, kind, joined, 'COLLAPSED', direct, joins);
  const stored = await ctx.store.lookup(id);
  // A revalidation compares ETags, not bytes: a copy damaged on disk would be confirmed by
  // every 304. A no-cache request has it hashed against its ETag, the digest of its bytes.
  const hit = await unlessDamaged(ctx, req, stored, etagDigest(stored?.meta.headers.etag), 'stored name does not match its ETag digest');
  // HEAD of a stored name takes GET's path below (revalidation, the stored copy when upstream
  // is down, a changed name refetched and kept); a HEAD miss asks upstream for the headers only.
  if (!hit && req.method === 'HEAD') {
    ctx.metrics.miss(kind);
    return direct();
  }
  const onUpstreamBytes = (n: number): void => ctx.metrics.upstream(kind, n);
  if (!hit) {
    return fillOnce(ctx, req, reply, kind, key, { id, request: (gatherUpTo) => ctx.upstream.fetch(upath, fwd, gatherUpTo), decide, onUpstreamBytes }, direct, true, { joins });
  }
  let res: Dispatcher.ResponseData;
  try {
    const conditional: HeaderMap = {};
    if (hit.meta.headers.etag) conditional['if-none-match'] = hit.meta.headers.etag;
    if (hit.meta.headers['last-modified']) conditional['if-modified-since'] = hit.meta.headers['last-modified'];
    res = await ctx.upstream.request(upath, { method: 'GET', headers: { ...fwd, ...conditional } });
  } catch (err) {
    // stale-if-error: the stored copy beats an error while upstream is down.
    if (err instanceof UpstreamError && (await serveHit(ctx, req, reply, kind, hit, hit.meta.headers, 'STALE'))) {
      ctx.log.warn({ url: loggedPath(upath), err: err.message }, 'upstream down: serving stored copy');
      return;
    }
    throw err;
  }
  if (res.statusCode === 304) {
    await res.body.dump();
    // A 304 updates the stored headers it carries (RFC 9111 §4.3.4), this answer's at least;
    // validated just now, the answer is as old as the 304 says, not as the stored copy.
    const age = typeof res.headers.age === 'string' ? res.headers.age : '0';
    const headers = { ...hit.meta.headers, ...pickHeaders(res.headers, NAME_HEADERS), age };
    const served = await serveHit(ctx, req, reply, kind, hit, headers);
    // Now private (the name's blob became internal at the origin): served to this client,
    // whose credentials upstream just accepted, and no longer kept for anyone else.
    if (isPrivate(res.headers)) ctx.store.delete(id);
    if (!served) await direct();
    return;
  }
  // Gone, or now readable only with credentials: the stored copy must not outlive it (it
  // would be served to anyone while upstream is down).
  if (res.statusCode === 404 || res.statusCode === 410 || res.statusCode === 401 || res.statusCode === 403) ctx.store.delete(id);
  if (res.statusCode >= 500) {
    await dumpCounted(res, onUpstreamBytes);
    if (await serveHit(ctx, req, reply, kind, hit, hit.meta.headers, 'STALE')) return;
    throw new UpstreamError(`upstream ${ctx.upstream.name}: HTTP ${res.statusCode}`, { status: res.statusCode });
  }
  // A changed name: this request's answer becomes the new entry (others revalidate on their own).
  const fill = ctx.fills.start(key, { id, request: () => Promise.resolve(res), decide, onUpstreamBytes });
  return serveFill(ctx, req, reply, kind, fill, 'MISS', direct);
}

export function registerNamespaceRoutes(app: FastifyInstance, ctx: CacheContext): void {
  const methods: ('GET' | 'HEAD')[] = ['GET', 'HEAD'];
  // A blob by its digest, as /cas/ or as tooltool's alias /{algo}/{hex} (whose query string, ?region=…, is ignored).
  // A malformed digest: /cas's 400, the tooltool alias's 404 (parseAliasDigest).
  const digestRoutes: Array<[url: string, kind: ImmutableKind, parse: typeof parseDigest]> = [['/cas/:algo/:hex', 'cas', parseDigest], [ALGO_HEX_ROUTE, 'tooltool', parseAliasDigest]];
  for (const [url, kind, parse] of digestRoutes) {
    app.route<{ Params: { algo: string; hex: string } }>({
      method: methods,
      url,
      exposeHeadRoute: false,
      handler: async (req, reply) => {
        const d = parse(req.params.algo, req.params.hex);
        await getImmutable(ctx, req, reply, originSource(ctx, kind, d), d);
        return reply;
      },
    });
  }
  for (const kind of ['artifacts', 'projects'] as const) {
    app.route({ method: methods, url: `/${kind}/*`, exposeHeadRoute: false, handler: async (req, reply) => {
      await getName(ctx, req, reply, kind);
      return reply;
    } });
  }
}
