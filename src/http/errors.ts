// The one place where errors become HTTP answers: JSON bodies with a stable code.
import { STATUS_CODES, type Server } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FleetError, toFleetError, type ErrorCode } from '../errors.js';
import { loggedPath } from '../redact-url.js';
import { BEARER_CHALLENGE } from './auth.js';
import { closeUnreadBody } from './unread-body.js';
import { earlyAnswered } from './early-answers.js';

/** The longest path segment (a route parameter) the servers take, in characters (routerOptions.maxParamLength). */
export const MAX_PARAM_LENGTH = 1024;

/** The catalogued error for one fastify raised (a parser's, a route's); undefined for others. */
function fromFastify(err: Error & Partial<FastifyError>): FleetError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new FleetError('FC_ERR_TOO_LARGE', 'body exceeds the configured limit');
    case 'FST_ERR_BAD_URL':
      // not fastify's message, which quotes the whole URL, its query string (a token) too: the log line names the path
      return new FleetError('FC_ERR_BAD_NAME', 'malformed URL: its path does not decode (a % not followed by two hex digits, or bytes that are not UTF-8)');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      // fastify's message holds the whole URL, too long to echo back.
      return new FleetError('FC_ERR_BAD_NAME', `a name in the URL is too long (a path segment is at most ${MAX_PARAM_LENGTH} characters here)`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new FleetError('FC_ERR_BAD_REQUEST', err.message);
    default:
      if (err.validation) return new FleetError('FC_ERR_BAD_REQUEST', err.message);
      if (err instanceof SyntaxError) return new FleetError('FC_ERR_BAD_REQUEST', `malformed body: ${err.message}`);
      // Any other error fastify or node's parser raised for the request itself (a 4xx).
      if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) return new FleetError('FC_ERR_BAD_REQUEST', err.message);
      return undefined;
  }
}

/**
 * The JSON body of an error answer, with its request's id (`requestId`), which the log lines
 * about it carry too. An unexpected error's message (an fs error, say) can name server paths:
 * the client gets the code and a reference to the log entry instead.
 */
export function errorAnswer(fe: FleetError, requestId?: string): Record<string, unknown> {
  const id = requestId === undefined ? {} : { requestId };
  if (fe.code !== 'FC_ERR_INTERNAL' || fe.cause === undefined) return { ...fe.toJSON(), ...id };
  return { code: fe.code, message: `internal error${requestId === undefined ? '' : ` (request ${requestId})`}; the server log has the details`, ...id };
}

/**
 * A whole HTTP/1.1 answer with `fe` as its JSON body, after which the connection is closed:
 * written on the socket itself where node's HTTP layer does not answer (a request its parser
 * refused, a connection over the cap). `headerLines`: more header fields, each ending in CRLF.
 */
export function closingErrorAnswer(fe: FleetError, headerLines = ''): string {
  const body = JSON.stringify(fe.toJSON());
  return `HTTP/1.1 ${fe.status} ${STATUS_CODES[fe.status]}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n${headerLines}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** The catalogued error a request that failed with `err` is answered with (both servers). */
export function requestError(err: unknown): FleetError {
  if (err instanceof FleetError) return err;
  return (err instanceof Error ? fromFastify(err) : undefined) ?? toFleetError(err);
}

/** The servers whose failed requests are each logged (the origin's, installErrorHandling), those refused before routing too. */
const loggingEveryFailure = new WeakSet<Server>();

export function installErrorHandling(app: FastifyInstance): void {
  loggingEveryFailure.add(app.server);
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const fe = requestError(err);
    logFailure(request, fe, err);
    if (reply.sent || reply.raw.headersSent) {
      // A streamed body failed after the headers went out: cut the connection so the
      // client sees an aborted response, never a clean end of a truncated body.
      reply.raw.destroy(fe);
      return;
    }
    closeUnreadBody(request.raw, reply); // an upload refused before its body was read is not read
    if (fe.status === 401) void reply.header('www-authenticate', BEARER_CHALLENGE);
    void reply.code(fe.status).header('cache-control', 'no-store').send(errorAnswer(fe, request.id));
  });
  app.setNotFoundHandler((request, reply) => {
    closeUnreadBody(request.raw, reply);
    const fe = new FleetError('FC_ERR_NOT_FOUND', `no route for ${request.method} ${loggedPath(request.url)}`);
    logFailure(request, fe);
    void reply.code(404).header('cache-control', 'no-store').send(fe.toJSON());
  });
}

/**
 * The 5xx that answer what the client sent, not a fault of the server: a method no path has
 * (501: a scanner's PROPFIND), an HTTP version other than 1.x (505), a run over its artifact
 * budget (507). Logged as the 4xx are, or a scanner fills the error log and trips alerts.
 */
const CLIENTS_DOING: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['FC_ERR_NOT_IMPLEMENTED', 'FC_ERR_HTTP_VERSION', 'FC_ERR_QUOTA']);

/** Whether the answer `fe` is the server's own failure, logged at error (origin and cache alike). */
export function isServerFault(fe: FleetError): boolean {
  return fe.status >= 500 && !CLIENTS_DOING.has(fe.code);
}

/**
 * The log line of a failed request: which one it was, as the cache's lines say it (its
 * serve.ts failureFields), never with its query string (it may carry a token) or a header.
 * A server fault at error with the stack of `err`, any other failure at info.
 */
function logFailure(request: FastifyRequest, fe: FleetError, err?: Error): void {
  const failed = { code: fe.code, status: fe.status, method: request.method, url: loggedPath(request.url) };
  if (isServerFault(fe)) request.log.error({ err, ...failed }, fe.message);
  else request.log.info(failed, fe.message);
}

/** For fastify's `frameworkErrors` option: malformed URLs and similar, before routing. */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const fe = fromFastify(error) ?? new FleetError('FC_ERR_BAD_REQUEST', error.message);
  if (loggingEveryFailure.has(request.server.server)) logFailure(request, fe);
  earlyAnswered(request.server.server, fe, request.method);
  void reply.code(fe.status).header('cache-control', 'no-store').send(fe.toJSON());
}
