// Byte and request accounting for a server. One source of truth: the counters live
// here; /-/stats serialises them and /-/metrics exposes them through prom-client.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { registerZeroCopyMetrics } from '../http/zero-copy.js';

/** What a route serves: cas, tooltool, artifacts, projects, mirror:<name>, ops. */
type RouteKind = string;

/**
 * Bounds of the request duration histogram, in seconds: prom-client's defaults (5 ms to 10 s)
 * for the small answers, then up to half an hour for blobs, uploads and downloads, which take
 * as long as their size over the link.
 */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

interface KindTotals {
  bytesIn: number;
  bytesOut: number;
  requests: number;
}

export class TrafficLedger {
  readonly registry = new Registry();
  readonly #kinds = new Map<RouteKind, KindTotals>();
  readonly #requests: Counter<'kind' | 'method' | 'status'>;
  readonly #bytesIn: Counter<'kind'>;
  readonly #bytesOut: Counter<'kind'>;
  readonly #durations: Histogram<'kind' | 'method'>;
  readonly startedAt = Date.now();

  constructor(readonly role: string, labels: Record<string, string> = {}) {
    this.registry.setDefaultLabels({ role, ...labels });
    collectDefaultMetrics({ register: this.registry, prefix: 'fleetcache_' });
    // prom-client's gauges named *_total (active handles, requests and resources: the sums of
    // their gauges by type) break Prometheus' naming rule, which `promtool check metrics`
    // reports: a _total is a counter. sum() of the gauge by type gives the same figure.
    for (const metric of this.registry.getMetricsAsArray()) {
      if (metric.name.endsWith('_total') && !(metric instanceof Counter)) this.registry.removeSingleMetric(metric.name);
    }
    registerZeroCopyMetrics(this.registry);
    this.#requests = new Counter({
      name: 'fleetcache_requests_total',
      help: 'HTTP requests answered, by kind of route, method and status (aborted: the client went before its answer was sent)',
      labelNames: ['kind', 'method', 'status'],
      registers: [this.registry],
    });
    this.#bytesIn = new Counter({
      name: 'fleetcache_bytes_in_total',
      help: 'Body bytes received from clients (uploads), by kind of route',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    this.#bytesOut = new Counter({
      name: 'fleetcache_bytes_out_total',
      help: 'Body bytes sent to clients, by kind of route',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    this.#durations = new Histogram({
      name: 'fleetcache_request_duration_seconds',
      help: 'Time from a routed request\'s start to its answer\'s end (the whole body handed to the socket), by kind of route and method',
      labelNames: ['kind', 'method'],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
  }

  #totals(kind: RouteKind): KindTotals {
    let t = this.#kinds.get(kind);
    if (!t) {
      t = { bytesIn: 0, bytesOut: 0, requests: 0 };
      this.#kinds.set(kind, t);
    }
    return t;
  }

  /** A request answered `status`, or `aborted`: its client went before its answer was sent. */
  request(kind: RouteKind, method: string, status: number | 'aborted'): void {
    this.#totals(kind).requests++;
    this.#requests.inc({ kind, method, status: String(status) });
  }

  /** A routed request's time, its start to its answer's end (not those answered before routing, which take none). */
  requestTook(kind: RouteKind, method: string, seconds: number): void {
    this.#durations.observe({ kind, method }, seconds);
  }

  bytesIn(kind: RouteKind, n: number): void {
    if (n <= 0) return;
    this.#totals(kind).bytesIn += n;
    this.#bytesIn.inc({ kind }, n);
  }

  bytesOut(kind: RouteKind, n: number): void {
    if (n <= 0) return;
    this.#totals(kind).bytesOut += n;
    this.#bytesOut.inc({ kind }, n);
  }

  snapshot(): { role: string; startedAt: string; uptimeSeconds: number; kinds: Record<RouteKind, KindTotals>; totals: KindTotals } {
    const kinds: Record<RouteKind, KindTotals> = {};
    const totals: KindTotals = { bytesIn: 0, bytesOut: 0, requests: 0 };
    for (const [k, v] of this.#kinds) {
      kinds[k] = { ...v };
      totals.bytesIn += v.bytesIn;
      totals.bytesOut += v.bytesOut;
      totals.requests += v.requests;
    }
    return { role: this.role, startedAt: new Date(this.startedAt).toISOString(), uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000), kinds, totals };
  }
}
