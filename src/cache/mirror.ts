// /mirror/{name}/{path}: configured upstreams proxied with RFC 9111 semantics.
//
// Why http-cache-semantics and not undici's cache interceptor: undici's rules are only
// reachable through its client-side interceptor (its cache-control parsing and freshness
// code are internal), it forwards our clients' conditional requests instead of answering
// them, never stores or serves ranges, and its deduplication drops late joiners. This
// cache owns storage, single-flight, Range and client 304s, and asks http-cache-semantics
// (a pure policy object, used by npm and got) the three questions: storable? (new
// response), usable or revalidate? (evaluateRequest), still valid? (revalidatedPolicy on
// a 304). The policy is persisted with toObject() in each entry's sidecar.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import CachePolicy from 'http-cache-semantics';
import type { Dispatcher } from 'undici';
import { FleetError, NotFoundError, UpstreamError } from '../errors.js';
import { fillOnce, flightKey, notCached, onlyIfCached, passthrough, serveFill, serveHit, type CacheContext, type Direct, type Freshness, type JoinCheck } from './context.js';
import { httpId, type Hit } from './disk-store.js';
import { isDigestAlgorithm, parseDigest, type Digest } from '../store/digest.js';
import { getImmutable } from './namespace.js';
import type { FillDecision, FillSpec } from './fill.js';
import { dumpCounted, endToEnd, withoutRunToken, type AnswerFields, type HeaderMap, type Upstream } from './upstream.js';
import { loggedPath } from '../redact-url.js';
import { collapseKey, mirrorRequestFields, unkeyedFields } from './mirror-request.js';
import { parseHttpDate } from '../http/blob-reply.js';
import type { AnswerHead, UpstreamAnswer } from './answer-handler.js';

function flat(headers: CachePolicy.Headers): HeaderMap {
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/**
 * An upstream's response headers as http-cache-semantics reads them: a field sent on several
 * lines (RFC 9110 §5.3; nginx's `expires` plus `add_header Cache-Control`, two Vary lines)
 * joined into one list, as its parser expects strings. Set-Cookie stays a list.
 *
 * An Expires that is no HTTP-date (RFC 9110 §5.6.7) becomes "0": a cache must take it for a
 * time in the past (RFC 9111 §5.3), where http-cache-semantics reads it with Date.parse,
 * which takes "2099", "2099-01-01" or a date without its zone for that date, fresh for
 * decades. Sent on as "0", it means the same to every cache downstream, however lenient.
 */
function policyHeaders(headers: Record<string, string | string[] | undefined>): CachePolicy.Headers {
  const out: CachePolicy.Headers = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined) out[k] = Array.isArray(v) && k !== 'set-cookie' ? v.join(', ') : v;
  }
  if (typeof out.expires === 'string' && parseHttpDate(out.expires.trim()) === undefined) out.expires = '0';
  return out;
}

/**
 * The fields to answer with from `policy`: its responseHeaders() (hop-by-hop fields left out,
 * Age brought up to date; `headers`, when evaluateRequest gave them already), with the Date
 * upstream gave the answer, when it originated (RFC
 * 9110 §6.6.1), or the time it came when upstream gave none or no HTTP-date.
 * http-cache-semantics puts the time of each answer there: with an Age that already counts
 * the time since, a cache downstream reckoned the age twice, and took an answer fresh by its
 * Expires (reckoned from Date, RFC 9111 §4.2.1) for stale long before it was.
 */
function answerFields(policy: CachePolicy, headers: CachePolicy.Headers = policy.responseHeaders()): CachePolicy.Headers {
  const o = policy.toObject() as { t: number; resh: CachePolicy.Headers };
  const date = o.resh.date;
  const valid = typeof date === 'string' && parseHttpDate(date.trim()) !== undefined;
  return { ...headers, date: valid ? date : new Date(o.t).toUTCString() };
}

