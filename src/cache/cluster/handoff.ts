// How the connections of a multi-process cache reach its workers. The primary accepts each
// connection on the cache's port, reads nothing from it (pauseOnConnect), and hands it to one
// worker over the cluster channel; the worker says it took it before it reads a byte (see
// ClusterLink.serve, and its #take for the one exception). Node's own round robin does the
// same, but loses a connection handed to a worker that dies before taking it (killed, or
// stopped and then killed by the primary's watchdog): Node keeps its copy in the callback of
// a reply that never comes, and the client waits for its own timeout (nodejs/node#3551).
// Here the primary keeps its copy until the worker says it took it, and a worker whose
// process ends first had not read from it: the connection goes to another worker. As with
// Node's round robin, a worker is handed its next connection once it took the last: a
// stopped one holds one, until it goes on or is killed. A worker that never gets a
// connection sent to it (node drops a message whose socket did not come through:
// NODE_HANDLE_NACK, the worker at its file limit) answers the primary's next ping without
// having taken it: the connection then goes to another worker (see answered).
import type { Socket } from 'node:net';

/** Sends connection number `conn` to a worker (see ClusterLink.serve for the other side). */
export type HandConnection = (conn: number, socket: Socket) => void;

export class ConnectionHandoff {
  /** The workers with no connection handed and not taken, in the order they became so. */
  #free: number[] = [];
  /** How to reach each worker that takes connections. */
  readonly #hands = new Map<number, HandConnection>();
  /** The connection handed to each worker and not taken yet (`at`: see moment): the primary's copy stays open. */
  readonly #given = new Map<number, { readonly conn: number; readonly socket: Socket; readonly at: number }>();
  /** Connections accepted while no worker was free (all busy taking one, or none alive), oldest first. */
  #waiting: Socket[] = [];
  #next = 1;
  #moments = 0;
  /** Connections handed to another worker than the first they were sent to (see remove, unsent, answered). */
  rerouted = 0;
  #closed = false;
  readonly #maxWaiting: number;

  /** `maxWaiting`: connections held while no worker is free, past which a new one is closed at once. */
  constructor(maxWaiting: number) {
    this.#maxWaiting = maxWaiting;
  }

  /** Worker `id` takes connections from now on (it serves: its server listens). */
  add(id: number, hand: HandConnection): void {
    this.#hands.set(id, hand);
    this.#becameFree(id);
  }

  /** A connection accepted on the cache's port: handed to a free worker, else held until one is. */
  connection(socket: Socket): void {
    // The primary never reads nor writes it: an error (a reset) would only end it, not the primary.
    socket.on('error', () => undefined);
    this.#route(socket, false);
  }

  /** Worker `id` took connection `conn`: the primary closes its copy, and the worker is free for the next. */
  took(id: number, conn: number): void {
    const given = this.#given.get(id);
    if (given?.conn !== conn) return;
    this.#given.delete(id);
    given.socket.destroy();
    if (this.#hands.has(id)) this.#becameFree(id);
  }

  /**
   * Now, in the order of what is sent to the workers: a question sent to a worker after this
   * call reaches it after every connection handed before (node sends nothing to a worker
   * while a socket it was sent is unacknowledged), and its answer comes after that
   * connection's 'took' (the worker writes it first: see ClusterLink.serve).
   */
  moment(): number {
    return this.#moments++;
  }

  /**
   * Worker `id` answered a question sent at `moment`: a connection handed to it before, and
   * not taken, never reached it. It goes to another worker first, and `id` is free again.
   */
  answered(id: number, moment: number): boolean {
    const given = this.#given.get(id);
    if (!given || given.at >= moment) return false;
    this.#given.delete(id);
    this.#reroute(given.socket);
    if (this.#hands.has(id)) this.#becameFree(id);
    return true;
  }

  /**
   * Connection `conn` could not be sent to worker `id` (its channel failed): it goes to
   * another worker first; `id` is handed nothing more (the primary ends it: see primary.ts).
   */
  unsent(id: number, conn: number): void {
    const given = this.#given.get(id);
    this.#hands.delete(id);
    if (given?.conn !== conn) return;
    this.#given.delete(id);
    this.#reroute(given.socket);
  }

  /**
   * Worker `id` is gone (its process ended): the connection it had not taken, if any, goes to
   * another worker before those waiting. Called once its channel's last message was read (the
   * process's 'close'; its 'disconnect' never comes while a handle it was sent is unacknowledged):
   * a 'took' it sent before it died has been counted.
   */
  remove(id: number): void {
    this.#hands.delete(id);
    this.#free = this.#free.filter((w) => w !== id);
    const given = this.#given.get(id);
    if (!given) return;
    this.#given.delete(id);
    this.#reroute(given.socket);
  }

  /** The cache stops: nothing more is handed, and the connections held are closed. */
  close(): void {
    this.#closed = true;
    for (const socket of this.#waiting) socket.destroy();
    this.#waiting = [];
  }

  /** A connection its worker did not take goes to the next free worker, before those waiting. */
  #reroute(socket: Socket): void {
    if (!this.#closed) this.rerouted++;
    this.#route(socket, true);
  }

  /** Hands `socket` to the next free worker, or holds it (`first`: before those already held). */
  #route(socket: Socket, first: boolean): void {
    if (this.#closed) return void socket.destroy();
    const id = this.#free.shift();
    if (id !== undefined) return this.#give(id, socket);
    if (first) this.#waiting.unshift(socket);
    else if (this.#waiting.length < this.#maxWaiting) this.#waiting.push(socket);
    else socket.destroy();
  }

  #becameFree(id: number): void {
    const next = this.#waiting.shift();
    if (next) this.#give(id, next);
    else this.#free.push(id);
  }

  #give(id: number, socket: Socket): void {
    const conn = this.#next++;
    this.#given.set(id, { conn, socket, at: this.moment() });
    this.#hands.get(id)!(conn, socket);
  }
}
