// An answer given before the request's body was read to its end: an upload refused early
// (a missing token, a false precondition, a size over the limit, a malformed path) by the
// origin, by the cache, or by the upstream a cache forwards a PUT to.
import type { IncomingMessage } from 'node:http';
import type { FastifyReply } from 'fastify';

/**
 * Once the answer is out, its connection is half-closed (the answer's end), and closed this
 * long after unless the client closed it first (a shorter form of nginx's lingering close).
 * Closed at once with the body's bytes unread, the connection is reset by the kernel, and a
 * client still sending could fail on a write (EPIPE) before reading the answer, which it then
 * never sees: a CLI or a cache forwarding the upload reported "write EPIPE" instead of the 403
 * or 413. The rest of the body is not read (node's parser has stopped reading the socket): the
 * client's writes stall meanwhile, and the reset comes a second later, the answer read by then
 * by any client not slower than that to read it.
 */
const LINGER_MS = 1000;

/**
 * When the body of `request` has not been read to its end, stops reading it and answers
 * with `Connection: close`, so that the connection is closed soon after the answer (see LINGER_MS).
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
 * Keeps the connection of the answer `reply` open for a while after it (see LINGER_MS): node
 * closes an answered `Connection: close` connection with destroySoon, replaced here for this
 * one by a half close and a close later. The response names the socket: a request whose body
 * stream was destroyed (a forwarded upload upstream refused) no longer does.
 */
function lingerAfterAnswer(reply: FastifyReply): void {
  const socket = reply.raw.socket;
  if (!socket) return; // answered and closed already
  socket.destroySoon = () => {
    socket.end();
    // not holding a process that exits meanwhile: its sockets close with it
    const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
    socket.once('close', () => clearTimeout(timer));
  };
}

/**
 * Whether a body was announced and not all of it read. `complete` alone is not enough: a
 * request without a body is complete only once node's parser is done with it, after a
 * synchronous answer (fastify's 404) was given.
 */
function hasUnreadBody(request: IncomingMessage): boolean {
  if (request.complete) return false;
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