/** The request fields a stored response's Vary names, lower-case ("*" among them if it says so). */
function varyFields(resh: CachePolicy.Headers): string[] {
  return String(resh.vary ?? '').toLowerCase().split(',').map((f) => f.trim()).filter(Boolean);
}

/** The response fields of a 304 that do not describe the stored body (RFC 9111 §3.2): not applied to it. */
const BODY_FIELDS = new Set(['content-length', 'content-encoding', 'transfer-encoding', 'content-range']);

/**
 * The policy of a stored response after a 304 that matches it (RFC 9111 §4.3.4): every
 * field of the 304 but those describing the body replaces or joins the stored ones
 * (http-cache-semantics only replaces fields the stored response had: a 304 adding
 * Cache-Control would be lost). Undefined when the 304 matches no stored response: it
 * must then not update it, and the body is asked for again.
 *
 * The entry stays everyone's: a Set-Cookie of the 304 (one client's session) is not kept
 * nor served from it, a 304 that adds a Vary on a credential (whose value the sidecar
 * would keep) refreshes nothing, and the policy is rebuilt on the request it was stored
 * for, not on this one (an Authorization here would make it no one else's).
 */
function refreshedPolicy(policy: CachePolicy, policyReq: CachePolicy.Request, notModified: CachePolicy.Headers, sentAt: number): CachePolicy | undefined {
  const stored = policy.toObject() as { resh: CachePolicy.Headers; st: number; reqh: CachePolicy.Headers | null };
  if (strongTagDiffers(stored.resh.etag, notModified.etag)) return undefined;
  const outcome = policy.revalidatedPolicy(policyReq, { status: 304, headers: notModified });
  if (!outcome.matches || outcome.modified) return undefined;
  const headers: CachePolicy.Headers = { ...stored.resh };
  for (const [k, v] of Object.entries(notModified)) if (!BODY_FIELDS.has(k) && k !== 'set-cookie') headers[k] = v;
  if (varyFields(headers).some((field) => SECRET_FIELDS.has(field))) return undefined;
  return agedFromRequest(new CachePolicy({ ...policyReq, headers: stored.reqh ?? {} }, { status: stored.st, headers }, { shared: true }), sentAt);
}

/**
 * `policy` with its answer's age counted from `sentAt`, when the request it answers was sent
 * (RFC 9111 §4.2.3: the response delay is part of its age), not from when the answer came,
 * as http-cache-semantics counts it. An answer that took seconds to come (an upstream slow
 * to answer, a worker that did not run meanwhile) was fresh for its whole max-age after it
 * came: served as fresh while upstream may have replaced it since it answered.
 */
function agedFromRequest(policy: CachePolicy, sentAt: number | undefined): CachePolicy {
  return sentAt === undefined ? policy : CachePolicy.fromObject({ ...policy.toObject(), t: sentAt });
}

/**
 * Whether a 304's strong ETag is not the stored response's own (RFC 9111 §4.3.4: a 304 with
 * a strong validator updates only a stored response with that same strong validator).
 * http-cache-semantics compares them weakly: nginx answers a request for its gzip copy
 * (W/"x") with a 304 carrying the plain copy's "x", which made the gzip bytes the
 * strong "x", and a client resuming the plain file with If-Range: "x" got gzip bytes.
 */
function strongTagDiffers(storedTag: CachePolicy.Headers[string], tag: CachePolicy.Headers[string]): boolean {
  return typeof tag === 'string' && !tag.startsWith('W/') && storedTag !== tag;
}

/** Response directives that apply once a response is stale (RFC 9111 §5.2.2.2, §5.2.2.8). */
const STALE_ONLY = ['must-revalidate', 'proxy-revalidate'];

/**
 * policy.evaluateRequest, but a fresh response with must-revalidate or proxy-revalidate is
 * served: http-cache-semantics 4.3.0 has every request with either revalidated (and, with
 * proxy-revalidate, holds the response fresh for 0 s in a shared cache), where RFC 9111
 * applies them to stale responses only (kornelski/http-cache-semantics#54, open). The
 * response is judged without them; it is served only when fresh, with its real headers.
 */
