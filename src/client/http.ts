// The client side of the shared namespace, over undici: streaming GET and PUT with
// errors mapped to the catalogue. Used by push/pull, assets, the agent and the runner.
import { Agent, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { refuseQueryOrFragment } from '../config/units.js';
import { errorMessage, failedRequest, FleetError, NotFoundError, UpstreamError, type ErrorCode } from '../errors.js';
import { requestUrl } from '../http/request-url.js';
import { redactUrl } from '../redact-url.js';
import { cacheSpeedFloor, uploadWithSpeedFloor, withSpeedFloor, type SpeedFloor } from './speed-floor.js';

/** How long opening a connection (TCP, then TLS) may take, unless the request says (RequestOptions.connectTimeout). */
const CONNECT_TIMEOUT_MS = 10_000;

function agentConnectingWithin(connectTimeout: number): Agent {
  return new Agent({ connections: 64, connectTimeout, headersTimeout: 60_000, bodyTimeout: 120_000, keepAliveTimeout: 10_000 });
}

export const clientAgent = agentConnectingWithin(CONNECT_TIMEOUT_MS);

/** The agents of other connect timeouts than clientAgent's, one per value (a fleet's cacheTimeout: a value or two per process). */
const agentsByConnectTimeout = new Map<number, Agent>([[CONNECT_TIMEOUT_MS, clientAgent]]);

/**
 * clientAgent, or with `connectTimeout` one like it whose connections may take that long to
 * open: undici sets the connect timeout per agent, not per request.
 */
function clientAgentFor(connectTimeout: number | undefined): Agent {
  if (connectTimeout === undefined) return clientAgent;
  let agent = agentsByConnectTimeout.get(connectTimeout);
  if (!agent) agentsByConnectTimeout.set(connectTimeout, (agent = agentConnectingWithin(connectTimeout)));
  return agent;
}

/** Told of a transfer as its bytes pass: a bar on a terminal (src/cli/progress.ts). */
export type Progress = (label: string, total: number | undefined) => (bytes: number) => void;

export interface RequestOptions {
  readonly token?: string;
  readonly headers?: Record<string, string>;
  readonly signal?: AbortSignal;
  readonly dispatcher?: Dispatcher;
  /** Reports a streamed body's bytes (an upload's, or a download's where its reader passes them on). */
  readonly progress?: Progress;
  /**
   * How long the answer may keep silent: for its headers, then between two chunks of its
   * body (clientAgent's 60 s and 120 s otherwise).
   */
  readonly idleTimeout?: number;
  /** The least rate the answer's body, and a streamed upload's, may keep up over a window before it is given up on (speed-floor.ts). */
  readonly speedFloor?: SpeedFloor;
  /** How long opening the connection may take (clientAgent's 10 s otherwise); not with `dispatcher`, whose own applies. */
  readonly connectTimeout?: number;
}

/** What a machine allows a cache, not the origin, from the fleet's cacheTimeout (docs/run.md). */
export type CacheLimits = Pick<RequestOptions, 'connectTimeout' | 'idleTimeout' | 'speedFloor'>;

/**
 * A cache may take `cacheTimeoutMs` to accept the connection (no more than any server's 10 s:
 * a longer cacheTimeout, for a slow cache's answers, would have a black-holed one cost more),
 * keep silent as long, and must keep up cacheSpeedFloor.
 */
export function cacheLimits(cacheTimeoutMs: number): CacheLimits {
  return { connectTimeout: Math.min(cacheTimeoutMs, CONNECT_TIMEOUT_MS), idleTimeout: cacheTimeoutMs, speedFloor: cacheSpeedFloor(cacheTimeoutMs) };
}

/**
 * undici's dispatcher and timeouts for a request under `options`' limits (the caller's
 * dispatcher, or clientAgent's connect timeout; the speed floor; the idle timeout): the
 * same for send and for callers of undici's request itself (an asset's GET).
 */
export function limitedDispatch(options: Pick<RequestOptions, 'dispatcher' | 'connectTimeout' | 'idleTimeout' | 'speedFloor'>): { dispatcher: Dispatcher; headersTimeout?: number; bodyTimeout?: number } {
  return {
    dispatcher: withSpeedFloor(options.dispatcher ?? clientAgentFor(options.connectTimeout), options.speedFloor),
    ...(options.idleTimeout !== undefined ? { headersTimeout: options.idleTimeout, bodyTimeout: options.idleTimeout } : {}),
  };
}

/** `body` counted into `tick` as it is read. */
function counted(body: Readable, tick: (bytes: number) => void): Readable {
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      tick(chunk.length);
      cb(null, chunk);
    },
  });
  body.once('error', (err) => tap.destroy(err));
  return body.pipe(tap);
}

