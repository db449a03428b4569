// Messages between the primary of a multi-process cache and its workers (cluster IPC).
//
// Why several processes: one Node thread tops out far below what a regional cache must
// serve (every hit costs a socket write in the kernel, every miss a file creation), so
// `workers: N` runs N copies of the server on one port. What must stay single is kept in
// the primary: the LRU index bounded in bytes (it unlinks what it evicts) and the map of
// fills in flight, so that each object is still fetched from upstream once. A worker
// that loses the race for a fill joins it over the leader's private Unix socket.
//
// Messages sent during one turn of the event loop travel as one `batch` (see Outbox): a
// message costs both processes a JSON round and a wake-up, and each cold miss of a worker
// says claim, committed and release, so under load most of them share the trip.
import type { KindTally } from '../metrics.js';

/** Worker → primary. `req` numbers requests that expect a reply. */
export type WorkerMessage =
  /** `id` is set when the worker did not look for the object on disk: the primary says if it is there. */
  | { readonly t: 'claim'; readonly req: number; readonly key: string; readonly id?: string }
  | { readonly t: 'release'; readonly key: string }
  | { readonly t: 'committed'; readonly id: string; readonly size: number; readonly storedAt: number }
  | { readonly t: 'touched'; readonly ids: readonly string[] }
  | { readonly t: 'deleted'; readonly id: string }
  | { readonly t: 'stats'; readonly req: number }
  | { readonly t: 'metrics'; readonly req: number }
  | { readonly t: 'tally'; readonly req: number; readonly kinds: Record<string, KindTally> };

/** Primary → worker. */
export type PrimaryMessage =
  | { readonly t: 'claim'; readonly req: number; readonly lead: true }
  | { readonly t: 'claim'; readonly req: number; readonly lead: false; readonly socket: string }
  | { readonly t: 'claim'; readonly req: number; readonly lead: false; readonly stored: true }
  | { readonly t: 'evicted'; readonly id: string }
  | { readonly t: 'store'; readonly bytes: number; readonly objects: number; readonly inflight: number }
  | { readonly t: 'stats'; readonly req: number; readonly kinds: Record<string, KindTally> }
  | { readonly t: 'metrics'; readonly req: number; readonly text: string; readonly contentType: string }
  | { readonly t: 'tally?'; readonly req: number };

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
 * Calls `handle` with each message of `m` (a batch or a single one). Anything on the
 * channel that is not one of ours (no string `t`) is ignored.
 */
export function unbatch<M>(m: M | Batch<M>, handle: (m: M) => void): void {
  if (typeof m !== 'object' || m === null || typeof (m as { t?: unknown }).t !== 'string') return;
  if (isBatch(m)) for (const one of m.m) handle(one);
  else handle(m);
}

function isBatch<M>(m: M | Batch<M>): m is Batch<M> {
  return (m as { t?: unknown }).t === 'batch';
}

/** Environment a worker is started with. */
export const WORKER_SOCKET_ENV = 'FLEETCACHE_WORKER_SOCKET';