function evaluate(policy: CachePolicy, policyReq: CachePolicy.Request): ReturnType<CachePolicy['evaluateRequest']> {
  const result = policy.evaluateRequest(policyReq);
  if (result.response && !result.revalidation) return result;
  const lenient = whileFresh(policy);
  if (!lenient) return result;
  const judged = lenient.evaluateRequest(policyReq);
  return judged.response && !judged.revalidation ? { response: { headers: policy.responseHeaders() }, revalidation: undefined } : result;
}

/** `policy` without the directives that apply once it is stale (STALE_ONLY), to judge it while fresh; undefined when it has none. */
function whileFresh(policy: CachePolicy): CachePolicy | undefined {
  const o = policy.toObject() as CachePolicy.CachePolicyObject & { rescc: Record<string, string | boolean> };
  if (!STALE_ONLY.some((directive) => directive in o.rescc)) return undefined;
  const rescc = Object.fromEntries(Object.entries(o.rescc).filter(([directive]) => !STALE_ONLY.includes(directive)));
  return CachePolicy.fromObject({ ...o, rescc } as CachePolicy.CachePolicyObject);
}

/**
 * Whether a stored response may be served stale because upstream fails (stale-if-error):
 * never one that forbids it (must-revalidate, proxy-revalidate, s-maxage for a shared
 * cache, no-cache: RFC 9111 §4.2.4, §5.2.2), and only to a request its Vary fields match
 * (§4.1): one client's variant (a gzip body, an authenticated answer) is not another's.
 */
function mayServeStale(policy: CachePolicy, policyReq: CachePolicy.Request): boolean {
  const stored = policy.toObject() as { resh: CachePolicy.Headers; reqh: CachePolicy.Headers | null };
  const cc = String(stored.resh['cache-control'] ?? '').toLowerCase();
  if (/(^|[\s,])(must-revalidate|proxy-revalidate|s-maxage|no-cache)\b/.test(cc)) return false;
  return varyFields(stored.resh).every((field) => field !== '*' && String(stored.reqh?.[field] ?? '') === String(policyReq.headers[field] ?? ''));
}

/** A stored policy; an entry kept before repeated fields were joined (policyHeaders) gets them joined now. */
function loadPolicy(stored: CachePolicy.CachePolicyObject): CachePolicy {
  const o = stored as CachePolicy.CachePolicyObject & { resh: Record<string, string | string[] | undefined> };
  return CachePolicy.fromObject({ ...o, resh: policyHeaders(o.resh) } as CachePolicy.CachePolicyObject);
}

/**
 * The policy as the entry's sidecar keeps it: of the request headers, only those its Vary
 * names (http-cache-semantics keeps them all when there is a Vary: a client's
 * Authorization or Cookie would be written to disk).
 */
function persisted(policy: CachePolicy): CachePolicy.CachePolicyObject {
  const o = policy.toObject() as CachePolicy.CachePolicyObject & { resh: CachePolicy.Headers; reqh: CachePolicy.Headers | null };
  if (!o.reqh) return o;
  const vary = new Set(varyFields(o.resh));
  return { ...o, reqh: Object.fromEntries(Object.entries(o.reqh).filter(([k]) => vary.has(k))) };
}

/** Whether `policyReq` has a field the stored answer of `policy` may not have been chosen by (unkeyedFields): it does not revalidate that answer. */
function unkeyedFor(policy: CachePolicy, policyReq: CachePolicy.Request): boolean {
  const { resh } = policy.toObject() as { resh: CachePolicy.Headers };
  return unkeyedFields(policyReq.headers, varyFields(resh), resh['content-encoding']).length > 0;
}

