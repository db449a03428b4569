// Closing a connection after an answer given before the client was done sending (nginx's
// lingering close, shorter). Closed at once with bytes it sent still unread, the connection
// is reset by the kernel: a client still writing fails (EPIPE) before it reads the answer,
// and what of the answer was not sent yet (the tail of one before it) is dropped.
import type { Duplex } from 'node:stream';

/** The longest a connection is kept after its answer, for the client to read it. */
const LINGER_MS = 1000;

/**
 * Ends the write side of `socket` after what was written to it (the answer), and destroys it
 * LINGER_MS later unless the client closed it first. What the client sends meanwhile is left
 * unread: its writes stall, the answer reaches it, and the reset comes at the end.
 */
export function closeAfterLinger(socket: Duplex): void {
  socket.end();
  // not holding a process that exits meanwhile: its sockets close with it
  const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once('close', () => clearTimeout(timer));
}

/**
 * closeAfterLinger, with what the client sends meanwhile read and dropped: a client blocked
 * on a write gets to reading the answer, and one that stops sending and closes its side
 * sees the connection closed, not reset. For bytes nobody wants (behind a parse error, on a
 * connection refused as it came): an upload's body is not read this way (unread-body.ts).
 */
export function closeDiscardingRest(socket: Duplex): void {
  closeAfterLinger(socket);
  socket.resume();
}
