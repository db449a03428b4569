// An answer given before the request's body was read to its end: an upload refused early
// (a missing token, a false precondition, a size over the limit, a malformed path) by the
// origin, by the cache, or by the upstream a cache forwards a PUT to.
import type { IncomingMessage } from 'node:http';
import type { FastifyReply } from 'fastify';

/**
 * Once the answer is out, the connection is closed this long after, or once the client has
 * closed its side or sent this many more bytes (nginx's lingering close). Closed at once
 * with bytes unread, it is reset by the kernel, and a client still sending may fail on a
 * write (EPIPE) before it has read the answer, which it then never sees: a CLI or a cache
 * forwarding the upload reported "write EPIPE" (the cache a 502) instead of the 403 or 413.
 * The rest of the body is read and dropped where node goes on reading the connection; where
 * it does not (its parser stopped reading the socket), it stays unread until the close.
 */
const LINGER_MS = 1000;
const LINGER_BYTES = 8 * 1024 ** 2;

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
  lingerAfterAnswer(request, reply);
  return true;
}

/**
 * Keeps the connection of `request` open for a while after its answer (see LINGER_MS): node
 * closes an answered `Connection: close` connection with destroySoon, replaced here for this
 * one by a half close (the answer's end) and a close later. The response names the socket: a
 * request whose body stream was destroyed (a forwarded upload upstream refused) no longer does.
 */
function lingerAfterAnswer(request: IncomingMessage, reply: FastifyReply): void {
  const socket = reply.raw.socket;
  if (!socket) return; // answered and closed already
  request.resume(); // the body's bytes are dropped: node's parser goes on reading the socket
  socket.destroySoon = () => {
    socket.end();
    const until = socket.bytesRead + LINGER_BYTES;
    const close = (): void => void socket.destroy();
    const timer = setTimeout(close, LINGER_MS);
    const onData = (): void => {
      if (socket.bytesRead >= until) close();
    };
    socket.on('data', onData).once('end', close).once('close', () => {
      clearTimeout(timer);
      socket.off('data', onData).off('end', close);
    });
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
