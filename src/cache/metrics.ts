// The cache's accounting: a prom-client registry of its own (several caches can live in
// one process, e.g. in tests) plus plain tallies for the JSON /-/stats.
import { Counter, Gauge, Registry } from 'prom-client';
import { registerZeroCopyMetrics } from '../http/zero-copy.js';
import type { Evicted } from './disk-store.js';

/** cas, tooltool, artifacts, projects, or mirror:NAME. */
export type Kind = string;

export interface KindTally {
  bytesServed: number;
  bytesUpstream: number;
  /** Bodies of PUTs forwarded to upstream and accepted by it (the region's uploads). */
  bytesUploaded: number;
  hits: number;
  misses: number;
  collapsed: number;
}

export function emptyTally(): KindTally {
  return { bytesServed: 0, bytesUpstream: 0, bytesUploaded: 0, hits: 0, misses: 0, collapsed: 0 };
}

/** Adds `t` into `sum` (totals, and the workers of a multi-process cache). */
export function addTally(sum: KindTally, t: KindTally): void {
  sum.bytesServed += t.bytesServed;
  sum.bytesUpstream += t.bytesUpstream;
  sum.bytesUploaded += t.bytesUploaded ?? 0; // a worker of an older version during an upgrade sends none
  sum.hits += t.hits;
  sum.misses += t.misses;
  sum.collapsed += t.collapsed;
}

/** The counters read from the tallies when scraped: name, help, and the field each reads. */
export const TALLY_COUNTERS: ReadonlyArray<readonly [name: string, help: string, field: keyof KindTally]> = [
  ['fleetcache_cache_bytes_served_total', 'Bytes of bodies sent to clients.', 'bytesServed'],
  ['fleetcache_cache_bytes_upstream_total', 'Bytes of bodies received from upstream.', 'bytesUpstream'],
  ['fleetcache_cache_bytes_uploaded_total', 'Bytes of PUT bodies forwarded to upstream and accepted by it.', 'bytesUploaded'],
  ['fleetcache_cache_hits_total', 'Requests answered from disk.', 'hits'],
  ['fleetcache_cache_misses_total', 'Requests that started an upstream fetch.', 'misses'],
  ['fleetcache_cache_collapsed_total', 'Requests that joined a fill already in flight.', 'collapsed'],
];

/**
 * fleetcache_process_start_time_seconds, as the origin's (prom-client's default metric), in
 * `registry`: when this process started. Aggregated by min, and registered by a
 * multi-process cache's primary too: the cache's is then its primary's start, when its
 * counters started (a worker replaced later does not reset them, see cluster/primary.ts).
 */
export function registerStartTime(registry: Registry): void {
  const gauge = new Gauge({ name: 'fleetcache_process_start_time_seconds', help: 'Start time of the process since unix epoch in seconds.', registers: [registry], aggregator: 'min' });
  gauge.set(Math.round(Date.now() / 1000 - process.uptime()));
}

/**
 * Registers TALLY_COUNTERS in `registry`, read from `tallies` when scraped: a process's, or
 * the dead workers' of a multi-process cache (cluster/primary.ts). Requests only add to the
 * plain tallies (prom-client hashes the labels on every inc, a cost paid per request otherwise).
 */
export function registerTallyCounters(registry: Registry, tallies: () => Iterable<[Kind, KindTally]>): void {
  for (const [name, help, field] of TALLY_COUNTERS) {
    new Counter({
      name, help, labelNames: ['kind'], registers: [registry],
      collect() {
        this.reset();
        for (const [kind, t] of tallies()) this.inc({ kind }, t[field]);
      },
    });
  }
}

export class CacheMetrics {
  readonly registry = new Registry();
  /** When these counters started (a report tells a restart by it, src/report/ledger.ts). */
  readonly startedAt = new Date().toISOString();
  #tallies = new Map<Kind, KindTally>();
  /** Called on every change of a tally: a worker's report to its primary (cluster/link.ts). */
  #changed: () => void = () => undefined;

  /** Error answers by code and status (`code\0status`), read when scraped as the tallies are. */
  readonly #errors = new Map<string, number>();

  /** Requests a fill another request started is answering now (joiningFill). */
  #fillJoiners = 0;

