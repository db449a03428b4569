// Small hits answered on the socket, before node:http takes the connection. node:http's
// request and response objects are about half of a 4 KiB hit's CPU: on the machine of
// bench/RESULTS.md run 49, a minimal node:http server answered 56,000 such hits a second
// under wrk, the same answers written on the socket 104,000, about what nginx serves. So
// every new connection starts here: a chunk read from it that holds only plain GETs
// (early-head.ts) that `answer` takes is answered with the bytes node would write. At
// the first request that is anything else (a miss, another method, a header that matters,
// a request cut between two reads, a closing server), the connection and every byte from
// that request on go to node's own connection handler, for good: node then parses,
// times out and answers it as any connection it accepted itself, reading it from the
// socket's 'data' events (see handOff).
import { maxHeaderSize, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { headArrived } from '../http/connection-limits.js';
import { readPlainGet } from './early-head.js';

/** What node's server adds to keepAliveTimeout before it closes an idle connection (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER). */
const KEEP_ALIVE_MARGIN_MS = 1000;

/** Writes one whole answer: `head`, its status line and fields without the blank line, then `body`. */
export type SendAnswer = (head: string, body: Buffer) => void;

/** Answers the GET of `target` with `send` and returns true, or returns false and sends nothing. */
export type EarlyAnswer = (target: string, send: SendAnswer) => boolean;

/**
 * Puts `answer` before `server`'s own handling of every new connection. `maxFields`: a
 * request with more header fields is left to node and the routes (which refuse it).
 */
export function answerEarly(server: Server, maxFields: number, answer: EarlyAnswer): void {
  const listeners = server.listeners('connection');
  const toHttp = listeners[0] as ((this: Server, socket: Socket) => void) | undefined;
  if (listeners.length !== 1 || !toHttp) throw new Error('answerEarly: node:http\'s connection listener was not found alone');
  server.removeListener('connection', toHttp);
  const early = new Set<Socket>();
  // Well within node's own limit (a longer head is node's to refuse with a 431).
  const maxHead = Math.min(8192, maxHeaderSize);
  const tail = new ConnectionFields(server);

  server.on('connection', (socket: Socket) => {
    // Without a keep-alive timeout node's answers announce none and its own limits apply.
    if (server.keepAliveTimeout <= 0) return void toHttp.call(server, socket);
    early.add(socket);
    let answered = false;
    const send: SendAnswer = (head, body) => {
      socket.cork();
      socket.write(head + tail.text(), 'latin1');
      socket.write(body);
      socket.uncork();
    };
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString('latin1');
      let at = 0;
      while (at < text.length) {
        const get = server.listening ? readPlainGet(text, at, maxFields, maxHead) : undefined;
        if (!get || !answer(get.target, send)) return handOff(chunk.subarray(at));
        // the connection's first head came whole (a later one is timed by node once handed off)
        if (!answered) {
          answered = true;
          headArrived(socket);
        }
        at = get.end;
        // A client that does not read what it asked: node's handler pauses it.
        if (socket.writableNeedDrain) return handOff(chunk.subarray(at));
      }
    };
    // A connection the client ended is ended here too, as node's handler ends it (its
    // socket is half-open only until then), every answer having been written whole.
    const onEnd = (): void => void socket.end();
    const onTimeout = (): void => void socket.destroy();
    const onError = (): void => undefined; // the socket is destroyed; 'close' follows
    const onClose = (): void => void early.delete(socket);
    /** Gives the connection to node, with `rest` to read first. */
    const handOff = (rest: Buffer): void => {
      socket.off('data', onData).off('end', onEnd).off('timeout', onTimeout).off('error', onError).off('close', onClose);
      socket.setTimeout(0);
      early.delete(socket);
      toHttp.call(server, socket);
      // node's parser reads from the socket's 'data' events from here on, not from its handle
      // natively: a socket already read from JavaScript, consumed natively, lost the order of
      // its bytes and its flow control (a large upload was read whole into memory, and parsed
      // out of order). Adding a 'data' listener is node's own switch to that mode.
      const unconsume = (): void => undefined;
      socket.on('data', unconsume).off('data', unconsume);
      if (rest.length > 0) socket.unshift(rest);
    };
    socket.on('data', onData).on('end', onEnd).on('timeout', onTimeout).on('error', onError).on('close', onClose);
    // An idle connection is closed as node closes its own: a second after the timeout its
    // answers announce, so that a client reusing it just before that does not race the close.
    socket.setTimeout(server.keepAliveTimeout + KEEP_ALIVE_MARGIN_MS);
  });

  // Closing: node closes its idle connections, and all of them at the end of a drain. The
  // ones still here are idle by construction (every answer was written whole): they end
  // once what was written is flushed.
  const closeIdle = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => {
    closeIdle();
    for (const socket of early) socket.end(() => socket.destroy());
  };
  const closeAll = server.closeAllConnections.bind(server);
  server.closeAllConnections = () => {
    closeAll();
    for (const socket of early) socket.destroy();
  };
}

/** Date, Connection and Keep-Alive as node writes them, then the blank line; made again when the second or the timeout changes. */
class ConnectionFields {
  #second = -1;
  #keepAliveTimeout = -1;
  #text = '';
  readonly #server: Server;

  constructor(server: Server) {
    this.#server = server;
  }

  text(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    const keepAliveTimeout = this.#server.keepAliveTimeout;
    if (second !== this.#second || keepAliveTimeout !== this.#keepAliveTimeout) {
      this.#second = second;
      this.#keepAliveTimeout = keepAliveTimeout;
      this.#text = `\r\nDate: ${new Date(now).toUTCString()}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveTimeout / 1000)}\r\n\r\n`;
    }
    return this.#text;
  }
}
