// The worker's side of the cluster protocol (see protocol.ts): claims fills, reports
// commits, hits (batched) and deletions to the primary, hears about evictions, and asks
// for the figures of the whole cache.
import type { KindTally } from '../metrics.js';
import { Outbox, unbatch, type Batch, type PrimaryMessage, type WorkerMessage } from './protocol.js';

/** The outcome of a claim: lead the fill, join the one another worker leads, or read the object another worker stored. */
export type Claim = { readonly lead: true } | { readonly lead: false; readonly socket: string } | { readonly lead: false; readonly stored: true };

/** Hits are reported at most this often (the LRU order can lag that much). */
const TOUCH_FLUSH_MS = 200;

type Reply = Extract<PrimaryMessage, { req: number }>;

export class ClusterLink {
  /** This worker's private socket, where other workers join its fills. */
  readonly socket: string;
  #outbox: Outbox<WorkerMessage>;
  #next = 1;
  #pending = new Map<number, (m: Reply) => void>();
  #touched = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #onEvicted: (id: string) => void = () => undefined;
  #tally: () => Record<string, KindTally> = () => ({});
  /** The primary's figures for the whole store, as last broadcast. */
  store = { bytes: 0, objects: 0, inflight: 0 };

  constructor(socket: string, proc: NodeJS.Process = process) {
    if (!proc.send) throw new Error('a cache worker needs an IPC channel to its primary');
    const send = proc.send.bind(proc);
    this.socket = socket;
    this.#outbox = new Outbox<WorkerMessage>((m) => void send(m));
    proc.on('message', (m: PrimaryMessage | Batch<PrimaryMessage>) => unbatch(m, (one) => this.#receive(one)));
  }

  /** Wires the store (evictions) and the metrics (tallies asked for by /-/stats anywhere). */
  attach(onEvicted: (id: string) => void, tally: () => Record<string, KindTally>): void {
    this.#onEvicted = onEvicted;
    this.#tally = tally;
  }

  claim(key: string, id?: string): Promise<Claim> {
    return this.#ask<Extract<Reply, { t: 'claim' }>>({ t: 'claim', req: 0, key, ...(id === undefined ? {} : { id }) })
      .then((m) => (m.lead ? { lead: true } : 'stored' in m ? { lead: false, stored: true } : { lead: false, socket: m.socket }));
  }

  release(key: string): void {
    this.#outbox.push({ t: 'release', key });
  }

  committed(id: string, size: number, storedAt: number): void {
    this.#outbox.push({ t: 'committed', id, size, storedAt });
  }

  deleted(id: string): void {
    this.#outbox.push({ t: 'deleted', id });
  }

  touched(id: string): void {
    this.#touched.add(id);
    this.#timer ??= setTimeout(() => this.flush(), TOUCH_FLUSH_MS).unref();
  }

  /** Sends what is queued now (the hits reported since the last flush, too). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#touched.size > 0) this.#outbox.push({ t: 'touched', ids: [...this.#touched] });
    this.#touched.clear();
    this.#outbox.flush();
  }

  /** Tallies per kind summed over every worker. */
  async stats(): Promise<Record<string, KindTally>> {
    return (await this.#ask<Extract<Reply, { t: 'stats' }>>({ t: 'stats', req: 0 })).kinds;
  }

  /** Prometheus text for the whole cache (prom-client's cluster aggregation in the primary). */
  async metrics(): Promise<{ text: string; contentType: string }> {
    const m = await this.#ask<Extract<Reply, { t: 'metrics' }>>({ t: 'metrics', req: 0 });
    return { text: m.text, contentType: m.contentType };
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
      case 'evicted':
        return this.#onEvicted(m.id);
      case 'store':
        this.store = { bytes: m.bytes, objects: m.objects, inflight: m.inflight };
        return;
      case 'tally?':
        return this.#outbox.push({ t: 'tally', req: m.req, kinds: this.#tally() });
      default: {
        const resolve = this.#pending.get(m.req);
        this.#pending.delete(m.req);
        resolve?.(m);
      }
    }
  }
}
