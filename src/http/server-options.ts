// Options every fleetcache HTTP server shares (origin and cache alike).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { LogController, type FastifyBaseLogger, type FastifyHttpOptions, type FastifyInstance } from 'fastify';
import { MAX_TIMER_MS } from '../config/units.js';
import { FleetError } from '../errors.js';
import { createLogger } from '../log.js';
import { lockDataDir } from '../store/dir-lock.js';
import { serverLogLevel } from './server-logging.js';
import { ROUTED_METHODS } from './allowed-methods.js';
import { HEAD_CHECK_INTERVAL_MS } from './connection-limits.js';
import { earlyAnswered } from './early-answers.js';
import { closingErrorAnswer, errorAnswer, frameworkErrors, MAX_PARAM_LENGTH } from './errors.js';
import { closeDiscardingRest } from './lingering-close.js';
import { afterAnswersInFlight } from './parse-error-order.js';
import { requestIdOf } from './request-id.js';

/** Header fields a request may have, Host included (the origin's limits.maxHeaders, the cache's). */
export const DEFAULT_MAX_HEADERS = 64;

/** Whether `req` has more than `max` header fields. */
function hasTooManyHeaders(req: IncomingMessage, max: number): boolean {
  return req.rawHeaders.length > 2 * max;
}

/**
 * Which of the fields a request may carry once only `req` repeats (Authorization first), in
 * one pass over its fields: Node keeps the first of each.
 */
function repeatedSingleField(req: IncomingMessage): 'Authorization' | 'Host' | undefined {
  let authorization = 0;
  let host = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization') authorization++;
    else if (name.length === 4 && name.toLowerCase() === 'host') host++;
  }
  return authorization > 1 ? 'Authorization' : host > 1 ? 'Host' : undefined;
}

/** The refusal of a request whose method no path has (RFC 9110 §9.1). */
function notImplemented(req: IncomingMessage): FleetError {
  return new FleetError('FC_ERR_NOT_IMPLEMENTED', `the ${req.method} method is implemented on no path here`);
}

/**
 * Why `req` is refused, or undefined: an HTTP version other than 1.x (505), a method no path
 * has (501), more than `max` header fields (431), a transfer coding other than chunked
 * (400), or two Authorization or Host headers (400: RFC 9112 §3.2 for Host): Node takes the
 * first, a proxy in front may take the last, and each would check another credential, or
 * route elsewhere.
 */
export function malformedRequest(req: IncomingMessage, max: number): FleetError | undefined {
  // llhttp lets HTTP/2.0 and 0.9 through (it refuses other versions itself: clientErrorHandler)
  if (req.httpVersionMajor !== 1) return new FleetError('FC_ERR_HTTP_VERSION', `HTTP/${req.httpVersion} is not supported (HTTP/1.1 and 1.0 are)`);
  if (!ROUTED_METHODS.has(req.method!)) return notImplemented(req);
  if (hasTooManyHeaders(req, max)) return new FleetError('FC_ERR_TOO_MANY_HEADERS', `the request has more than ${max} header fields`);
  // Node decodes chunked only: a body in another transfer coding (gzip, chunked) would be
  // stored as it came, still encoded (RFC 9112 §6.1 has such a request refused)
  const coding = req.headers['transfer-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') return new FleetError('FC_ERR_BAD_REQUEST', `Transfer-Encoding ${JSON.stringify(coding)} is not supported (only chunked)`);
  const repeated = repeatedSingleField(req);
  return repeated === undefined ? undefined : new FleetError('FC_ERR_BAD_REQUEST', `the request has more than one ${repeated} header`);
}

/**
 * Refuses a malformed request (malformedRequest). Node's own maxHeadersCount only drops the
 * fields past it, and not exactly: it is set just above `max`, to keep what it stores
 * small, and the count is checked here. A CONNECT never reaches fastify: node hands its
 * socket to the server's 'connect' listeners, and cuts it unanswered when there is none.
 */
export function refuseMalformedRequests(app: FastifyInstance, max: number): void {
  app.server.maxHeadersCount = max + 1;
  app.addHook('onRequest', (request, _reply, done) => done(malformedRequest(request.raw, max)));
  app.server.on('connect', (req: IncomingMessage, socket: Duplex) => answerAndClose(app.server, socket, notImplemented(req), req.method));
}

