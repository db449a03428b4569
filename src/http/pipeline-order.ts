// Pipelined requests behind one that changes something run after it is answered.
//
// Node hands each pipelined request to the server as soon as it is parsed, while the one
// before it may still run (its answers are queued in order, not its handlers). A GET
// pipelined behind the PUT of the same blob or name then ran before the PUT stored it, and
// answered 404 or the previous content. RFC 9112 §9.3.2 allows a server to handle pipelined
// requests in parallel only when they are all safe; nginx handles them one after another.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Methods that change nothing (RFC 9110 §9.2.1): run as they come, when no other request runs before them. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/** Per connection: the end of the answer of the last request that is not safe, while it runs. */
const unsafeInFlight = new WeakMap<Socket, Promise<void>>();

/**
 * Calls `handle(req, res)` now, or once the answer of the request before it on its
 * connection that is not safe (a PUT, a POST) has ended. A request that is not safe is
 * recorded, for the ones pipelined behind it.
 */
export function inPipelineOrder(req: IncomingMessage, res: ServerResponse, handle: (req: IncomingMessage, res: ServerResponse) => void): void {
  const socket = req.socket;
  const before = unsafeInFlight.get(socket);
  if (!SAFE_METHODS.has(req.method ?? '')) {
    const answered = new Promise<void>((resolve) => res.once('close', () => resolve()));
    unsafeInFlight.set(socket, answered);
    void answered.then(() => {
      if (unsafeInFlight.get(socket) === answered) unsafeInFlight.delete(socket);
    });
  }
  if (before) void before.then(() => handle(req, res));
  else handle(req, res);
}
