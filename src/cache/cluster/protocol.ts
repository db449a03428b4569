// Messages between the primary of a multi-process cache and its workers (cluster IPC).
//
// Why several processes: one Node thread tops out far below what a regional cache must
// serve (every hit costs a socket write in the kernel, every miss a file creation), so
// `workers: N` runs N copies of the server behind one port (the primary accepts each connection
// and hands it to a worker: handoff.ts). What must stay single is kept in
// the primary: the LRU index bounded in bytes (it unlinks what it evicts, passing over the
// bodies the workers read: an evicted file keeps its room until its last reader closes it).
// Which worker fills an object is settled by its claim file (fills.ts), so that each object
// is still fetched from upstream once with no message on the miss path; a worker that loses
// the race joins the fill over the leader's private Unix socket.
//
// Messages sent during one turn of the event loop travel as one `batch` (see Outbox): a
// message costs both processes a JSON round and a wake-up. Commits and hits are gathered
// for a while first (link.ts).
import type { ErrorCode } from '../../errors.js';
import type { Registry } from 'prom-client';
import type { Evicted, Reserved } from '../disk-store.js';
import type { KindTally } from '../metrics.js';

/** Worker → primary. `req` numbers requests that expect a reply. */
export type WorkerMessage =
  /** Entries the worker committed, oldest first (`sidecar`: an http entry's sidecar bytes, see DiskStore.footprint). */
  | { readonly t: 'committed'; readonly entries: readonly { readonly id: string; readonly size: number; readonly storedAt: number; readonly sidecar?: number }[] }
  /** How many fills the worker leads now. */
  | { readonly t: 'leading'; readonly fills: number }
  | { readonly t: 'touched'; readonly ids: readonly string[] }
  | { readonly t: 'deleted'; readonly id: string }
  /**
   * Bodies the worker opened its first reader of (id and size) and closed its last reader of,
   * since its last report: the primary does not count their room as made by evicting them.
   */
  | { readonly t: 'reading'; readonly opened: readonly (readonly [string, number])[]; readonly closed: readonly string[] }
  /** The room the worker's reservations in progress hold (see ClusterLink.reservations). */
  | ({ readonly t: 'reserved' } & Reserved)
  /** Evict at least `bytes` (the least recently used first): a fill needs the room (DiskStore.makeRoom, and its `whole`). */
  | { readonly t: 'room'; readonly req: number; readonly bytes: number; readonly whole: boolean }
  | { readonly t: 'stats'; readonly req: number }
  | { readonly t: 'metrics'; readonly req: number }
  | { readonly t: 'tally'; readonly req: number; readonly kinds: Record<string, KindTally> }
  /** The worker's prom-client registry as JSON (Registry.getMetricsAsJSON), for the primary to aggregate. */
  | { readonly t: 'metrics-json'; readonly req: number; readonly metrics: MetricsJson }
  /** The worker's tallies so far, sent with each batch of reports: what still counts of a worker that dies. */
  | { readonly t: 'totals'; readonly kinds: Record<string, KindTally> }
  /** The worker's registry, sent after each batch of reports: its other counters (errors, sendfile, CPU) still count when it dies. */
  | { readonly t: 'counters'; readonly metrics: MetricsJson }
  /** The worker could not start (build or listen): the primary stops the cache with this error. */
  | { readonly t: 'failed'; readonly code: ErrorCode; readonly message: string }
  /** The worker serves: the primary hands it connections from now on (see handoff.ts). */
  | { readonly t: 'ready' }
  /** The worker took connection `conn`, before reading from it (see handoff.ts). */
  | { readonly t: 'took'; readonly conn: number };

