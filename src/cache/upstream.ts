// One client per configured upstream (the origin, a parent cache, each mirror): a shared
// undici Pool with explicit connect/headers/body timeouts, hop-by-hop stripping, failures
// mapped to catalogued 502/504 errors so a miss never hangs, and a breaker that stops
// trying an upstream that refuses connections for a few seconds. A blob's fill follows
// upstream's redirects itself: a tooltool server answers every download with a 302 to a
// pre-signed URL that changes on each request (tooltool.md §4-5), which the cache must
// neither keep nor hand to its clients in place of the blob.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent, getGlobalDispatcher, Pool, type Dispatcher } from 'undici';
import { errorMessage, failedRequest, UpstreamError, type FailedRequest } from '../errors.js';
import { AnswerHandler, announcedLength, type AnswerHead, type UpstreamAnswer } from './answer-handler.js';
import { isRunToken } from '../client/run-token.js';
import { bearerToken } from '../http/auth.js';
import { requestUrl } from '../http/request-url.js';
import { unsatisfiableBody } from './serve.js';
import { loggedPath, redactUrl } from '../redact-url.js';
import { DEFAULT_UPSTREAM_CONNECTIONS, type UpstreamTimeouts } from './config.js';
import { redirectConnector, RefusedTargetError, type PrivateRedirects } from './redirect-targets.js';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'proxy-connection',
]);

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** Failures to reach upstream at all (as opposed to a slow or failing answer). */
const CONNECT_FAILURES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * After `failures` connection failures in a row the upstream is marked down for `openMs`:
 * misses answer 502 at once instead of each waiting for a connect timeout (nginx's
 * max_fails/fail_timeout). The first request after the pause tries again.
 */
const BREAKER = { failures: 5, openMs: 5_000 };

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Redirects a fill follows before it gives up (502), as tooltool's client (urllib) and curl bound them. */
const MAX_REDIRECTS = 5;

/**
 * The fields of a redirect target's blob the cache reads (its size, its range, how its body
 * ends); the target's own (cookies, x-amz-*, its ETag) are another host's and never reach a client.
 */
const TARGET_BLOB_FIELDS = ['content-length', 'content-range', 'content-type', 'accept-ranges', 'transfer-encoding'];

export type HeaderMap = Record<string, string>;

/**
 * The fields of an answer the cache passes on as upstream sent them: each one line but
 * Set-Cookie, whose lines are never joined (RFC 9110 §5.3: a cookie's Expires holds a comma).
 */
export type AnswerFields = Record<string, string | string[]>;

/** The value of the field `name` of an answer when it is one line (a validator, a date), else undefined. */
export function singleField(fields: AnswerFields, name: string): string | undefined {
  const v = fields[name];
  return typeof v === 'string' ? v : undefined;
}

/** The fields of `from` named in `names` that have one value. */
export function pickHeaders(from: IncomingHttpHeaders, names: readonly string[]): HeaderMap {
  const headers: HeaderMap = {};
  for (const name of names) {
    const v = from[name];
    if (typeof v === 'string') headers[name] = v;
  }
  return headers;
}

/** A request's fields that ask for part of the object: a passthrough forwards them, through redirects too. */
export const RANGE_FIELDS = ['range', 'if-range'];

/** `headers` without a machine's run token (`Bearer fcrun2.…`), which never goes to a server that is not fleetcache's. */
export function withoutRunToken(headers: HeaderMap): HeaderMap {
  const token = bearerToken(headers.authorization);
  if (token === undefined || !isRunToken(token)) return headers;
  const { authorization: _dropped, ...rest } = headers;
  return rest;
}

/**
 * An answer's end-to-end fields (hop-by-hop ones dropped, including those named by
 * Connection), each on one line but Set-Cookie's, kept as the lines upstream sent.
 */
export function endToEnd(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): AnswerFields {
  const out: AnswerFields = {};
  for (const [name, v] of endToEndEntries(headers)) out[name] = Array.isArray(v) && name === 'set-cookie' && v.length > 1 ? v : oneLine(v);
  return out;
}

