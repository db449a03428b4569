// A parse error's answer goes out after the answers already in flight on its connection.
//
// Node's parser takes pipelined requests one after another from what arrives: a body longer
// than its Content-Length, or garbage behind a GET, parses as one more request, and fails
// while the requests before it are still being answered. Their answers are queued in
// order (ServerResponse's socket), the parser's error is not: written at once, it went out
// ahead of them (the client read it as the PUT's answer), and the connection closed under
// them (the PUT stored nothing). Node's own clientError default and fastify's do the same.
// Here the error waits for every answer in flight, then goes out and closes the connection.
// Only the error path looks: requests pay nothing.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** What node's HTTP server keeps on a connection's socket (not in its types). */
interface HttpSocket extends Duplex {
  /** The answer being sent on it; the ones pipelined behind it wait, and get it in turn. */
  _httpMessage?: ServerResponse | null;
  /** Its parser; `incoming` is the last request parsed, kept once it is complete. */
  parser?: { incoming?: IncomingMessage | null } | null;
}

/** Connections whose parse error waits for the answers before it. */
const waiting = new WeakSet<Duplex>();

/**
 * Calls `answer` (which answers the parse error and closes the connection) once every
 * answer before it on `socket` has been sent, or now when there is none. A request whose
 * body the error cut is never answered by its handler, which waits for the rest: the error
 * is its answer, when the ones before it are sent (or after its own, if it had started one).
 */
export function afterAnswersInFlight(socket: Duplex, answer: () => void): void {
  if (waiting.has(socket)) return; // the failed parser fails again on every later chunk
  waiting.add(socket);
  socket.pause(); // nothing more is parsed: the rest arriving is not read
  whenAnswered(socket as HttpSocket, cutRequest(socket), answer);
}

/**
 * Calls `then` once `socket` has no answer left to send but the cut request's, not
 * started. Node gives the connection to the next answer waiting in its 'finish' listener,
 * added when the request came: this one, added later, runs after it and finds that next
 * answer, or none.
 */
function whenAnswered(socket: HttpSocket, cut: IncomingMessage | undefined, then: () => void): void {
  const current = socket._httpMessage;
  if (!current || (current.req === cut && !current.headersSent)) return then();
  current.once('finish', () => whenAnswered(socket, cut, then));
}

/**
 * `socket`'s last request when it is cut: handed to its route once its head came, its body
 * has not all arrived (a parse error now is its client's close, or garbage, mid-body).
 */
function cutRequest(socket: Duplex): IncomingMessage | undefined {
  const last = (socket as HttpSocket).parser?.incoming;
  return last && !last.complete ? last : undefined;
}