/**
 * Request fields whose values would be written to the entry's sidecar (the policy keeps the
 * request fields Vary names, to match later requests): an answer that varies on one of them
 * is not kept, so that no credential or session reaches the disk.
 */
const SECRET_FIELDS = new Set(['authorization', 'cookie', 'proxy-authorization']);

/** Whether a stored policy holds the value of one of SECRET_FIELDS (an entry kept before they were refused). */
function holdsSecret(stored: CachePolicy.CachePolicyObject): boolean {
  const reqh = (stored as { reqh?: Record<string, unknown> | null }).reqh;
  return reqh != null && Object.keys(reqh).some((field) => SECRET_FIELDS.has(field));
}

/**
 * `s` with its escapes decoded again, as a server behind another would: each run of them as
 * UTF-8 ("%EF%BC%8E" is a fullwidth "．", which NFKC then makes a "."), a byte that is no
 * UTF-8 as U+FFFD, as lenient decoders do: such a byte does not hide the characters of its
 * run from the check ("%FF%EF%BC%8F.." is "\uFFFD／..").
 */
function decodeAgain(s: string): string {
  return s.replace(/(?:%[0-9a-f]{2})+/gi, (run) => Buffer.from(run.replaceAll('%', ''), 'hex').toString('utf8'));
}

/**
 * Whether a raw path segment is, to some server, "." or "..": decoded once (as we do, and
 * malformed percent-encoding refused), then again while escapes remain (a server that
 * decodes twice: decodeAgain), each part also read up to a path parameter (Tomcat and
 * Jetty drop ";x" before resolving dots: "..;/"), a query or a
 * fragment (a server that parses the decoded path as a URL again: "..%3F" is its ".."), or
 * a NUL (a server in C reads a string up to it: "..%00x" is its ".."); all in Unicode's
 * compatibility form (NFKC, which leaves ASCII as it is): a server that maps characters to
 * it (IIS's "best fit", an application that normalises its paths) reads a fullwidth "．．"
 * or "‥" as "..", "／" as "/", and "％2e" as an escaped ".".
 */
