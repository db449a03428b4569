// An answer given before the request's body was read to its end: an upload refused early
// (a missing token, a false precondition, a size over the limit, a malformed path) by the
// origin, by the cache, or by the upstream a cache forwards a PUT to.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { closeAfterLinger } from './lingering-close.js';

/**
 * When the body of `request` has not been read to its end, stops reading it and answers
 * with `Connection: close`, so that the connection is closed soon after the answer (closeAfterLinger).
 * Kept alive, the connection would need the rest of the body read first (a multi-GB upload
 * refused for its token sent whole anyway), or stall until a timeout while the client
 * waits to send it. Returns whether it did.
 */
export function closeUnreadBody(request: IncomingMessage, reply: FastifyReply): boolean {
  if (!hasUnreadBody(request)) return false;
  request.unpipe();
  reply.header('connection', 'close');
  lingerAfterAnswer(reply);
  return true;
}

/**
 * Closes a connection soon after the answer to a GET or HEAD that ended while its request's
 * body was still coming: no route reads it. Kept alive, node reads the rest of that body to
 * get to the next request, and each byte puts the idle limit off: a client with no token
 * sending a GET an endless chunked body a byte every few seconds held its connection for
 * ever, past clientHeaderTimeout (heads only), and, with as many, all maxConnections allows.
 */
export function closeAfterUnreadBodies(server: Server): void {
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return; // uploads: closeUnreadBody
    if (!announcesBody(req)) return; // nearly every GET: no listener on the hot path
    res.once('finish', () => {
      const socket = req.socket as IncomingMessage['socket'] | null; // null once node let the connection go
      if (socket && !socket.destroyed && hasUnreadBody(req)) closeAfterLinger(socket);
    });
  });
}

/**
 * Keeps the connection of the answer `reply` open for a while after it (closeAfterLinger):
 * node closes an answered `Connection: close` connection with destroySoon, replaced here for
 * this one. The rest of the body is not read (node's parser has stopped reading the socket).
 * The response names the socket: a request whose body stream was destroyed (a forwarded
 * upload upstream refused) no longer does.
 */
function lingerAfterAnswer(reply: FastifyReply): void {
  const socket = reply.raw.socket;
  if (!socket) return; // answered and closed already
  socket.destroySoon = () => closeAfterLinger(socket);
}

/**
 * Whether a body was announced and not all of it read. `complete` alone is not enough: a
 * request without a body is complete only once node's parser is done with it, after a
 * synchronous answer (fastify's 404) was given.
 */
function hasUnreadBody(request: IncomingMessage): boolean {
  return !request.complete && announcesBody(request);
}

/** Whether the request's head announces a body (chunked, or a length other than 0). */
function announcesBody(request: IncomingMessage): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
