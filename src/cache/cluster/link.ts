// The worker's side of the cluster protocol (see protocol.ts): reports commits, hits, the
// bodies it reads and the count of fills it leads (batched on a timer), deletions and the
// room its reservations hold to the primary, hears about evictions and the other workers'
// reservations, and asks for the figures of the whole cache. Which worker fills an object
// is settled without the primary (see fills.ts).
import type { Server } from 'node:http';
import { Socket } from 'node:net';
import type { KindTally } from '../metrics.js';
import type { ErrorCode } from '../../errors.js';
import { NONE_RESERVED, sameReserved, type Reserved } from '../disk-store.js';
import { Outbox, unbatch, type HandedConnection, type MetricsJson, type PrimaryMessage, type StoreFigures, type WorkerEnv, type WorkerMessage } from './protocol.js';

/**
 * Commits, hits and the count of fills led are reported at most this often: the primary's
 * LRU index (order and bytes) and its figures can lag that much. A message to the primary
 * per miss cost each cold miss a wake-up of a third process (about a quarter of its CPU
 * with two workers on two cores).
 */
const REPORT_FLUSH_MS = 200;

/**
 * A change of the room this worker's reservations hold is told to the primary at once
 * (within a turn of the event loop) from this size on: the other workers count it before
 * they reserve (a large fill in each at once on a disk that holds the budget ran out of room
 * mid-way). Smaller ones (a small fill's) wait for the next flush, within the room the store
 * keeps free beyond each reservation.
 */
const RESERVED_STEP = 256 * 1024;

type Reply = Extract<PrimaryMessage, { req: number }>;

export class ClusterLink {
  /** This worker's private socket, where other workers join its fills. */
  readonly socket: string;
  /** The other workers' sockets. */
  readonly peers: readonly string[];
  #outbox: Outbox<WorkerMessage>;
  readonly #send: (m: WorkerMessage, sent: () => void) => void;
  /** The server that takes the connections the primary hands (see serve). */
  #server: Server | undefined;
  /** @public read by `this.#next++` in #ask, which knip does not count as a use. */
  #next = 1;
  #pending = new Map<number, (m: Reply) => void>();
  /** Ids hit since the last flush, each once (the store reports an id once per epoch). */
  #touched: string[] = [];
  #committed: { id: string; size: number; storedAt: number; sidecar?: number | undefined }[] = [];
  /** Bodies whose first reader opened (their size) or last closed (undefined) since the last flush: the last change of each. */
  #reading = new Map<string, number | undefined>();
  /** The bytes of the bodies every worker reads, as the primary's last answer to makeRoom said. @public DiskStore reads it through StorePeer, which knip does not follow. */
  readBytes = 0;
  /** The room the other workers' reservations hold, as the primary last said. @public DiskStore reads it through StorePeer, which knip does not follow. */
  othersReserved = NONE_RESERVED;
  /** This worker's (see reservations): now, and as last told to the primary. */
  #reserved = NONE_RESERVED;
  #reportedReserved = NONE_RESERVED;
  #reservedDue = false;
  #leading: () => number = () => 0;
  #reportedLeading = 0;
  #timer: NodeJS.Timeout | undefined;
  #onForget: (id: string) => void = () => undefined;
  #tally: () => Record<string, KindTally> = () => ({});
  #metricsJson: () => Promise<MetricsJson> = async () => [];
  /** The primary's figures for the whole store, as last broadcast or answered with stats. */
  store: StoreFigures = { bytes: 0, objects: 0, evicted: { objects: 0, bytes: 0 }, inflight: 0 };
  /** When the primary started, as its last stats answer said. */
  startedAt: string | undefined;
  /** Workers that died while serving, as the primary's last stats answer said. */
  workersLost = 0;
  /** Counts the flushes (StorePeer.epoch). @public DiskStore reads it through StorePeer, which knip does not follow. */
  epoch = 0;