/** The length an upload states (its Content-Length), the total of its progress bar; undefined when it states none. */
function declaredLength(options: RequestOptions): number | undefined {
  const length = options.headers?.['content-length'];
  return length === undefined ? undefined : Number(length);
}

function headersFor(options: RequestOptions): Record<string, string> {
  const headers: Record<string, string> = { 'accept-encoding': 'identity', ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  return headers;
}

/** What of an error answer's body is read, for its message. */
const ERROR_BODY_BYTES = 4096;
/** The largest JSON answer read (run manifests, base listings, artifact indexes are far smaller). */
export const MAX_JSON_BYTES = 64 * 2 ** 20;

/**
 * The first `limit` bytes of `body` as text, and whether that was all of it: what is past
 * the limit is not read (the connection is closed), so a server cannot fill the memory.
 */
async function readAtMost(body: Dispatcher.ResponseData['body'], limit: number): Promise<{ text: string; whole: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      return { text: Buffer.concat(chunks).subarray(0, limit).toString('utf8'), whole: false };
    }
  }
  return { text: Buffer.concat(chunks).toString('utf8'), whole: true };
}

/**
 * The codes of a server's error answer that say what is wrong with this request or its
 * object: the client's error is the same one (and so is its exit status: a bad name is a
 * usage error, a full disk not a passing upstream failure to try again). Any other code (the
 * server's own failure, one of its upstream) is an upstream error.
 */
const REQUEST_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'FC_ERR_BAD_REQUEST', 'FC_ERR_BAD_DIGEST', 'FC_ERR_BAD_NAME', 'FC_ERR_DIGEST_MISMATCH', 'FC_ERR_SIZE_MISMATCH', 'FC_ERR_TOO_LARGE',
  'FC_ERR_TOO_MANY_HEADERS', 'FC_ERR_RANGE', 'FC_ERR_PRECONDITION_FAILED', 'FC_ERR_METHOD_NOT_ALLOWED', 'FC_ERR_NOT_IMPLEMENTED', 'FC_ERR_HTTP_VERSION', 'FC_ERR_UNAUTHORIZED',
  'FC_ERR_FORBIDDEN', 'FC_ERR_ABORTED', 'FC_ERR_INSUFFICIENT_STORAGE', 'FC_ERR_QUOTA', 'FC_ERR_LENGTH_REQUIRED', 'FC_ERR_UNSUPPORTED_ENCODING',
]);

/** Turns a non-2xx answer into a catalogued error, using the server's JSON body when it has one. */
async function failure(url: string, method: string, res: Dispatcher.ResponseData): Promise<never> {
  let body = '';
  try {
    body = (await readAtMost(res.body, ERROR_BODY_BYTES)).text.slice(0, 2000);
  } catch {
    // the body is only used to improve the message
  }
  let message = `${method} ${redactUrl(url)}: HTTP ${res.statusCode}`;
  let code: string | undefined;
  try {
    const parsed = JSON.parse(body) as { code?: string; message?: string };
    if (parsed.message) message += `: ${parsed.message}`;
    code = parsed.code;
  } catch {
    if (body) message += `: ${body.split('\n')[0]}`;
  }
  const request = failedRequest(method, url);
  if (res.statusCode === 404) throw new NotFoundError(message, request);
  if (code !== undefined && REQUEST_CODES.has(code)) throw new FleetError(code as ErrorCode, message, { request });
  if (res.statusCode === 401) throw new FleetError('FC_ERR_UNAUTHORIZED', message, { request });
  if (res.statusCode === 403) throw new FleetError('FC_ERR_FORBIDDEN', message, { request });
  if (res.statusCode === 413) throw new FleetError('FC_ERR_TOO_LARGE', message, { request });
  if (res.statusCode === 412) throw new FleetError('FC_ERR_PRECONDITION_FAILED', message, { request });
  if (res.statusCode === 504) throw new UpstreamError(message, { timeout: true, status: res.statusCode, request });
  throw new UpstreamError(message, { status: res.statusCode, request });
}

