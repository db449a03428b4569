// The bandwidth ledger of a run: bytes per link, actual against naive (every machine
// downloading the full project and every asset from the origin, and uploading its
// artifacts to it), from the origin's and caches' own counters taken before and after
// the run, and the runner's figures.
import { httpGetJson, joinUrl } from '../client/http.js';
import type { FleetConfig } from '../run/fleet.js';
import { formatBytes } from '../config/units.js';

interface CacheKindTally {
  bytesServed: number;
  bytesUpstream: number;
  hits: number;
  misses: number;
  /** Requests that joined a fill in flight. */
  collapsed: number;
}
interface CacheStats {
  total: CacheKindTally;
}
interface OriginStats {
  totals: { bytesIn: number; bytesOut: number };
}

export interface FleetSnapshot {
  readonly origin: OriginStats | undefined;
  readonly caches: ReadonlyArray<{ region: string; url: string; stats: CacheStats | undefined }>;
}

export interface LedgerLink {
  readonly link: string;
  readonly actualBytes: number;
  readonly naiveBytes: number;
}

export interface CacheFigures {
  readonly region: string;
  readonly url: string;
  /** False when its /-/stats could not be read after the run (its figures are then zero). */
  readonly reachable: boolean;
  readonly hits: number;
  readonly misses: number;
  readonly collapsed: number;
  /** (hits + collapsed) / all: the share of requests with no upstream fetch of their own (as the dashboard and OPERATIONS.md). */
  readonly hitRatio: number;
  readonly bytesServed: number;
  readonly bytesUpstream: number;
}

export interface Ledger {
  readonly run: string;
  readonly project: string;
  readonly machines: number;
  readonly links: LedgerLink[];
  readonly caches: CacheFigures[];
  /** Origin egress of the run against its naive figure. */
  readonly originEgress: { actual: number; naive: number };
}

/** What the runner knows of a run, beside the servers' counters. */
export interface RunFigures {
  readonly run: string;
  readonly project: string;
  readonly bytesSent: number;
  /** Bases the push downloaded from the origin to encode its delta (none in its base cache). */
  readonly basesReceived: number;
  /** The gzip-compressed project tar: what each machine would download without caches and deltas. */
  readonly fullUploadBytes: number;
  readonly machinesByRegion: Readonly<Record<string, number>>;
  /** Bytes of the assets each machine needed (downloaded or found in its cache folder), by region. */
  readonly assetNaiveByRegion: Readonly<Record<string, number>>;
  readonly artifactBytes: number;
}

async function tryStats<T>(url: string): Promise<T | undefined> {
  try {
    return await httpGetJson<T>(joinUrl(url, '/-/stats'));
  } catch {
    return undefined; // a server that is down contributes no figures
  }
}

export async function snapshotFleet(fleet: FleetConfig & { origin: string }): Promise<FleetSnapshot> {
  const caches = Object.entries(fleet.regions).flatMap(([region, r]) => r.caches.map((url) => ({ region, url })));
  const [origin, ...stats] = await Promise.all([tryStats<OriginStats>(fleet.origin), ...caches.map((c) => tryStats<CacheStats>(c.url))]);
  return { origin: origin as OriginStats | undefined, caches: caches.map((c, i) => ({ ...c, stats: stats[i] as CacheStats | undefined })) };
}

const zero: CacheKindTally = { bytesServed: 0, bytesUpstream: 0, hits: 0, misses: 0, collapsed: 0 };

