// Small hits and plain cold misses answered on the socket, before node:http takes the
// connection. node:http's request and response objects are about half of a 4 KiB hit's
// CPU: on the machine of bench/RESULTS.md run 49, a minimal node:http server answered
// 56,000 such hits a second under wrk, the same answers written on the socket 104,000,
// about what nginx serves. For a cold miss they are about a third of the minimal proxy's
// CPU (lib/floor-proxy.ts: 237 against 142 µs per object, 2026-12-05). So every new
// connection starts here: a chunk read from it that holds only plain GETs (early-head.ts)
// that `answer` takes is answered with the bytes node would write, and a plain GET that
// `later` takes (a miss) is answered when its fill tells, the connection read no further
// meanwhile. At the first request that is anything else (another method, a header that
// matters, a request cut between two reads, a miss pipelined with more, a closing server),
// the connection and every byte from that request on go to node's own connection
// handler, for good: node then parses, times out and answers it as any connection it
// accepted itself, reading it from the socket's 'data' events (see handOff). A request
// taken for later can still be handed to node that way, with what node's request handler
// is to do with it (takeResume).
import { maxHeaderSize, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { headArrived, KEEP_ALIVE_MARGIN_MS } from '../http/connection-limits.js';
import { readPlainGet, type PlainGet } from './early-head.js';
import { flatLatin1 } from '../http/flat-string.js';

/** Writes one whole answer: `head`, its status line and fields without the blank line, then `body`. */
export type SendAnswer = (head: string, body: Buffer) => void;

/** Answers the GET of `target` with `send` and returns true, or returns false and sends nothing. */
type EarlyAnswer = (target: string, send: SendAnswer) => boolean;

/** What node's request handler does with a request handed to it after it was taken for later (see takeResume). */
type Resume = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The answer owed to a request taken for later, given once: `send` writes it whole, or
 * `handOff` gives the request (read again from its first byte) and the connection to node,
 * whose request handler gets `resume` for it. Both do nothing once the client is gone:
 * `send` returns whether it wrote (the bytes served).
 */
export interface OwedAnswer {
  send(head: string, body: Buffer): boolean;
  handOff(resume: Resume): void;
}

/** Takes the plain GET `get` to answer it through `owed` later, and returns true; false takes nothing. */
type LaterAnswer = (get: PlainGet, owed: OwedAnswer) => boolean;

const resumes = new WeakMap<Socket, Resume>();

/**
 * For node's request handler: what to do with `req` when it is a request the early path
 * took for later and then handed over (the first request node reads on its connection), once.
 */
export function takeResume(req: IncomingMessage): Resume | undefined {
  const resume = resumes.get(req.socket);
  if (resume) resumes.delete(req.socket);
  return resume;
}

/**
 * Puts `answer` (and `later`) before `server`'s own handling of every new connection.
 * `maxFields`: a request with more header fields is left to node and the routes (which
 * refuse it).
 */
export function answerEarly(server: Server, maxFields: number, answer: EarlyAnswer, later?: LaterAnswer): void {
  const listeners = server.listeners('connection');
  const toHttp = listeners[0] as ((this: Server, socket: Socket) => void) | undefined;
  if (listeners.length !== 1 || !toHttp) throw new Error('answerEarly: node:http\'s connection listener was not found alone');
  server.removeListener('connection', toHttp);
  const early = new Set<Socket>();
  /** Early connections with an answer owed: not idle. */
  const owing = new Set<Socket>();
  /** Owing connections a closing server ends once their answer is written. */
  const endWhenAnswered = new WeakSet<Socket>();
  // Well within node's own limit (a longer head is node's to refuse with a 431).
  const maxHead = Math.min(8192, maxHeaderSize);
  const tail = new ConnectionFields(server);

  server.on('connection', (socket: Socket) => {
    // Without a keep-alive timeout node's answers announce none and its own limits apply.
    if (server.keepAliveTimeout <= 0) return void toHttp.call(server, socket);
    early.add(socket);
    let answered = false;
    const idleTimeout = server.keepAliveTimeout + KEEP_ALIVE_MARGIN_MS;
    const send: SendAnswer = (head, body) => {
      socket.cork();
      socket.write(head + tail.text(), 'latin1');
      socket.write(body);
      socket.uncork();
    };
    /** The connection's first head came whole (a later one is timed by node once handed off). */
    const arrived = (): void => {
      if (answered) return;
      answered = true;
      headArrived(socket);
    };
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString('latin1');
      let at = 0;
      while (at < text.length) {
        const get = server.listening ? readPlainGet(text, at, maxFields, maxHead) : undefined;
        if (!get) return handOff(chunk.subarray(at));
        if (!answer(get.target, send)) {
          // Taken for later only alone in its chunk: what a client sends meanwhile waits
          // in the socket, read once the answer is written.
          if (get.end === text.length && later && takeForLater(get, chunk.subarray(at))) return arrived();
          return handOff(chunk.subarray(at));
        }
        arrived();
        at = get.end;
        // A client that does not read what it asked: node's handler pauses it.
        if (socket.writableNeedDrain) return handOff(chunk.subarray(at));
      }
    };
    /** Offers `get` (whose bytes are `head`) to `later`, the socket paused and untimed while it is owed. */
    const takeForLater = (get: PlainGet, head: Buffer): boolean => {
      let settled = false;
      /** True once for the first of send and handOff, while the client is still there. */
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        owing.delete(socket);
        return !socket.destroyed;
      };
      owing.add(socket);
      socket.pause();
      socket.setTimeout(0); // the fill's own timeouts bound the wait
      const taken = later!(get, {
        send: (answerHead, body) => {
          if (!settle()) return false;
          send(answerHead, body);
          socket.setTimeout(idleTimeout);
          if (endWhenAnswered.has(socket)) socket.end();
          else if (socket.writableNeedDrain) handOff(Buffer.alloc(0));
          else socket.resume();
          return true;
        },
        handOff: (resume) => {
          if (!settle()) return;
          resumes.set(socket, resume);
          handOff(head);
        },
      });
      if (!taken) settle(); // not owed: the hand-off that follows times and resumes the socket
      return taken;
    };
    // A connection the client ended is ended here too, as node's handler ends it (its
    // socket is half-open only until then), every answer having been written whole.
    const onEnd = (): void => void socket.end();
    const onTimeout = (): void => void socket.destroy();
    const onError = (): void => undefined; // the socket is destroyed; 'close' follows
    const onClose = (): void => {
      early.delete(socket);
      owing.delete(socket);
    };
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
      socket.resume(); // paused while an answer was owed
    };
    socket.on('data', onData).on('end', onEnd).on('timeout', onTimeout).on('error', onError).on('close', onClose);
    // An idle connection is closed as node closes its own: a second after the timeout its
    // answers announce, so that a client reusing it just before that does not race the close.
    socket.setTimeout(idleTimeout);
  });

  // Closing: node closes its idle connections, and all of them at the end of a drain. The
  // ones still here are idle (every answer was written whole) but for those owed an
  // answer: they end once what was written is flushed, or once their answer is.
  const closeIdle = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => {
    closeIdle();
    for (const socket of early) {
      if (owing.has(socket)) endWhenAnswered.add(socket);
      else socket.end(() => socket.destroy());
    }
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
      this.#text = flatLatin1(`\r\nDate: ${new Date(now).toUTCString()}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveTimeout / 1000)}\r\n\r\n`);
    }
    return this.#text;
  }
}