function leavesBase(raw: string): boolean {
  let s: string;
  try {
    s = decodeURIComponent(raw);
  } catch {
    throw new FleetError('FC_ERR_BAD_NAME', 'mirror path: malformed percent-encoding');
  }
  for (let round = 0; round < 4; round++) {
    // Before the escapes are decoded again too: a fullwidth "％" is "%" to such a server ("％2e").
    s = s.normalize('NFKC');
    if (s.split(/[/\\]/).some((part) => /^\.\.?([;?#\0]|$)/.test(part))) return true;
    const again = decodeAgain(s);
    if (again === s) return false;
    s = again;
  }
  return true; // still encoded after four rounds: no mirror needs that
}

/**
 * The path (and query) to ask upstream for: the tail of the raw request URL, as the client
 * encoded it (the route's params are decoded: "%2F" would turn into "/", "%3F" into a
 * query). Refused when a segment is "." or ".." to a server that decodes before it
 * normalizes, even one hidden in an encoded segment ("a%2F..%2Fb"): it would leave the
 * mirror's base path.
 */
function upstreamPath(url: string): string {
  const q = url.indexOf('?');
  const path = q >= 0 ? url.slice(0, q) : url;
  const tail = path.slice(path.indexOf('/', '/mirror/'.length) + 1); // after "/mirror/{name}/"
  for (const raw of tail.split('/')) {
    if (leavesBase(raw)) throw new FleetError('FC_ERR_BAD_NAME', 'mirror path: "." or ".." segment refused (it could leave the mirror\'s base path)');
  }
  return `/${tail}${q >= 0 ? url.slice(q) : ''}`;
}

/** The digest a tooltool path names (`/{algo}/{hex}`, any query), or undefined for any other path. */
function tooltoolDigest(upath: string): Digest | undefined {
  const m = /^\/([a-z0-9]+)\/([0-9a-f]+)(?:\?|$)/.exec(upath);
  if (!m || !isDigestAlgorithm(m[1]!)) return undefined;
  try {
    return parseDigest(m[1], m[2]!);
  } catch {
    return undefined; // not a digest of its algorithm's length: an ordinary path
  }
}

/** The changes made to the fields of a mirror's answer (its redirects': mirroredLocation), to stored and passed-on ones alike. */
type Adjust = <Fields extends AnswerFields>(headers: Fields) => Fields;

function decide(policyReq: CachePolicy.Request, key: string, adjust: Adjust) {
  return (res: AnswerHead): FillDecision => {
    const resHeaders = policyHeaders(res.headers);
    const policy = agedFromRequest(new CachePolicy(policyReq, { status: res.statusCode, headers: resHeaders }, { shared: true }), res.sentAt);
    const { 'content-length': _length, ...fields } = answerFields(policy);
    // An answer that sets a cookie is one client's, even marked public (which http-cache-semantics
    // would keep): nginx and Varnish do not keep it either.
    // Nor one that varies on a credential (see SECRET_FIELDS), nor on "*", which no request
    // matches (RFC 9111 §4.1): kept, it was written anew by every request, evicting others.
    const vary = varyFields(resHeaders);
    // Nor one to a request with a field that may have chosen it unsaid (unkeyedFields).
    const unmatchable = vary.some((field) => SECRET_FIELDS.has(field) || field === '*') || unkeyedFields(policyReq.headers, vary, res.headers['content-encoding']).length > 0;
    if (!keptStatus(res.statusCode, policy, resHeaders) || !policy.storable() || res.headers['set-cookie'] !== undefined || unmatchable) return { status: res.statusCode, headers: adjust(endToEnd(fields)) };
    const headers = adjust(flat(fields));
    return { status: res.statusCode, headers, meta: { key, status: res.statusCode, headers, policy: persisted(policy) } };
  };
}

/**
 * Whether an answer is worth keeping, storable() permitting: one that some later request
 * can be served from. That is one fresh for a while (explicitly, max-age or Expires: a CDN's
 * "404 for five minutes", or heuristically, RFC 9111 §4.2.2: Last-Modified on a status
 * cacheable by default; stale-while-revalidate and stale-if-error count), or a 200 with a
 * validator (ETag, Last-Modified) that a revalidation can confirm with a 304. Any other
 * (no-cache, max-age=0 or Expires: 0 without a validator; another status without
 * freshness) would be asked for again in full by the next request and written anew each
 * time, evicting entries that do serve. The stored status is replayed as is; Range and
 * conditions apply to 200s only (RFC 9110 §13.2.1, §14.2).
 */
function keptStatus(status: number, policy: CachePolicy, headers: CachePolicy.Headers): boolean {
  // (proxy-revalidate has http-cache-semantics hold an answer fresh for 0 s: see evaluate)
  return (whileFresh(policy) ?? policy).timeToLive() > 0 || (status === 200 && (headers.etag !== undefined || headers['last-modified'] !== undefined));
}

/** `again`: the request looks a second time, after another worker's fill ended as it tried to join it. */
async function getMirror(ctx: CacheContext, req: FastifyRequest<{ Params: { name: string; '*': string } }>, reply: FastifyReply, again = false): Promise<void> {
  const mirror = ctx.mirrors.get(req.params.name);
  if (!mirror) throw new NotFoundError(`no mirror named "${req.params.name}"`);
  const { upstream } = mirror;
  const kind = `mirror:${upstream.name}`;
  const upath = upstreamPath(req.url);
  const blob = mirror.tooltool ? tooltoolDigest(upath) : undefined;
  if (blob) return getImmutable(ctx, req, reply, { kind, upstream, path: upath }, blob);
  const cacheKey = `mirror:${upstream.name}:${upath}`;
  const id = httpId(cacheKey);
  // A run token never reaches a mirror (Upstream leaves it out): the policy and the
  // collapsing do not see it either, or every machine's request would look authenticated.
  const fwd = withoutRunToken(mirrorRequestFields(req.headers));
  // Vary is unknown before the answer: only collapse requests that agree on what it may name
  // (collapseKey). Made only where a fill may be joined or started: it sorts the request's
  // fields, a cost a hit need not pay.
  let key: string | undefined;
  const fillKey = (): string => (key ??= flightKey(id, { headers: fwd }, collapseKey(fwd)));
  // The policy sees what upstream sees: its revalidation headers (a copy of the request's)
  // then carry no Host (a name-based upstream answers 404 to ours), hop-by-hop header or
  // client conditional. Authorization stays, so that a shared cache keeps a response to
  // an authenticated request only when public, s-maxage or must-revalidate allow it.
  const policyReq: CachePolicy.Request = { url: upath, method: 'GET', headers: fwd };
  const adjust: Adjust = (headers) => {
    const location = headers.location;
    return typeof location === 'string' ? { ...headers, location: mirroredLocation(location, upstream.url, req.params.name, upath) } : headers;
  };
  const direct: Direct = (answered) => passthrough(ctx, req, reply, kind, upstream, upath, fwd, answered, { decide: decide(policyReq, cacheKey, adjust), adjust });
  // A stored answer's fields come from its policy, as upstream sent them: adjusted as its first client got them.
  const replayed = (headers: CachePolicy.Headers): HeaderMap => adjust(withoutLength(headers));

  // (an answer not stamped yet is one asked now: see agedFromRequest)
  const fillSpec = (request: (gatherUpTo: number) => Promise<UpstreamAnswer>): FillSpec => ({
    id,
    request: async (gatherUpTo) => {
      const sentAt = Date.now();
      const answer = await request(gatherUpTo);
      return answer.sentAt === undefined ? { ...answer, sentAt } : answer;
    },
    decide: decide(policyReq, cacheKey, adjust),
    onUpstreamBytes: (n) => ctx.metrics.upstream(kind, n),
  });

  // A fill this request joins answers it only as the entry it will become would: a kept
  // answer (not private, no Set-Cookie) whose Vary matches, fresh for this request.
  const joins: JoinCheck = (head) => {
    if (!head.policy) return false;
    const { response, revalidation } = evaluate(loadPolicy(head.policy), policyReq);
    return response !== undefined && !revalidation?.synchronous;
  };
  // Looked at once more, then passed through: a loop of fills ending as it asks is not worth following.
  const freshness: Freshness = { joins, stored: again ? () => direct() : () => getMirror(ctx, req, reply, true) };
  // only-if-cached (RFC 9111 §5.2.1.7): a stored response that needs no upstream, else a 504
  const cachedOnly = onlyIfCached(req);
  // A fill that ended has stored its answer (or kept none): the entry is looked up, and revalidated if need be.
  const joined = cachedOnly || ctx.fills.size === 0 ? undefined : ctx.fills.get(fillKey());
  if (joined && !joined.ended) return serveFill(ctx, req, reply, kind, joined, 'COLLAPSED', direct, joins);
  let hit = await ctx.store.lookup(id);
  if (hit?.meta.policy && holdsSecret(hit.meta.policy)) {
    // kept by an older version, with a client's credential in its sidecar: dropped (disk too), not served
    ctx.store.delete(id);
    hit = undefined;
  }
  const policy = hit?.meta.policy ? loadPolicy(hit.meta.policy) : undefined;
  let revalidate: HeaderMap | undefined;
  if (hit && policy) {
    const { response, revalidation } = evaluate(policy, policyReq);
    // A request whose fields may choose another answer unsaid does not refresh nor replace the
    // stored one (a 304's fields would join it): it is answered from it, or by upstream, unkept.
    const conditional = revalidation && !unkeyedFor(policy, policyReq) ? flat(revalidation.headers) : undefined;
    if (response && (!revalidation || !revalidation.synchronous)) {
      if (await serveHit(ctx, req, reply, kind, hit, replayed(answerFields(policy, response.headers)), revalidation ? 'STALE' : 'HIT')) {
        // stale-while-revalidate: this answer was stale; the next ones will not be.
        if (conditional) revalidateInBackground(ctx, upstream, { id, key: fillKey(), kind, upath, hit, policy, policyReq, conditional }, fillSpec);
        return;
      }
    } else if (conditional) {
      revalidate = conditional;
    }
  }
  if (cachedOnly) throw notCached();
  if (!revalidate && req.method === 'HEAD') {
    // nothing stored to answer from: passed through, nothing filled (a stale entry is
    // revalidated below as for a GET, and may be served stale when upstream fails)
    ctx.metrics.miss(kind);
    return direct();
  }
  if (!revalidate) return fillOnce(ctx, req, reply, kind, fillKey(), fillSpec((gatherUpTo) => upstream.fetch(upath, fwd, gatherUpTo)), direct, true, freshness);
  let res: Dispatcher.ResponseData | undefined;
  let failure: unknown;
  const sentAt = Date.now();
  try {
    res = await upstream.request(upath, { method: 'GET', headers: revalidate ?? fwd });
  } catch (err) {
    failure = err;
  }
  if (hit && policy) {
    // A 304 that matches the stored response, or an error that stale-if-error covers, keeps the stored body.
    const status = res?.statusCode ?? 502;
    let kept: CachePolicy | undefined;
    if (status === 304) kept = refreshedPolicy(policy, policyReq, policyHeaders(res!.headers), sentAt);
    else if (status >= 500 && mayServeStale(policy, policyReq)) {
      const outcome = policy.revalidatedPolicy(policyReq, { status, headers: res ? policyHeaders(res.headers) : {} });
      if (!outcome.modified) kept = outcome.policy;
    }
    if (kept) {
      if (res) await dumpCounted(res, (n) => ctx.metrics.upstream(kind, n));
      if (status === 304) await ctx.store.updateMeta(id, { ...hit.meta, policy: persisted(kept) });
      else ctx.log.warn({ url: loggedPath(upath), status }, 'mirror upstream failing: serving stale (stale-if-error)');
      if (!(await serveHit(ctx, req, reply, kind, hit, replayed(answerFields(kept)), status === 304 ? 'HIT' : 'STALE'))) await direct();
      return;
    }
    // A new answer (gone, moved, made private, not storable any more, or a new body) replaces
    // the stored copy, or leaves none: the old one must not outlive it (served stale in an
    // outage later). The store's delete is done before the new answer's fill can commit.
    if (res && res.statusCode !== 304 && res.statusCode < 500) ctx.store.delete(id);
  }
  if (!res) throw failure instanceof UpstreamError ? failure : new UpstreamError(String(failure));
  if (res.statusCode === 304) {
    // The 304 matches not the stored copy (another validator, RFC 9111 §4.3.4): the copy goes,
    // and the full answer, asked for again, replaces it (a passthrough would leave the copy
    // to be revalidated in vain by every request).
    await res.body.dump();
    ctx.store.delete(id);
    return fillOnce(ctx, req, reply, kind, fillKey(), fillSpec((gatherUpTo) => upstream.fetch(upath, fwd, gatherUpTo)), direct, true, freshness);
  }
  const response = { ...res, sentAt };
  // A changed entry: this request's answer replaces it (others revalidate on their own).
  return serveFill(ctx, req, reply, kind, ctx.fills.start(fillKey(), fillSpec(() => Promise.resolve(response))), 'MISS', direct);
}

/** Entries being revalidated in the background, per cache (one conditional request at a time each). */
const revalidating = new WeakMap<CacheContext, Set<string>>();

interface Stale {
  readonly id: string;
  readonly key: string;
  /** What its bytes are counted under (CacheMetrics). */
  readonly kind: string;
  readonly upath: string;
  readonly hit: Hit;
  readonly policy: CachePolicy;
  readonly policyReq: CachePolicy.Request;
  readonly conditional: HeaderMap;
}

/** Background revalidations in flight (a new answer among them is also a fill: fills.drain waits for it). */
export function backgroundRevalidations(ctx: CacheContext): number {
  return revalidating.get(ctx)?.size ?? 0;
}

/**
 * After serving a stale entry within stale-while-revalidate: asks upstream once, with the
 * stored validators. A 304 refreshes the entry's policy; a new body is stored by a fill
 * that requests arriving meanwhile join. Failures only leave the entry stale.
 */
function revalidateInBackground(ctx: CacheContext, upstream: Upstream, s: Stale, fillSpec: (request: (gatherUpTo: number) => Promise<UpstreamAnswer>) => FillSpec): void {
  let pending = revalidating.get(ctx);
  if (!pending) revalidating.set(ctx, (pending = new Set()));
  if (pending.has(s.id) || ctx.fills.get(s.key)) return;
  pending.add(s.id);
  const run = async (): Promise<void> => {
    const sentAt = Date.now();
    const res = await upstream.request(s.upath, { method: 'GET', headers: s.conditional });
    if (res.statusCode === 304 || res.statusCode >= 500) {
      await dumpCounted(res, (n) => ctx.metrics.upstream(s.kind, n));
      const kept = res.statusCode === 304 ? refreshedPolicy(s.policy, s.policyReq, policyHeaders(res.headers), sentAt) : undefined;
      // a 304 that matches not leaves the entry stale: once past stale-while-revalidate, a
      // request revalidates in the foreground and fetches the body again
      if (kept) await ctx.store.updateMeta(s.id, { ...s.hit.meta, policy: persisted(kept) });
      return;
    }
    ctx.store.delete(s.id); // replaced by the new answer, or by none (see getMirror)
    await ctx.fills.start(s.key, fillSpec(() => Promise.resolve({ ...res, sentAt }))).done;
  };
  void run()
    .catch((err: Error) => ctx.log.warn({ url: loggedPath(s.upath), err: err.message }, 'background revalidation failed; the entry stays stale'))
    .finally(() => pending.delete(s.id));
}

function withoutLength(headers: CachePolicy.Headers): HeaderMap {
  const h = flat(headers);
  delete h['content-length'];
  return h;
}

/**
 * A redirect upstream sends to a place inside the mirror (an absolute path or URL under its
 * base) is rewritten to the same place under /mirror/{name}/ (nginx's `proxy_redirect
 * default`): followed as it is, it would lead the client to a 404 here, or past the cache.
 * A place on the upstream's host outside the base is made an absolute URL of that host
 * (without the credentials the mirror's URL may carry): as a path, the client would look
 * for it on the cache. Another host's URL is left alone.
 */
function mirroredLocation(location: string, base: string, name: string, upath: string): string {
  const trimmed = base.replace(/\/+$/, '');
  let resolved: URL;
  try {
    resolved = new URL(location, `${trimmed}${upath}`);
  } catch {
    return location;
  }
  const root = new URL(`${trimmed}/`);
  if (resolved.origin !== root.origin) return location;
  if (!resolved.pathname.startsWith(root.pathname)) {
    resolved.username = '';
    resolved.password = '';
    return resolved.href;
  }
  return `/mirror/${encodeURIComponent(name)}/${resolved.pathname.slice(root.pathname.length)}${resolved.search}${resolved.hash}`;
}

export function registerMirrorRoutes(app: FastifyInstance, ctx: CacheContext): void {
  app.route<{ Params: { name: string; '*': string } }>({
    method: ['GET', 'HEAD'],
    url: '/mirror/:name/*',
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      await getMirror(ctx, req, reply);
      return reply;
    },
  });
}