  /**
   * `region`: a label on every series, with `role="cache"`, as the origin's carry
   * `role="origin"`: one dashboard reads both, and the regions apart.
   */
  constructor(region: string, gauges: { inflight: () => number; lruBytes: () => number; lruObjects: () => number; maxSize: () => number; evicted: () => Evicted; refusing: () => boolean; storageFailures: () => number; fillsCut: () => number; fillMemory: () => number; fillMemoryLimit: () => number }) {
    this.registry.setDefaultLabels({ role: 'cache', region });
    const registers = [this.registry];
    const tallies = this.#tallies;
    const errors = this.#errors;
    new Counter({
      name: 'fleetcache_cache_errors_total', help: 'Error answers of the cache itself (not upstream answers passed through), by code and HTTP status: FC_ERR_UPSTREAM and FC_ERR_UPSTREAM_TIMEOUT are misses upstream did not serve.',
      labelNames: ['code', 'status'], registers,
      collect() {
        this.reset();
        for (const [key, n] of errors) {
          const [code, status] = key.split('\0');
          this.inc({ code: code!, status: status! }, n);
        }
      },
    });
    registerTallyCounters(this.registry, () => tallies);
    registerZeroCopyMetrics(this.registry);
    // The process's memory and CPU, read when scraped, summed over the workers of a
    // multi-process cache. Not prom-client's default metrics, as the origin has: their GC
    // observer and event-loop monitor work on every request path (one A/B of cold small
    // measured 5% more CPU per miss with them, within that figure's noise); these cost nothing
    // between scrapes.
    registerStartTime(this.registry);
    new Gauge({ name: 'fleetcache_process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers, collect() { this.set(process.memoryUsage.rss()); } });
    new Gauge({ name: 'fleetcache_nodejs_heap_size_used_bytes', help: 'Process heap size used from Node.js in bytes.', registers, collect() { this.set(process.memoryUsage().heapUsed); } });
    new Counter({
      name: 'fleetcache_process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.', registers,
      collect() {
        const { user, system } = process.cpuUsage();
        this.reset();
        this.inc((user + system) / 1e6);
      },
    });
    new Gauge({ name: 'fleetcache_cache_inflight_fills', help: 'Fills in progress.', registers, aggregator: 'max', collect() { this.set(gauges.inflight()); } });
    const fillJoiners = (): number => this.#fillJoiners;
    new Gauge({
      name: 'fleetcache_cache_fill_joiners', help: 'Requests answered now by a fill another request started: waiting for its answer or reading its body (fleetcache_cache_collapsed_total counts them once the answer is known).',
      registers, collect() { this.set(fillJoiners()); },
    });
    new Gauge({ name: 'fleetcache_cache_lru_bytes', help: 'Bytes held on disk by the LRU index.', registers, aggregator: 'max', collect() { this.set(gauges.lruBytes()); } });
    new Gauge({ name: 'fleetcache_cache_lru_objects', help: 'Objects held on disk by the LRU index.', registers, aggregator: 'max', collect() { this.set(gauges.lruObjects()); } });
    // The budget lru_bytes is measured against, so that a dashboard or an alert can divide one by the other.
    new Gauge({ name: 'fleetcache_cache_max_size_bytes', help: 'The maxSize budget of the LRU index, counted as fleetcache_cache_lru_bytes is (whole blocks).', registers, aggregator: 'max', collect() { this.set(gauges.maxSize()); } });
    // The index's (the primary's, in a multi-process cache: each worker tells what it last heard).
    new Counter({
      name: 'fleetcache_cache_evicted_objects_total', help: 'Objects the LRU index evicted: the least recently used, over the size limit or to make room on the disk for a fill.',
      registers, aggregator: 'max', collect() { this.reset(); this.inc(gauges.evicted().objects); },
    });
    new Counter({
      name: 'fleetcache_cache_evicted_bytes_total', help: 'Bytes of the objects the LRU index evicted.',
      registers, aggregator: 'max', collect() { this.reset(); this.inc(gauges.evicted().bytes); },
    });
    // Per process: in a multi-process cache each worker learns of a failing disk by its own writes.
    new Gauge({
      name: 'fleetcache_cache_disk_refusing', help: '1 while the disk refuses writes (the 30 s after a storage failure: nothing is kept), else 0.',
      registers, aggregator: 'max', collect() { this.set(gauges.refusing() ? 1 : 0); },
    });
    new Gauge({
      name: 'fleetcache_cache_fill_memory_bytes', help: 'Bytes the fills in flight keep in memory for their readers (bounded by fillMemory per process).',
      registers, collect() { this.set(gauges.fillMemory()); },
    });
    new Gauge({
      name: 'fleetcache_cache_fill_memory_limit_bytes', help: 'The fillMemory budget (summed over workers, like fleetcache_cache_fill_memory_bytes).',
      registers, collect() { this.set(gauges.fillMemoryLimit()); },
    });
    new Counter({
      name: 'fleetcache_cache_fills_cut_total', help: 'Fills that failed after their answer began (upstream died, stalled or sent a body not matching its digest): the clients reading them, if any, saw the answer cut; a kept fill with no reader left counts too.',
      registers, collect() { this.reset(); this.inc(gauges.fillsCut()); },
    });
    new Counter({
      name: 'fleetcache_cache_storage_failures_total', help: 'Writes the disk refused (full or failing), each starting 30 s without keeping anything.',
      registers, collect() { this.reset(); this.inc(gauges.storageFailures()); },
    });
  }

  /** `changed` is called whenever a tally moves (a worker schedules its report with it). */
  onChange(changed: () => void): void {
    this.#changed = changed;
  }

  #tally(kind: Kind): KindTally {
    this.#changed();
    let t = this.#tallies.get(kind);
    if (!t) {
      t = emptyTally();
      this.#tallies.set(kind, t);
    }
    return t;
  }

  served(kind: Kind, bytes: number): void {
    this.#tally(kind).bytesServed += bytes;
  }

  upstream(kind: Kind, bytes: number): void {
    this.#tally(kind).bytesUpstream += bytes;
  }

  uploaded(kind: Kind, bytes: number): void {
    this.#tally(kind).bytesUploaded += bytes;
  }

  hit(kind: Kind): void {
    this.#tally(kind).hits++;
  }

  /** A hit whose whole body was handed to the socket at once (fast-hit.ts). */
  hitServed(kind: Kind, bytes: number): void {
    const t = this.#tally(kind);
    t.hits++;
    t.bytesServed += bytes;
  }

  miss(kind: Kind): void {
    this.#tally(kind).misses++;
  }

  collapsed(kind: Kind): void {
    this.#tally(kind).collapsed++;
  }

  /** A request joins a fill another request started; the function returned is called once, when its answer has ended. */
  joiningFill(): () => void {
    this.#fillJoiners++;
    return () => void this.#fillJoiners--;
  }

  /** An error answer (the error handler's, or a fast path's: fast-miss.ts). */
  error(code: string, status: number): void {
    const key = `${code}\0${status}`;
    this.#errors.set(key, (this.#errors.get(key) ?? 0) + 1);
  }

  /** This process's tallies (a worker's share of a multi-process cache). */
  tallies(): Record<Kind, KindTally> {
    return Object.fromEntries(this.#tallies);
  }

  /**
   * JSON figures; savings = (served − upstream) / served, the share of served bytes that did
   * not come from upstream: negative when the cache fetched more than it served (a range of
   * a miss fills the whole blob, a download given up leaves its fill going), as a run's report shows it.
   */
  stats(all: Record<Kind, KindTally> = this.tallies()): { kinds: Record<Kind, KindTally & { savingsRatio: number }>; total: KindTally & { savingsRatio: number } } {
    const ratio = (t: KindTally): number => (t.bytesServed === 0 ? 0 : 1 - t.bytesUpstream / t.bytesServed);
    const total = emptyTally();
    const kinds: Record<Kind, KindTally & { savingsRatio: number }> = {};
    for (const [kind, t] of Object.entries(all)) {
      kinds[kind] = { ...t, savingsRatio: ratio(t) };
      addTally(total, t);
    }
    return { kinds, total: { ...total, savingsRatio: ratio(total) } };
  }
}