/** Primary → worker. */
export type PrimaryMessage =
  /** An entry evicted, deleted, or replaced by another worker (a mirror object, a name): what the worker knows of it is out of date. */
  | { readonly t: 'forget'; readonly id: string }
  | ({ readonly t: 'store' } & StoreFigures)
  /** The tallies of every worker and the store's figures, each worker's reports taken in first. */
  | { readonly t: 'stats'; readonly req: number; readonly kinds: Record<string, KindTally>; readonly store: StoreFigures; readonly startedAt: string; readonly workersLost: number }
  | { readonly t: 'metrics'; readonly req: number; readonly text: string; readonly contentType: string }
  | { readonly t: 'tally?'; readonly req: number }
  /**
   * The answer to 'room', once the evicted files are unlinked; `readBytes`: the bytes of the
   * bodies every worker reads then; `othersReserved`: the room the other workers' reservations
   * hold; `store`: the index's figures then (what the objects kept hold).
   */
  | { readonly t: 'room'; readonly req: number; readonly freed: number; readonly readBytes: number; readonly othersReserved: Reserved; readonly store: StoreFigures }
  /** The room the other workers' reservations in progress hold changed: `others` now. */
  | { readonly t: 'reserved'; readonly others: Reserved }
  | { readonly t: 'metrics?'; readonly req: number };

/** Primary → worker: a connection of the cache's port, sent alone with its socket as the message's handle (see handoff.ts). */
export interface HandedConnection {
  readonly t: 'conn';
  readonly conn: number;
}

/** A prom-client registry as JSON (Registry.getMetricsAsJSON). */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** The primary's figures for the whole store. */
export interface StoreFigures {
  readonly bytes: number;
  readonly objects: number;
  readonly evicted: Evicted;
  /** Fills in flight in every worker. */
  readonly inflight: number;
}

/** Several messages in one (what goes over the channel is a message or a batch). */
export interface Batch<M> {
  readonly t: 'batch';
  readonly m: readonly M[];
}

/** Messages queued during one turn of the event loop, sent as one at its end. */
export class Outbox<M> {
  #queue: M[] = [];
  readonly #send: (m: M | Batch<M>) => void;

  constructor(send: (m: M | Batch<M>) => void) {
    this.#send = send;
  }

  push(m: M): void {
    if (this.#queue.push(m) === 1) setImmediate(() => this.flush());
  }

  flush(): void {
    const q = this.#queue;
    if (q.length === 0) return;
    this.#queue = [];
    this.#send(q.length === 1 ? q[0]! : { t: 'batch', m: q });
  }
}

/**
 * Calls `handle` with each message of `m` (a batch or a single one), as it came off the IPC
 * channel. Anything on the channel that is not one of ours (no string `t`: Node's cluster
 * messages) is ignored.
 */
export function unbatch<M>(m: unknown, handle: (m: M) => void): void {
  if (typeof m !== 'object' || m === null || typeof (m as { t?: unknown }).t !== 'string') return;
  const ours = m as M | Batch<M>;
  if (isBatch(ours)) for (const one of ours.m) handle(one);
  else handle(ours);
}

function isBatch<M>(m: M | Batch<M>): m is Batch<M> {
  return (m as { t?: unknown }).t === 'batch';
}

/** What a worker is started with: its private sockets and the other workers'. */
export interface WorkerEnv {
  /** Where other workers follow its fills. */
  readonly socket: string;
  /**
   * Where its HTTP server listens, for no one: its connections come from the primary (see
   * handoff.ts). Listening makes node and fastify treat the server as one that serves: node's
   * checks of late request heads start with it, fastify's close drains only a server it listened with.
   */
  readonly http: string;
  readonly peers: readonly string[];
  /** The prefix of its temp files' names (disk-store.ts useTempOrigin): the primary removes them when it dies. */
  readonly tempOrigin?: string;
}

const WORKER_ENV = 'FLEETCACHE_WORKER';

/** The environment variables that tell a forked worker its WorkerEnv. */
export function workerEnv(env: WorkerEnv): Record<string, string> {
  return { [WORKER_ENV]: JSON.stringify(env) };
}

/** The WorkerEnv of this process, when it is a worker of a multi-process cache. */
export function readWorkerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv | undefined {
  const text = env[WORKER_ENV];
  return text ? (JSON.parse(text) as WorkerEnv) : undefined;
}