  constructor(env: WorkerEnv, proc: NodeJS.Process = process) {
    if (!proc.send) throw new Error('a cache worker needs an IPC channel to its primary');
    const send = proc.send.bind(proc);
    this.socket = env.socket;
    this.peers = env.peers;
    this.#outbox = new Outbox<WorkerMessage>((m) => void send(m));
    this.#send = (m, sent) => void send(m, undefined, {}, () => sent());
    proc.on('message', (m: unknown, handle: unknown) => {
      if (handle instanceof Socket && isConnection(m)) return this.#take(m.conn, handle);
      unbatch<PrimaryMessage>(m, (one) => this.#receive(one));
    });
  }

  /**
   * Serves the connections the primary hands this worker with `server` (listening: see
   * WorkerEnv.http), from now on. Each is said taken before it is read: until then the
   * primary keeps its copy, and hands it to another worker if this one dies first.
   */
  serve(server: Server): void {
    this.#server = server;
    this.#outbox.push({ t: 'ready' });
    this.#outbox.flush();
  }

  #take(conn: number, socket: Socket): void {
    // Reset before node's handlers are on it: ended here, not as an uncaught error.
    const early = (): void => undefined;
    socket.on('error', early);
    // The connection is given to the server once 'took' is written: a worker that dies after
    // it read from the socket has its 'took' on the channel, which the primary reads to its end.
    // Node reads the socket as soon as the event loop polls, which a write to the channel
    // comes before unless the channel is full (the primary behind with the worker's reports):
    // a worker dying then, having read the request, leaves the next worker a connection whose
    // client waits for an answer to a request that worker never saw (cut by its head timeout).
    this.#send({ t: 'took', conn }, () => {
      socket.off('error', early);
      if (socket.destroyed) return;
      if (this.#server) adoptConnection(this.#server, socket);
      else socket.destroy(); // never: the primary hands connections once told to (serve)
    });
  }

  /**
   * Wires the store (evictions), the fills (how many this worker leads) and the metrics
   * (tallies asked for by /-/stats anywhere, the registry by /-/metrics anywhere).
   */
  attach(onForget: (id: string) => void, leading: () => number, tally: () => Record<string, KindTally>, metricsJson: () => Promise<MetricsJson>): void {
    this.#onForget = onForget;
    this.#leading = leading;
    this.#tally = tally;
    this.#metricsJson = metricsJson;
  }

  /** Tells the primary that this worker could not start, and why (sent at once). */
  failed(code: ErrorCode, message: string): void {
    this.#outbox.push({ t: 'failed', code, message });
    this.#outbox.flush();
  }

  /** @public DiskStore calls it through StorePeer, which knip does not follow. */
  committed(id: string, size: number, storedAt: number, sidecar: number | undefined): void {
    this.#committed.push({ id, size, storedAt, sidecar });
    this.#schedule();
  }

  /** @public DiskStore calls it through StorePeer, which knip does not follow. */
  deleted(id: string): void {
    this.#outbox.push({ t: 'deleted', id });
  }

  /** @public DiskStore calls it through StorePeer, which knip does not follow. */
  touched(id: string): void {
    if (this.#touched.push(id) === 1) this.#schedule();
  }

  /** This worker opened its first reader of the body of `id` (`size` bytes), or closed its last (`size` undefined). @public DiskStore calls it through StorePeer, which knip does not follow. */
  reading(id: string, size: number | undefined): void {
    this.#reading.set(id, size);
    this.#schedule();
  }

  /** The room this worker's reservations in progress hold is now `held`. @public DiskStore calls it through StorePeer, which knip does not follow. */
  reservations(held: Reserved): void {
    this.#reserved = held;
    const told = this.#reportedReserved;
    if (Math.abs(held.bytes - told.bytes) < RESERVED_STEP && Math.abs(held.unwritten - told.unwritten) < RESERVED_STEP) return this.#schedule();
    if (this.#reservedDue) return;
    // At the end of this turn: the reservations and writes of one turn make one report.
    this.#reservedDue = true;
    setImmediate(() => this.#reportReserved());
  }

  #reportReserved(): void {
    this.#reservedDue = false;
    const held = this.#reserved;
    if (sameReserved(held, this.#reportedReserved)) return;
    this.#reportedReserved = held;
    // The commits first: a fill's reservation ends at its commit, and until the commit's report
    // (up to 200 ms later) its room was counted by nothing the other workers know, neither
    // reserved nor kept: a fill that lacked room then took it for a failing disk.
    this.#sendCommitted();
    this.#outbox.push({ t: 'reserved', ...held });
  }

  #sendCommitted(): void {
    if (this.#committed.length > 0) this.#outbox.push({ t: 'committed', entries: this.#committed });
    this.#committed = [];
  }

  /** Sends what is queued now (the commits, hits, bodies read and count of fills gathered since the last flush, and the tallies, too). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#sendCommitted();
    if (this.#touched.length > 0) this.#outbox.push({ t: 'touched', ids: this.#touched });
    this.#touched = [];
    if (this.#reading.size > 0) this.#outbox.push(readingReport(this.#reading));
    this.#reading = new Map();
    this.#reportReserved();
    this.epoch++;
    this.#outbox.push({ t: 'totals', kinds: this.#tally() });
    const leading = this.#leading();
    if (leading !== this.#reportedLeading) {
      this.#reportedLeading = leading;
      this.#outbox.push({ t: 'leading', fills: leading });
    }
    this.#outbox.flush();
    // A registry that cannot be read is left unreported: the last one read stands.
    void this.#metricsJson().then((metrics) => this.#outbox.push({ t: 'counters', metrics }), () => undefined);
  }

  /** A fill this worker leads started or ended: the count goes with the next flush. */
  leadingChanged(): void {
    this.#schedule();
  }

  /**
   * A tally moved (bytes served, a hit): it goes with the next flush, so that a worker that
   * dies loses at most REPORT_FLUSH_MS of counts (a hit's bytes are counted when its answer
   * ends, after the report its touch scheduled had gone).
   */
  tallied(): void {
    this.#schedule();
  }

  /** Flushes within REPORT_FLUSH_MS. */
  #schedule(): void {
    this.#timer ??= setTimeout(() => this.flush(), REPORT_FLUSH_MS).unref();
  }

  /**
   * Tallies per kind summed over every worker. Every worker sends what it has gathered
   * before its tally, so the answer, and `store` once it resolves, count every commit and
   * hit made before the call.
   */
  async stats(): Promise<Record<string, KindTally>> {
    const answer = await this.#ask<Extract<Reply, { t: 'stats' }>>({ t: 'stats', req: 0 });
    this.store = answer.store;
    this.startedAt = answer.startedAt;
    this.workersLost = answer.workersLost;
    return answer.kinds;
  }

  /** Prometheus text for the whole cache (aggregated by the primary, see primary.ts's clusterMetrics). */
  async metrics(): Promise<{ text: string; contentType: string }> {
    const m = await this.#ask<Extract<Reply, { t: 'metrics' }>>({ t: 'metrics', req: 0 });
    return { text: m.text, contentType: m.contentType };
  }

  /** @public DiskStore calls it through StorePeer, which knip does not follow. */
  async makeRoom(bytes: number, whole: boolean): Promise<number> {
    this.flush(); // the commits and bodies read gathered so far first: the primary evicts among them too
    const answer = await this.#ask<Extract<Reply, { t: 'room' }>>({ t: 'room', req: 0, bytes, whole });
    this.readBytes = answer.readBytes;
    this.othersReserved = answer.othersReserved;
    this.store = answer.store; // fresher than the last broadcast (STORE_BROADCAST_MS): what holds the room now
    return answer.freed;
  }

  #ask<R extends Reply>(m: Extract<WorkerMessage, { req: number }>): Promise<R> {
    const req = this.#next++;
    return new Promise<R>((resolve) => {
      this.#pending.set(req, resolve as (m: Reply) => void);
      this.#outbox.push({ ...m, req });
    });
  }

  #receive(m: PrimaryMessage): void {
    switch (m.t) {
      case 'forget':
        return this.#onForget(m.id);
      case 'store':
        this.store = { bytes: m.bytes, objects: m.objects, evicted: m.evicted, inflight: m.inflight };
        return;
      case 'reserved':
        this.othersReserved = m.others;
        return;
      case 'tally?':
        this.flush(); // the commits and hits gathered so far reach the primary before the tally
        return this.#outbox.push({ t: 'tally', req: m.req, kinds: this.#tally() });
      case 'metrics?': {
        const req = m.req;
        // A registry that cannot be read answers empty rather than ending the worker (a rejection no one handles).
        return void this.#metricsJson().then(
          (metrics) => this.#outbox.push({ t: 'metrics-json', req, metrics }),
          () => this.#outbox.push({ t: 'metrics-json', req, metrics: [] }),
        );
      }
      default: {
        const resolve = this.#pending.get(m.req);
        this.#pending.delete(m.req);
        resolve?.(m);
      }
    }
  }
}

/**
 * What node's net.Server does with a connection it accepts (lib/net.js, onconnection), for
 * one the primary accepted: counted among the server's connections (server.close() waits for
 * it, a draining worker's too; a socket's end uncounts it), with node:http's TCP_NODELAY,
 * then given to the server's listeners.
 */
function adoptConnection(server: Server, socket: Socket): void {
  (server as Server & { _connections: number })._connections++;
  Object.assign(socket, { server, _server: server });
  socket.setNoDelay(true);
  server.emit('connection', socket);
}

/** A connection sent by the primary (with its socket as the message's handle). */
function isConnection(m: unknown): m is HandedConnection {
  return typeof m === 'object' && m !== null && (m as { t?: unknown }).t === 'conn' && typeof (m as { conn?: unknown }).conn === 'number';
}

/** The 'reading' report of `changes` (see ClusterLink.reading): each body opened (with its size) or closed. */
function readingReport(changes: ReadonlyMap<string, number | undefined>): Extract<WorkerMessage, { t: 'reading' }> {
  const opened: [string, number][] = [];
  const closed: string[] = [];
  for (const [id, size] of changes) {
    if (size === undefined) closed.push(id);
    else opened.push([id, size]);
  }
  return { t: 'reading', opened, closed };
}