/** A request's end-to-end fields (hop-by-hop ones dropped, including those named by Connection), each on one line. */
export function requestEndToEnd(headers: IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, v] of endToEndEntries(headers)) out[name] = oneLine(v);
  return out;
}

function oneLine(value: string | string[]): string {
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/** The fields of `headers` that are not hop-by-hop, with lower-case names. */
function endToEndEntries(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Array<[string, string | string[]]> {
  const connection = headers.connection;
  const named = new Set(
    (Array.isArray(connection) ? connection.join(',') : connection ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean),
  );
  const entries: Array<[string, string | string[]]> = [];
  for (const [k, v] of Object.entries(headers)) {
    const name = k.toLowerCase();
    if (v === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    entries.push([name, v]);
  }
  return entries;
}

function isTimeout(err: unknown): boolean {
  return typeof err === 'object' && err !== null && TIMEOUT_CODES.has(String((err as { code?: unknown }).code));
}

/** Told the bytes of a body read from upstream and dropped (CacheMetrics.upstream, for a kind). */
type DroppedBytes = (bytes: number) => void;

/** How much of a body to be dropped is read before the connection is cut instead (as undici's dump). */
const DROP_READ_LIMIT = 128 * 1024;
/** The longest a dropped body of unstated length is read (a chunked one stalling after its first chunk). */
const DROP_READ_MS = 1_000;

/** Drops an answer's body, gathered or not, telling `count` its bytes (dumpCounted). */
async function dropCounted(answer: UpstreamAnswer, count: DroppedBytes): Promise<void> {
  if (answer.body) await dumpCounted(answer, count);
  else count(answer.whole.length);
}

/**
 * Reads an answer's body to its end and drops it (a redirect's, a 5xx a stored copy is
 * served instead of, a 304's), telling `count` its bytes as they come: they crossed the link
 * all the same. Past DROP_READ_LIMIT bytes, or DROP_READ_MS, the body is destroyed; one
 * announced longer is destroyed at once, as undici's dump does: a host that sends it slowly
 * (a range-deaf storage's whole object, a stalled redirect page, chunked or not) would hold
 * the request as long as it likes, a byte per body timeout. Never rejects.
 */
export async function dumpCounted({ headers, body }: { readonly headers: IncomingHttpHeaders; readonly body: Readable }, count: DroppedBytes): Promise<void> {
  if (body.closed) return;
  if ((announcedLength(headers) ?? 0) > DROP_READ_LIMIT) {
    count(body.readableLength); // what already crossed and waits unread
    return void body.destroy();
  }
  let read = 0;
  const deadline = setTimeout(() => body.destroy(), DROP_READ_MS);
  await new Promise<void>((resolve) => {
    body.once('close', resolve).on('error', () => undefined).on('data', (chunk: Buffer) => {
      read += chunk.length;
      count(chunk.length);
      if (read > DROP_READ_LIMIT) body.destroy();
    });
    body.resume();
  });
  clearTimeout(deadline);
}

/**
 * Asks the upstream's /-/healthz once, as the cache starts, and warns on `log` when no answer
 * comes (a wrong host or port, an origin not started) or a 5xx does: the cache serves what it
 * holds, but its misses will fail until the upstream answers. Never throws; `stopped` (the
 * cache stopping) ends it at once, so that a silent upstream does not keep the process alive.
 */
export async function probeUpstream(upstream: string, timeoutMs: number, log: { warn(fields: object, message: string): void }, stopped: AbortSignal): Promise<void> {
  const url = `${upstream.replace(/\/+$/, '')}/-/healthz`;
  try {
    const res = await requestUrl(getGlobalDispatcher(), url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), stopped]) });
    await res.body.dump();
    if (res.statusCode >= 500) log.warn({ upstream: redactUrl(upstream), status: res.statusCode }, `the upstream answers HTTP ${res.statusCode}: misses will fail until it recovers`);
  } catch (err) {
    if (stopped.aborted) return;
    log.warn({ upstream: redactUrl(upstream), err: errorMessage(err) }, 'the upstream does not answer: misses will fail until it does; check the upstream URL');
  }
}