export function buildLedger(before: FleetSnapshot, after: FleetSnapshot, run: RunFigures): Ledger {
  const machines = Object.values(run.machinesByRegion).reduce((a, b) => a + b, 0);
  const naiveOf = (region: string) => (run.machinesByRegion[region] ?? 0) * run.fullUploadBytes + (run.assetNaiveByRegion[region] ?? 0);
  const caches: CacheFigures[] = after.caches.map((c, i) => {
    const b = before.caches[i]?.stats?.total ?? zero;
    const a = c.stats?.total ?? b;
    const hits = a.hits - b.hits;
    const misses = a.misses - b.misses;
    const collapsed = a.collapsed - b.collapsed;
    const lookups = hits + misses + collapsed;
    return {
      region: c.region,
      url: c.url,
      reachable: c.stats !== undefined,
      hits,
      misses,
      collapsed,
      hitRatio: lookups === 0 ? 0 : (hits + collapsed) / lookups,
      bytesServed: a.bytesServed - b.bytesServed,
      bytesUpstream: a.bytesUpstream - b.bytesUpstream,
    };
  });
  const originOut = (after.origin?.totals.bytesOut ?? 0) - (before.origin?.totals.bytesOut ?? 0);
  const links: LedgerLink[] = [{ link: 'controller → origin (project)', actualBytes: run.bytesSent, naiveBytes: run.fullUploadBytes }];
  // The price of the delta when the controller's base cache lacked the bases: the same slow link, the other way.
  if (run.basesReceived > 0) links.push({ link: 'origin → controller (bases)', actualBytes: run.basesReceived, naiveBytes: 0 });
  // One pair of links per region: its machines' naive bytes are counted once, however many
  // caches (the nearest, then fallbacks) shared their requests.
  for (const region of new Set(caches.map((c) => c.region))) {
    const mine = caches.filter((c) => c.region === region);
    const label = mine.length === 1 ? `cache ${region}` : `${mine.length} caches ${region}`;
    const sum = (of: (c: CacheFigures) => number): number => mine.reduce((n, c) => n + of(c), 0);
    links.push({ link: `origin → ${label}`, actualBytes: sum((c) => c.bytesUpstream), naiveBytes: naiveOf(region) });
    links.push({ link: `${label} → machines`, actualBytes: sum((c) => c.bytesServed), naiveBytes: naiveOf(region) });
  }
  links.push({ link: 'machines → origin (artifacts)', actualBytes: run.artifactBytes, naiveBytes: run.artifactBytes });
  return { run: run.run, project: run.project, machines, links, caches, originEgress: { actual: originOut, naive: Object.keys(run.machinesByRegion).reduce((n, r) => n + naiveOf(r), 0) } };
}

/** One decimal; a share that rounds to zero is 0.0%, not -0.0% (a few bytes more than naive). */
function percent(share: number): string {
  const text = (100 * share).toFixed(1);
  return `${text === '-0.0' ? '0.0' : text}%`;
}

/** "1 hit", "3 hits". */
export function counted(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

export function formatLedger(l: Ledger): string {
  const rows = l.links.map((k) => {
    const saved = k.naiveBytes === 0 ? '-' : percent(1 - k.actualBytes / k.naiveBytes);
    return `  ${k.link.padEnd(34)} ${formatBytes(k.actualBytes).padStart(11)} ${formatBytes(k.naiveBytes).padStart(11)} ${saved.padStart(8)}`;
  });
  // A region with several caches names each by its URL.
  const shared = (c: CacheFigures): boolean => l.caches.filter((o) => o.region === c.region).length > 1;
  const caches = l.caches.map((c) => {
    const name = `cache ${c.region}${shared(c) ? ` (${c.url})` : ''}`;
    // A saved report of an older version has no `reachable`: taken as reached.
    if (c.reachable === false) return `  ${name}: unreachable after the run, no figures`;
    return `  ${name}: ${lookupCounts(c)}, hit ratio ${(100 * c.hitRatio).toFixed(1)}%`;
  });
  const egress = l.originEgress.naive === 0 ? '-' : `${((100 * l.originEgress.actual) / l.originEgress.naive).toFixed(1)}% of naive`;
  return [
    `Transfer report of run ${l.run} (${l.project}, ${l.machines} machines):`,
    `  ${'link'.padEnd(34)} ${'actual'.padStart(11)} ${'naive'.padStart(11)} ${'saved'.padStart(8)}`,
    ...rows,
    ...caches,
    `  origin egress: ${formatBytes(l.originEgress.actual)} (${egress})`,
  ].join('\n');
}

/** "3 hits, 2 joined a fill, 1 miss" (the fills joined only when there were). */
export function lookupCounts(c: CacheFigures): string {
  return [counted(c.hits, 'hit'), ...(c.collapsed > 0 ? [`${c.collapsed} joined a fill`] : []), counted(c.misses, 'miss', 'misses')].join(', ');
}