/**
 * A request that arrives while the server stops (on a connection already open: the drain
 * takes no new one) is answered 503 FC_ERR_UNAVAILABLE with the catalogued JSON error every
 * other failure has, and Connection: close, in place of fastify's own body
 * (return503OnClosing), which has no code. The flag is set by a preClose hook added here, at
 * build, so that it runs before the drain (cli/listen.ts), a later preClose hook.
 */
export function answerUnavailableWhileClosing(app: FastifyInstance): void {
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onRequest', (request, reply, done) => {
    if (!closing) return done();
    const fe = new FleetError('FC_ERR_UNAVAILABLE', 'the server is stopping: ask again on a new connection');
    void reply.code(fe.status).header('connection', 'close').header('cache-control', 'no-store').send(errorAnswer(fe, request.id));
  });
}

/**
 * `Expect: 100-continue` answered with 100 only for a request that may send its body: one
 * with a credential and, when `maxBodyOf` is given, a declared length within the limit it
 * gives for the request's path (origin form, before routing). Node sends the 100 to every
 * such request by itself; a client without a token, or with a body over the limit, then
 * starts sending it, only to be refused (401, 413) once the route looks. The request goes
 * on to the server's handler either way, which answers it.
 */
export function continueOnlyWhenAllowed(server: Server, maxBodyOf?: (path: string) => number): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    const maxBody = maxBodyOf?.(originForm(req));
    if (req.headers.authorization !== undefined && (maxBody === undefined || !(declared > maxBody))) res.writeContinue();
    server.emit('request', req, res);
  });
}

/**
 * A request target as the routes take it: the absolute form (`GET http://host/cas/…`, which
 * RFC 9112 §3.2.2 has servers accept) becomes its path and query, so that a name taken from
 * the URL is the path that was routed, not a slice of "http://host/…". Leading slashes count
 * as one: `//sha512/…` is what a base URL ending in "/" gives to plain string formatting, as
 * `mach artifact toolchain`'s "{url}/{algorithm}/{digest}" (many servers merge them too).
 */