/** Maps a transport failure to UpstreamError (504 for timeouts, 502 otherwise). */
function upstreamFailure(name: string, err: unknown): UpstreamError {
  if (err instanceof UpstreamError) return err;
  return new UpstreamError(`upstream ${name}: ${withoutAddress(err)}`, { cause: err, timeout: isTimeout(err) });
}

/**
 * A failure as the cache's clients are told it: a system call's failure by its call and
 * code ("connect ECONNREFUSED"), without the address or host name Node adds (an anonymous
 * client learns nothing of the network behind the cache; the upstream's name says which).
 */
function withoutAddress(err: unknown): string {
  const { syscall, code } = (err ?? {}) as { syscall?: unknown; code?: unknown };
  if (typeof syscall === 'string' && typeof code === 'string') return `${syscall} ${code}`;
  return errorMessage(err);
}

/** How an Upstream treats its host (see its constructor). */
interface UpstreamOptions {
  readonly breaker?: { readonly failures: number; readonly openMs: number };
  readonly external?: boolean;
  readonly connections?: number;
  readonly privateRedirects?: PrivateRedirects;
}

interface UpstreamRequest {
  readonly method: 'GET' | 'HEAD' | 'PUT';
  readonly headers: HeaderMap;
  readonly body?: Readable;
  readonly signal?: AbortSignal;
}

export class Upstream {
  readonly name: string;
  readonly url: string;
  #pool: Pool;
  /** For the URLs upstream redirects to (other hosts: a pre-signed storage URL). */
  #elsewhere: Agent;
  #origin: string;
  #basePath: string;
  #breaker: { readonly failures: number; readonly openMs: number };
  #failuresInARow = 0;
  #downUntil = 0;
  /** Basic credentials from the URL (`https://user:password@host/`), for a request that brings none of its own. */
  #basic: string | undefined;

  readonly external: boolean;

  /**
   * `external`: a mirror's server, not fleetcache's: a machine's run token (`Bearer fcrun2.…`)
   * is never sent to it (a client's own credential for it is). `connections`: the most opened
   * to the upstream, and to each host it redirects to; requests past them wait their turn.
   * `privateRedirects`: whether its redirects may lead to addresses no public server is on
   * (redirect-targets.ts).
   */
  constructor(name: string, url: string, timeouts: UpstreamTimeouts, { breaker = BREAKER, external = false, connections = DEFAULT_UPSTREAM_CONNECTIONS, privateRedirects = 'auto' }: UpstreamOptions = {}) {
    this.#breaker = breaker;
    this.external = external;
    const u = new URL(url);
    this.name = name;
    this.url = url;
    this.#origin = u.origin;
    this.#basePath = u.pathname.replace(/\/+$/, '');
    // (u.origin drops them: undici never sent them)
    if (u.username || u.password) this.#basic = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
    const options = { connectTimeout: timeouts.connectMs, headersTimeout: timeouts.headersMs, bodyTimeout: timeouts.bodyMs, keepAliveTimeout: 10_000, connections };
    this.#pool = new Pool(u.origin, options);
    const connect = redirectConnector(privateRedirects, u.hostname, timeouts.connectMs);
    this.#elsewhere = new Agent(connect ? { ...options, connect } : options);
  }

  /**
   * A GET of `path` (a fill's) as an error names it (failedRequest: credentials and query
   * hidden): the URL upstream was asked, before any redirect. For the cache's log only.
   */
  namedGet(path: string): FailedRequest {
    return failedRequest('GET', `${this.#origin}${this.#basePath}${path}`);
  }

