// Limits on client connections that every fleetcache server process applies (the origin, a
// cache, each worker of a cache): a request head (request line and header fields) must
// arrive whole in time, as nginx's client_header_timeout, the next one on a kept-alive
// connection too, and an optional cap on the connections open at once. Bodies are not
// concerned: uploads and downloads stream for minutes, bounded by the idle timeouts only.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { FleetError } from '../errors.js';
import { closingErrorAnswer } from './errors.js';
import { earlyAnswered } from './early-answers.js';
import { closeDiscardingRest } from './lingering-close.js';

/**
 * How long a request head may take by default. A head is one packet or a few: 15 s is
 * several TCP retransmissions of it over the slow links between regions, and a connection
 * that sends nothing (or a byte now and then: slowloris) is let go after that, not after
 * node's 60 s checked every 30 s (up to 90 s).
 */
export const DEFAULT_CLIENT_HEADER_TIMEOUT_MS = 15_000;

/**
 * How often node looks for connections whose head is late (its connectionsCheckingInterval,
 * 30 s by default, an option of http.createServer only: see baseServerOptions and the
 * cache's serverFactory): a late head is cut within this after the limit. The look goes over
 * the connections in the middle of a request only.
 */
export const HEAD_CHECK_INTERVAL_MS = 1_000;

/**
 * What node adds to a server's keepAliveTimeout before it closes an idle connection
 * (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER): the Keep-Alive field announces the timeout, and a
 * client reusing the connection just before it does not race the close.
 */
export const KEEP_ALIVE_MARGIN_MS = 1000;

/**
 * Client connections a server process keeps open at once by default (each worker of a cache
 * its own): far more than a fleet's machines open in parallel transfers to one region, far
 * below the units' file limit (LimitNOFILE=65536) less the files a server keeps open, so that
 * a flood of connections cannot leave it unable to open one.
 */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

/** At most one warning about refused connections in this time (with the count since the last). */
const REFUSED_WARNING_INTERVAL_MS = 60_000;

const OVER_CAP = new FleetError('FC_ERR_UNAVAILABLE', 'too many connections are open on this server (maxConnections); retry shortly');
/** What a connection over the cap gets, before anything is read from it. */
const OVER_CAP_ANSWER = closingErrorAnswer(OVER_CAP, 'Retry-After: 1\r\n');

interface ConnectionLimits {
  /** The longest a request head may take to arrive whole. */
  readonly clientHeaderTimeoutMs: number;
  /** Connections open at once past which a new one is closed as it comes. */
  readonly maxConnections: number;
}

/**
 * The connections waiting for a request head with a deadline of their own (their first, the
 * next after their answers), each with the timer that cuts it.
 */
const awaitedHeads = new WeakMap<Socket, NodeJS.Timeout>();

/** Answers under way on each connection node parses (more than one when requests are pipelined). */
const answersUnderWay = new WeakMap<Socket, number>();

/**
 * A request of `socket` arrived whole: its deadline is over. Node's own 'request' event says
 * so for the connections node parses; the cache's early answers (early-hits.ts), which node
 * never sees, call this for a connection's first request.
 */
export function headArrived(socket: Socket): void {
  const timer = awaitedHeads.get(socket);
  if (timer === undefined) return;
  clearTimeout(timer);
  awaitedHeads.delete(socket);
}

/** The error node's own head timeout gives, answered 408 by the servers' clientErrorHandler. */
function headTimeoutError(): NodeJS.ErrnoException {
  return Object.assign(new Error('the request head did not arrive in time'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });
}

/**
 * Applies `limits` to `server` (created with connectionsCheckingInterval
 * HEAD_CHECK_INTERVAL_MS), before it listens and after every other 'connection' listener is
 * in place (the cache's early answers replace node's): they run only for the connections
 * this lets through.
 *
 * Node's headersTimeout, checked every HEAD_CHECK_INTERVAL_MS, cuts a head that started
 * arriving too long ago: it counts from a request's first byte (and from the connection's
 * start until one comes). A connection's first request is held to its start instead, by a
 * timer of its own until the head is whole: else a client silent for nearly the limit,
 * then sending a byte at a time, would hold it twice as long. A kept-alive connection's next
 * head is held, from its last answer's end, to the keep-alive limit (with node's margin)
 * plus the head limit: node times it from its first byte only, and the empty lines a client
 * may send before a request line (RFC 9112 §2.2), which node skips without counting them,
 * reset its idle timers: a CRLF every few seconds kept a connection open for ever.
 *
 * The cap is counted here rather than by node's server.maxConnections, which node checks
 * only for the connections its server accepts itself, not those a cache worker is handed by
 * its primary (cache/cluster/handoff.ts), and which it closes without a word. A connection
 * over the cap is answered 503 (FC_ERR_UNAVAILABLE) before anything is read from it, and
 * closed.
 */
export function limitConnections(server: Server, limits: ConnectionLimits, log: Pick<FastifyBaseLogger, 'warn'>): void {
  const { clientHeaderTimeoutMs: headMs, maxConnections } = limits;
  server.headersTimeout = headMs;

  const cutLateHead = (socket: Socket): void => {
    awaitedHeads.delete(socket);
    if (socket.destroyed) return;
    // the servers' clientErrorHandler answers 408 and closes, as for node's own timeout
    if (!server.emit('clientError', headTimeoutError(), socket)) socket.destroy();
  };
  const awaitHead = (socket: Socket, ms: number): void => {
    const timer = setTimeout(cutLateHead, ms, socket);
    timer.unref();
    awaitedHeads.set(socket, timer);
  };
  /** Once the last answer under way on `socket` ends, its next head is awaited (no keep-alive limit: node's own). */
  const answering = (socket: Socket, res: ServerResponse): void => {
    answersUnderWay.set(socket, (answersUnderWay.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const left = answersUnderWay.get(socket)! - 1;
      answersUnderWay.set(socket, left);
      if (left > 0 || socket.destroyed || server.keepAliveTimeout <= 0) return;
      awaitHead(socket, server.keepAliveTimeout + KEEP_ALIVE_MARGIN_MS + headMs);
    });
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    headArrived(req.socket);
    answering(req.socket, res);
  });
  // An Expect other than 100-continue gets no 'request': node answers it 417 by itself, unless
  // someone listens here. The same answer (with its length, not node's chunked empty body),
  // once the head is known to have arrived.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    headArrived(req.socket);
    answering(req.socket, res);
    res.writeHead(417, { 'content-length': '0' }).end();
  });

  let open = 0;
  let refused = 0;
  let warnedAt = -Infinity;
  const refuse = (socket: Socket): void => {
    // Answered 503, as nginx's limit_conn, not reset: the client says why (a pool retries on
    // its own). What it sent meanwhile is read and dropped: closing a socket with unread data
    // sends a reset, which can reach the client before the answer it would have read.
    socket.on('error', () => undefined);
    socket.write(OVER_CAP_ANSWER);
    earlyAnswered(server, OVER_CAP);
    closeDiscardingRest(socket);
    refused++;
    const now = Date.now();
    if (now - warnedAt < REFUSED_WARNING_INTERVAL_MS) return;
    log.warn({ maxConnections, refused }, 'connections refused: maxConnections are open');
    warnedAt = now;
    refused = 0;
  };

  const handlers = server.listeners('connection') as Array<(this: Server, socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    if (open >= maxConnections) return refuse(socket);
    open++;
    awaitHead(socket, headMs);
    socket.once('close', () => {
      open--;
      headArrived(socket);
    });
    for (const handler of handlers) handler.call(server, socket);
  });
}