async function send(method: Dispatcher.HttpMethod, url: string, options: RequestOptions, body?: Readable | string | Buffer): Promise<Dispatcher.ResponseData> {
  if (options.progress && body && typeof body !== 'string' && !Buffer.isBuffer(body)) {
    body = counted(body, options.progress(`upload ${new URL(url).pathname.split('/').pop() ?? ''}`, declaredLength(options)));
  }
  if (options.speedFloor && body && typeof body !== 'string' && !Buffer.isBuffer(body)) body = uploadWithSpeedFloor(body, options.speedFloor, method, url);
  try {
    const { dispatcher, ...limits } = limitedDispatch(options);
    return await requestUrl(dispatcher, url, {
      method,
      headers: headersFor(options),
      body,
      signal: options.signal,
      ...limits,
    });
  } catch (err) {
    if (err instanceof FleetError) throw err;
    const timeout = err instanceof Error && /timeout/i.test(err.name + err.message);
    throw new UpstreamError(`${method} ${redactUrl(url)}: ${connectionFailure(err as NodeJS.ErrnoException)}`, { cause: err, timeout, request: failedRequest(method, url) });
  }
}

/** An error of the connection, with what it likely means where OpenSSL's words do not say it. */
function connectionFailure(err: NodeJS.ErrnoException): string {
  // an https:// URL answered in plain HTTP: OpenSSL reads "HTTP/1.1" as a TLS record of a version it does not know
  if (err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/.test(err.message)) {
    return `the server does not answer in TLS (an https:// URL for a plain HTTP server? try http://): ${err.message.split('\n')[0]}`;
  }
  return err.message;
}

/** GET with a streaming body; throws NotFoundError on 404, other catalogued errors otherwise. */
export async function httpGet(url: string, options: RequestOptions = {}): Promise<Dispatcher.ResponseData> {
  const res = await send('GET', url, options);
  if (res.statusCode >= 200 && res.statusCode < 300) return res;
  return failure(url, 'GET', res);
}

/** HEAD: the answer's headers for 2xx, undefined for 404, the catalogued error otherwise. */
export async function httpHead(url: string, options: RequestOptions = {}): Promise<IncomingHttpHeaders | undefined> {
  const res = await send('HEAD', url, options);
  const exists = res.statusCode >= 200 && res.statusCode < 300;
  // Not dumped before failure(), which reads it: a dumped body read again throws inside undici, uncaught.
  if (!exists && res.statusCode !== 404) return failure(url, 'HEAD', res);
  await res.body.dump();
  return exists ? res.headers : undefined;
}

/**
 * A 2xx answer's JSON body and its size in bytes (at most MAX_JSON_BYTES; `empty` when there
 * is none): one too large or not JSON is FC_ERR_UPSTREAM.
 */
async function jsonBody<T>(method: string, url: string, res: Dispatcher.ResponseData, empty?: T): Promise<{ value: T; bytes: number }> {
  const what = `${method} ${redactUrl(url)}`;
  const request = failedRequest(method, url);
  const declared = Number(res.headers['content-length']);
  if (declared > MAX_JSON_BYTES) {
    res.body.destroy();
    throw new UpstreamError(`${what}: a JSON answer of ${declared} bytes, more than the ${MAX_JSON_BYTES} read`, { request });
  }
  const { text, whole } = await readAtMost(res.body, MAX_JSON_BYTES);
  if (!whole) throw new UpstreamError(`${what}: a JSON answer of more than the ${MAX_JSON_BYTES} bytes read`, { request });
  if (text === '' && empty !== undefined) return { value: empty, bytes: 0 };
  try {
    return { value: JSON.parse(text) as T, bytes: Buffer.byteLength(text) };
  } catch (err) {
    throw new UpstreamError(`${what}: the answer is not JSON (${errorMessage(err)})`, { cause: err, request });
  }
}

/** GET a JSON document, with its size in bytes (see jsonBody). */
export async function httpGetJsonSized<T>(url: string, options: RequestOptions = {}): Promise<{ value: T; bytes: number }> {
  return jsonBody<T>('GET', url, await httpGet(url, options));
}

/** GET a JSON document (see jsonBody). */
export async function httpGetJson<T>(url: string, options: RequestOptions = {}): Promise<T> {
  return (await httpGetJsonSized<T>(url, options)).value;
}

/** PUT a streaming body (or a small buffer) and parse the JSON answer. */
export async function httpPut<T = unknown>(url: string, body: Readable | string | Buffer, options: RequestOptions = {}): Promise<T> {
  const res = await send('PUT', url, options, body);
  if (res.statusCode >= 200 && res.statusCode < 300) return (await jsonBody<T>('PUT', url, res, {} as T)).value;
  return failure(url, 'PUT', res);
}

/**
 * Joins a base URL ("http://h:p" or with a path prefix) and an absolute namespace path. A
 * base with a query or fragment is refused (FC_ERR_USAGE): the path would land inside it,
 * and the query (a token) be printed with each failed request.
 */
export function joinUrl(base: string, path: string): string {
  refuseQueryOrFragment(base);
  return base.replace(/\/+$/, '') + path;
}
