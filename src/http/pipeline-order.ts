// Pipelined requests run one after another where one of them changes something.
//
// Node hands each pipelined request to the server as soon as it is parsed, while the ones
// before it may still run (their answers are queued in order, not their handlers). A GET
// pipelined behind the PUT of the same blob or name then ran before the PUT stored it, and
// answered 404 or the previous content. RFC 9112 §9.3.2 allows a server to handle pipelined
// requests in parallel only when they are all safe; nginx handles them one after another.
//
// Node gives a request's answer the connection once every answer before it has been sent
// (ServerResponse's 'socket' event; until then `res.socket` is null): a request that is not
// safe, and any request behind one, waits for that, so that it runs after all the requests
// before it. Safe requests with none before them run as they come, at the cost of one
// lookup. A queued answer whose client leaves is closed with the connection (closeWithConnection).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Methods that change nothing (RFC 9110 §9.2.1). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * Requests a connection may have waiting. Node stops reading a connection only when
 * answers wait to be sent, and a waiting request has none yet: past this, the connection
 * is closed, or a client could have the server hold any number of them.
 */
export const MAX_WAITING = 32;

interface Order {
  /** Requests that are not safe, not answered yet. */
  unsafe: number;
  /** Requests waiting for the answers before them. */
  waiting: number;
}

const orders = new WeakMap<Socket, Order>();

function newOrder(socket: Socket): Order {
  const order = { unsafe: 0, waiting: 0 };
  orders.set(socket, order);
  return order;
}

/**
 * Calls `handle(req, res)` now, or once every answer before it on its connection has been
 * sent, when it is not safe or follows one that is not (see above).
 */
export function inPipelineOrder(req: IncomingMessage, res: ServerResponse, handle: (req: IncomingMessage, res: ServerResponse) => void): void {
  const socket = req.socket;
  if (!res.socket) closeWithConnection(socket, res);
  const unsafe = !SAFE_METHODS.has(req.method ?? '');
  const order = orders.get(socket) ?? (unsafe ? newOrder(socket) : undefined);
  if (!order || (!unsafe && order.unsafe === 0)) return handle(req, res);
  if (unsafe) {
    order.unsafe++;
    res.once('close', () => void order.unsafe--);
  }
  if (res.socket) return handle(req, res); // nothing before it still being answered
  if (order.waiting >= MAX_WAITING) return void socket.destroy();
  order.waiting++;
  res.once('socket', () => {
    order.waiting--;
    handle(req, res);
  });
}

/** Answers waiting for their connection (see closeWithConnection), by connection. */
const queuedOn = new WeakMap<Socket, Set<ServerResponse>>();

/**
 * An answer queued behind others gets node's 'close' only once it is given the connection:
 * when the client leaves first, it never does, and what it was sending (a file, a stream)
 * stayed open until collected. It is closed with the connection here, as node closes the
 * answer the connection was sending; what writes to it stops (fastify destroys its stream,
 * body-writer.ts closes its file). One listener per connection, however many wait on it.
 */
function closeWithConnection(socket: Socket, res: ServerResponse): void {
  const queued = queuedOn.get(socket) ?? closingWith(socket);
  queued.add(res);
  res.once('socket', () => queued.delete(res)); // given the connection: node closes it
}

/** The set of `socket`'s queued answers, closed when it closes. */
function closingWith(socket: Socket): Set<ServerResponse> {
  const answers = new Set<ServerResponse>();
  queuedOn.set(socket, answers);
  socket.once('close', () => {
    for (const answer of answers) {
      if (answer.destroyed) continue;
      answer.destroyed = true;
      answer.emit('close');
    }
    answers.clear();
  });
  return answers;
}