  /** Sends one request; `path` starts with "/" and may carry a query. Throws UpstreamError. */
  request(path: string, req: UpstreamRequest): Promise<Dispatcher.ResponseData> {
    return this.#attempt(() => this.#pool.request({
      path: this.#basePath + path,
      method: req.method,
      headers: this.#credentialed(req.headers),
      body: req.body ?? null,
      signal: req.signal,
    }));
  }

  /**
   * A fill's GET: its answer, with the body gathered whole when upstream announces at most
   * `gatherUpTo` bytes (answer-handler.ts). `follow`: a redirect is followed, and the
   * answer is the target's (`redirected`); the target gets none of `headers` (the client's
   * credentials are upstream's alone, as tooltool's client sends them) but a range asked
   * for (a passthrough's), only `accept-encoding: identity`. `follow` is told the bytes of
   * the bodies read and dropped on the way (a redirect's). Throws UpstreamError.
   */
  fetch(path: string, headers: HeaderMap, gatherUpTo: number, follow?: DroppedBytes): Promise<UpstreamAnswer> {
    const answer = this.#attempt(() => dispatchGet(this.#pool, { path: this.#basePath + path, method: 'GET', headers: this.#credentialed(headers) }, gatherUpTo));
    if (!follow) return answer;
    return answer.then((a) => (REDIRECTS.has(a.statusCode) ? this.#follow(a, path, gatherUpTo, { 'accept-encoding': 'identity', ...pickHeaders(headers, RANGE_FIELDS) }, follow) : a));
  }

  /**
   * Upstream's answer to a HEAD of `path`, its head. `follow` (a blob's, whose fill follows
   * redirects): a redirect is followed with a GET of the target's first byte, since a
   * pre-signed URL is signed for a GET (a HEAD would not match its signature), and that
   * answer read as the head of the whole object (wholeHead); `follow` is told the bytes
   * read and dropped on the way (that first byte, a redirect's body). Throws UpstreamError.
   */
  async head(path: string, headers: HeaderMap, follow?: DroppedBytes): Promise<AnswerHead> {
    const res = await this.request(path, { method: 'HEAD', headers });
    await res.body.dump();
    const head = { statusCode: res.statusCode, headers: res.headers };
    if (!follow || !REDIRECTS.has(res.statusCode)) return head;
    const target = await this.#follow({ ...head, whole: Buffer.alloc(0) }, path, 0, { 'accept-encoding': 'identity', range: 'bytes=0-0' }, follow);
    await dropCounted(target, follow);
    return wholeHead(target);
  }

  /** The answer at the end of upstream's redirects from `first`, its answer to `path`. */
  async #follow(first: UpstreamAnswer, path: string, gatherUpTo: number, headers: HeaderMap, dropped: DroppedBytes): Promise<UpstreamAnswer> {
    let answer = first;
    let from = `${this.#origin}${this.#basePath}${path}`;
    for (let hop = 0; REDIRECTS.has(answer.statusCode); hop++) {
      const location = answer.headers.location;
      if (typeof location !== 'string') break;
      await dropCounted(answer, dropped);
      const to = URL.canParse(location, from) ? new URL(location, from) : undefined;
      // The messages name no query string (a token, a signature): they reach the client and the log.
      if (!to) throw new UpstreamError(`upstream ${this.name}: a redirect to something that is not a URL, for ${loggedPath(path)}`);
      if (hop === MAX_REDIRECTS || (to.protocol !== 'http:' && to.protocol !== 'https:')) {
        throw new UpstreamError(`upstream ${this.name}: ${hop === MAX_REDIRECTS ? `more than ${MAX_REDIRECTS} redirects` : `redirect to a ${to.protocol} URL`} for ${loggedPath(path)}`);
      }
      try {
        const target = await dispatchGet(this.#elsewhere, { origin: to.origin, path: to.pathname + to.search, method: 'GET', headers }, gatherUpTo);
        answer = { ...target, redirected: to.href };
      } catch (err) {
        if (err instanceof RefusedTargetError) throw new UpstreamError(`upstream ${this.name}: ${err.message} for ${loggedPath(path)}`, { cause: err });
        throw upstreamFailure(this.name, err);
      }
      from = to.href;
    }
    if (answer.redirected && !isBlobAnswer(answer.statusCode, headers)) {
      await dropCounted(answer, dropped);
      // Neither the target's body nor its fields reach the client: a redirect can point
      // anywhere (127.0.0.1, a cloud's metadata address), and its answer is then not upstream's.
      throw new UpstreamError(`upstream ${this.name}: the URL it redirected to answered HTTP ${answer.statusCode} for ${loggedPath(path)}`, { status: answer.statusCode });
    }
    if (!answer.redirected) return answer;
    return answer.statusCode === 416 ? ownUnsatisfiable(answer, headers.range) : { ...answer, headers: pickHeaders(answer.headers, TARGET_BLOB_FIELDS) };
  }

  /**
   * `headers`, with the URL's credentials when they have no Authorization (never sent to a
   * redirect's target), and without a run token when upstream is external.
   */
  #credentialed(headers: HeaderMap): HeaderMap {
    const out = this.external ? withoutRunToken(headers) : headers;
    return this.#basic && out.authorization === undefined ? { ...out, authorization: this.#basic } : out;
  }

  /** Sends unless the breaker is open; counts connection failures in a row, and maps failures to UpstreamError. */
  async #attempt<T>(send: () => Promise<T>): Promise<T> {
    const wait = this.#downUntil - Date.now();
    if (wait > 0) {
      throw new UpstreamError(`upstream ${this.name}: marked down after ${this.#failuresInARow} failed connections in a row; next try in ${Math.ceil(wait / 1000)} s`);
    }
    try {
      const res = await send();
      this.#failuresInARow = 0;
      return res;
    } catch (err) {
      const code = String((err as { code?: unknown }).code);
      if (CONNECT_FAILURES.has(code) && ++this.#failuresInARow >= this.#breaker.failures) this.#downUntil = Date.now() + this.#breaker.openMs;
      throw upstreamFailure(this.name, err);
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.#pool.destroy(), this.#elsewhere.destroy()]);
  }
}

/**
 * Whether a redirect target's answer, to a GET sent with `headers`, is the blob or part of
 * it: a 2xx, or a 416 when a range was asked (a range past its end, or any of an empty blob).
 * A 404 is not passed on either: tooltool's client tries its next server on any non-2xx
 * (tooltool.md §3), and tooltool itself answers 404 for a digest it does not know, not by a redirect.
 */
function isBlobAnswer(status: number, headers: HeaderMap): boolean {
  return (status >= 200 && status < 300) || (status === 416 && headers.range !== undefined);
}

/**
 * The cache's own 416 in place of a redirect target's (to `range`): the size its
 * Content-Range gives (Upstream.head reads it; a client asks again with it) and a body as a
 * stored object's 416 (serve.ts), never the target's body or other fields.
 */
function ownUnsatisfiable(answer: UpstreamAnswer, range: string | undefined): UpstreamAnswer {
  answer.body?.destroy();
  const size = /^bytes \*\/(\d+)$/.exec(String(answer.headers['content-range']))?.[1];
  const headers = { 'content-type': 'application/json', 'cache-control': 'no-store', ...(size === undefined ? {} : { 'content-range': `bytes */${size}` }) };
  return { statusCode: 416, headers, whole: Buffer.from(unsatisfiableBody(range, size)), redirected: answer.redirected };
}

/**
 * The head of a whole object from the answer to a GET of its first byte (Upstream.head): a
 * 206 of the size its Content-Range gives, as a 200 (a 416 of an empty object's too); any
 * other answer (a 200 from a server that ignores Range, an error) as it is.
 */
function wholeHead(answer: AnswerHead): AnswerHead {
  const range = answer.headers['content-range'];
  const size = typeof range === 'string' ? /\/(\d+)$/.exec(range)?.[1] : undefined;
  if (size === undefined || (answer.statusCode !== 206 && answer.statusCode !== 416)) return answer;
  const { 'content-range': _range, ...headers } = answer.headers;
  return { statusCode: 200, headers: { ...headers, 'content-length': size }, redirected: answer.redirected };
}

function dispatchGet(dispatcher: Dispatcher, options: Dispatcher.DispatchOptions, gatherUpTo: number): Promise<UpstreamAnswer> {
  const handler = new AnswerHandler(gatherUpTo);
  dispatcher.dispatch(options, handler);
  return handler.answer;
}