function originForm(req: { readonly url?: string | undefined }): string {
  const url = req.url ?? '/';
  if (url.startsWith('/') && url[1] !== '/') return url;
  // The text after scheme://authority, byte for byte: a URL parser would resolve "..", "%2e%2e"
  // and "\\" that the routes refuse, and store under another name than the one sent.
  const authority = url.startsWith('/') ? undefined : /^https?:\/\/[^/?#]*/i.exec(url);
  if (authority === null) return url;
  return (authority ? url.slice(authority[0].length) : url).replace(/^\/*/, '/');
}

/** How long a server stopped by a signal lets requests in flight finish, by default (cli/listen.ts). */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 20_000;

/** What fastify's close needs besides the drain, within the same bound (closing the listening socket). */
export const CLOSE_MARGIN_MS = 2_000;

/** fastify's own default pluginTimeout. */
const FASTIFY_PLUGIN_TIMEOUT_MS = 10_000;

/**
 * fastify's pluginTimeout bounds each close hook as well as each plugin's start (avvio
 * runs both): the drain of a stopping server (a preClose hook, cli/listen.ts) that outlasts
 * it makes close() fail with AVV_ERR_READY_TIMEOUT and the process crash. It is therefore
 * the shutdown timeout plus a margin, never less than fastify's default.
 */
function pluginTimeoutFor(shutdownTimeoutMs: number): number {
  // a timer's longest wait (a longer one fires at once): the schema holds shutdownTimeout below it
  return Math.min(MAX_TIMER_MS, Math.max(FASTIFY_PLUGIN_TIMEOUT_MS, shutdownTimeoutMs + CLOSE_MARGIN_MS));
}

/**
 * Answers, on `socket` itself, a request node's HTTP layer does not answer (of `method`,
 * when its line was parsed), counts the answer for `server`, and closes the socket once the
 * client had time to read it (lingering-close.ts): the client may still be sending.
 */
function answerAndClose(server: Server, socket: Duplex, fe: FleetError, method?: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.write(closingErrorAnswer(fe));
  earlyAnswered(server, fe, method);
  closeDiscardingRest(socket);
}

/**
 * Answers a request Node's parser refused (two Content-Length, a header over 16 KiB, a
 * request that did not arrive in time) with a catalogued JSON error, as every other error
 * is answered, instead of fastify's own body, after the answers in flight on its connection
 * (parse-error-order.ts). The connection is closed after it.
 */
function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // Its client closed the connection in the middle of a request, its head or its body:
  // nothing malformed, and nobody to read an answer. Closed once the answers before it are
  // sent; a request cut mid-body is answered by its route, which sees it aborted (the cache
  // counts FC_ERR_ABORTED). Answered here, it was counted as a malformed request (400
  // FC_ERR_BAD_REQUEST): a request cut mid-body a second time.
  if (err.code === 'HPE_INVALID_EOF_STATE') return afterAnswersInFlight(socket, () => socket.destroy());
  const fe =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? new FleetError('FC_ERR_REQUEST_TIMEOUT', 'the request did not arrive in time')
    : err.code === 'HPE_HEADER_OVERFLOW' ? new FleetError('FC_ERR_TOO_MANY_HEADERS', 'the request\'s header fields exceed 16 KiB')
    // a method llhttp does not know (FOO, get): RFC 9110 §9.1 has it answered 501
    : err.code === 'HPE_INVALID_METHOD' ? new FleetError('FC_ERR_NOT_IMPLEMENTED', 'the request method is not one this server knows')
    // HTTP/1.2 to 1.9 are to be answered as 1.1 (RFC 9112 §2.3), but llhttp only takes them
    // with insecureHTTPParser, which lets request smuggling through too: 505 names the cause,
    // as it does for HTTP/3.0 (a malformed version, HTTP/2 or HTTP/1.10, gets the same code)
    // and HTTP/2's preface (PRI * HTTP/2.0, a client with prior knowledge)
    : err.code === 'HPE_INVALID_VERSION' || err.code === 'HPE_PAUSED_H2_UPGRADE' ? new FleetError('FC_ERR_HTTP_VERSION', 'the request\'s HTTP version is not supported (HTTP/1.1 and 1.0 are)')
    : new FleetError('FC_ERR_BAD_REQUEST', `malformed HTTP request (${err.code ?? 'parse error'})`);
  afterAnswersInFlight(socket, () => answerAndClose(this.server, socket, fe));
}

/** `shutdownTimeoutMs`: the longest drain this server will be asked for (see pluginTimeoutFor). */
export function baseServerOptions(logLevel: string | false | undefined, bodyLimit: number, shutdownTimeoutMs = DEFAULT_SHUTDOWN_TIMEOUT_MS): FastifyHttpOptions<Server> & { loggerInstance: FastifyBaseLogger } {
  return {
    pluginTimeout: pluginTimeoutFor(shutdownTimeoutMs),
    loggerInstance: createLogger(logLevel === false ? 'silent' : serverLogLevel(logLevel)) as FastifyBaseLogger,
    // Per-request access logs cost more than the requests on hot paths; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    bodyLimit,
    // answerUnavailableWhileClosing answers instead, with the catalogued JSON error
    return503OnClosing: false,
    forceCloseConnections: true,
    // HEAD routes are explicit: the automatic ones would read a whole blob to discard it.
    exposeHeadRoutes: false,
    rewriteUrl: originForm,
    // the id a request brings (a cache's, upstream), else a new one: in its log lines and error answer
    genReqId: requestIdOf,
    // the server fastify creates (a serverFactory passes it itself): late heads cut soon (connection-limits.ts)
    http: { connectionsCheckingInterval: HEAD_CHECK_INTERVAL_MS },
    clientErrorHandler,
    frameworkErrors,
  };
}

/**
 * Builds a server on data directory `dir` while holding it (store/dir-lock.ts), taken
 * before `build` touches anything in it: released when the server closes, or at once when
 * building fails.
 */
export async function buildOnDataDir<T>(dir: string, build: () => Promise<T>, appOf: (built: T) => FastifyInstance): Promise<T> {
  const lock = await lockDataDir(dir);
  try {
    const built = await build();
    appOf(built).addHook('onClose', () => lock.release());
    return built;
  } catch (err) {
    await lock.release();
    throw err;
  }
}
