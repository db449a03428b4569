// The bandwidth ledger of a run: bytes per link, actual against naive (every machine
// downloading the full project and every asset from the origin, and uploading its
// artifacts to it), from the origin's and caches' own counters taken before and after
// the run, and the runner's figures.
import { httpGetJson, joinUrl } from '../client/http.js';
import type { FleetConfig } from '../run/fleet.js';
import { formatBytes } from '../config/units.js';
import { ORIGIN_DIRECT } from '../run/nearest.js';
import { redactUrl } from '../redact-url.js';

interface CacheKindTally {
  bytesServed: number;
  bytesUpstream: number;
  hits: number;
  misses: number;
  /** Requests that joined a fill in flight. */
  collapsed: number;
}
interface CacheStats {
  /** When the cache (its primary) started: its counters start there. Absent from older caches. */
  startedAt?: string;
  kinds: Record<string, CacheKindTally>;
  /** Workers that died while serving (a multi-process cache): each lost its last counts. */
  workersLost?: number;
}
interface OriginStats {
  startedAt?: string;
  totals: { bytesIn: number; bytesOut: number };
}

export interface FleetSnapshot {
  /** ISO time of the snapshot; absent from older saved ones. */
  readonly takenAt?: string;
  readonly origin: OriginStats | undefined;
  readonly caches: ReadonlyArray<{ region: string; url: string; stats: CacheStats | undefined }>;
}

interface LedgerLink {
  readonly link: string;
  /** null: unknown (a cache's counters could not be read, or not compared). */
  readonly actualBytes: number | null;
  readonly naiveBytes: number;
  /** Some of it counted only since a server restarted during the run: actual is at least this. */
  readonly partial?: boolean;
}

/**
 * How much of the run a cache's figures cover: `run` all of it; `since-restart` from its
 * restart during the run (a lower bound); `workers-lost` all of it but the last counts of
 * workers that died during the run (a lower bound too); `none` nothing (unreachable after
 * the run, or unreachable before it while already up: its counters cannot be told apart from the run's).
 */
type Coverage = 'run' | 'since-restart' | 'workers-lost' | 'none';

interface CacheFigures {
  readonly region: string;
  readonly url: string;
  /** False when its /-/stats could not be read after the run (its figures are then zero). */
  readonly reachable: boolean;
  /** Absent from reports of older versions: `run` when reachable, else `none`. */
  readonly coverage?: Coverage;
  readonly hits: number;
  readonly misses: number;
  readonly collapsed: number;
  /** (hits + collapsed) / all: the share of requests with no upstream fetch of their own (as the dashboard and OPERATIONS.md); the machines' (artifacts left out, see ARTIFACTS). */
  readonly hitRatio: number;
  /** The namespace's bytes (blobs, names, tooltool): from the origin, and to the machines. */
  readonly bytesServed: number;
  readonly bytesUpstream: number;
  /** Mirror routes' bytes: from their own upstreams, not the origin. */
  readonly mirrorBytesServed?: number;
  readonly mirrorBytesUpstream?: number;
  /** Bytes of artifacts the runner itself fetched through this cache (`run --artifacts`), not counted as the machines'. */
  readonly controllerBytes?: number;
  /** Bytes of artifacts this cache took from the origin (the runner's fetches it did not have): not the machines'. Absent from older reports. */
  readonly artifactBytesUpstream?: number;
}

export interface Ledger {
  readonly run: string;
  readonly project: string;
  /** Machines that pulled the project. */
  readonly machines: number;
  /** Machines of `run --reuse` that had the project already (no pull: none of the links' naive bytes). */
  readonly reused?: number;
  readonly links: LedgerLink[];
  readonly caches: CacheFigures[];
  /** Origin egress of the run against its naive figure; actual null when the origin restarted or could not be read. */
  readonly originEgress: { actual: number | null; naive: number };
  /** The run was stopped by a signal: the figures are those of the jobs that ran before it. Absent from a whole run's report. */
  readonly interrupted?: { readonly signal: string; readonly abortedJobs: number };
}

/** What the runner knows of a run, beside the servers' counters. */
interface RunFigures {
  readonly run: string;
  readonly project: string;
  readonly bytesSent: number;
  /** Bases the push downloaded from the origin to encode its delta (none in its base cache). */
  readonly basesReceived: number;
  /** The gzip-compressed project tar: what each machine would download without caches and deltas. */
  readonly fullUploadBytes: number;
  /** The run manifest's body: without caches and deltas too, the push uploads it and each machine downloads it before the tar. */
  readonly manifestBytes: number;
  readonly machinesByRegion: Readonly<Record<string, number>>;
  /** Bytes of the assets each machine needed (downloaded or found in its cache folder), by the region of the link each file crossed (ORIGIN_DIRECT: from the origin itself). */
  readonly assetNaiveByRegion: Readonly<Record<string, number>>;
  readonly artifactBytes: number;
  /** Bytes of artifacts the runner fetched itself (`run --artifacts`), by cache URL. */
  readonly controllerBytesByCache?: Readonly<Record<string, number>>;
  /** Machines kept from an earlier run (`--reuse`) that had the project already. */
  readonly machinesReused?: number;
  /** Bytes of the project (its run manifest too) the machines counted under ORIGIN_DIRECT pulled from the origin itself (every cache failed them). */
  readonly originPullBytes?: number;
  /** Bytes of the assets any machine downloaded from the origin itself (its caches failed them, or it had none). */
  readonly originAssetBytes?: number;
  /** The signal that stopped the run, and the jobs it left aborted. */
  readonly interrupted?: { readonly signal: string; readonly abortedJobs: number };
}

/** The servers a fleet configuration names: the origin, and each region's caches. */
type ServersOf = Pick<FleetConfig, 'regions'> & { readonly origin: string };

/** A server's /-/stats answers within milliseconds: one that takes longer is taken for down, not waited for (a minute each way before). */
const STATS_TIMEOUT_MS = 5_000;

/** `url`'s /-/stats when `shape` takes it; undefined when the server is down or answers something else. */
async function tryStats<T>(url: string, shape: (value: unknown) => value is T, timeoutMs: number): Promise<T | undefined> {
  try {
    const value = await httpGetJson<unknown>(joinUrl(url, '/-/stats'), { signal: AbortSignal.timeout(timeoutMs) });
    return shape(value) ? value : undefined;
  } catch {
    return undefined; // a server that is down contributes no figures
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const TALLY_FIELDS: ReadonlyArray<keyof CacheKindTally> = ['bytesServed', 'bytesUpstream', 'hits', 'misses', 'collapsed'];

/**
 * A cache's counters: every tally's fields numbers. What another server in a cache's place
 * answers (the origin itself, listed as a region's cache) gives no figures, rather than NaN.
 */
function isCacheStats(value: unknown): value is CacheStats {
  if (!isRecord(value) || !isRecord(value.kinds)) return false;
  return Object.values(value.kinds).every((tally) => isRecord(tally) && TALLY_FIELDS.every((field) => typeof tally[field] === 'number'));
}

function isOriginStats(value: unknown): value is OriginStats {
  return isRecord(value) && isRecord(value.totals) && typeof value.totals.bytesIn === 'number' && typeof value.totals.bytesOut === 'number';
}

export async function snapshotFleet(fleet: ServersOf, timeoutMs = STATS_TIMEOUT_MS): Promise<FleetSnapshot> {
  return beginSnapshot(fleet, timeoutMs).snapshot;
}

/**
 * Reads the servers' counters, all at once: `originRead` settles with the origin's read,
 * `snapshot` with every read. A run's push waits for the origin's read only (its upload
 * must not count in the figures before the run); its machines, for the caches' as well.
 * A hung cache then costs the push nothing: its read waits out its timeout (`timeoutMs`) meanwhile.
 */
export function beginSnapshot(fleet: ServersOf, timeoutMs = STATS_TIMEOUT_MS): { originRead: Promise<unknown>; snapshot: Promise<FleetSnapshot> } {
  const takenAt = new Date().toISOString();
  const caches = Object.entries(fleet.regions).flatMap(([region, r]) => r.caches.map((url) => ({ region, url })));
  const originRead = tryStats(fleet.origin, isOriginStats, timeoutMs);
  const cacheReads = Promise.all(caches.map((c) => tryStats(c.url, isCacheStats, timeoutMs)));
  const snapshot = Promise.all([originRead, cacheReads]).then(([origin, stats]) => ({ takenAt, origin, caches: caches.map((c, i) => ({ ...c, stats: stats[i] })) }));
  return { originRead, snapshot };
}

const isMirror = (kind: string): boolean => kind.startsWith('mirror:');
/**
 * The route kind of artifacts. The machines of a run only upload theirs (PUTs: no lookup,
 * no byte served or taken from upstream): what a cache serves of this kind is the runner's
 * `run --artifacts` fetches (or other traffic), never the machines' pull or assets.
 */
const ARTIFACTS = 'artifacts';
/** The machines' kinds: everything but the artifacts (see ARTIFACTS). */
const isMachines = (kind: string): boolean => kind !== ARTIFACTS;

/** The sum of the kinds `which` keeps; all zero for no stats. */
function sumKinds(stats: CacheStats | undefined, which: (kind: string) => boolean): CacheKindTally {
  const sum: CacheKindTally = { bytesServed: 0, bytesUpstream: 0, hits: 0, misses: 0, collapsed: 0 };
  for (const [kind, t] of Object.entries(stats?.kinds ?? {})) {
    if (!which(kind)) continue;
    for (const field of Object.keys(sum) as (keyof CacheKindTally)[]) sum[field] += t[field];
  }
  return sum;
}

/** after - before, field by field. */
function minus(after: CacheKindTally, before: CacheKindTally): CacheKindTally {
  const out = { ...after };
  for (const field of Object.keys(out) as (keyof CacheKindTally)[]) out[field] -= before[field];
  return out;
}

function coverageOf(before: CacheStats | undefined, after: CacheStats | undefined, beforeTakenAt: string | undefined): Coverage {
  if (!after) return 'none';
  if (!before) {
    // down before the run and started since: its counters are the run's; up but unreachable: unknown
    return after.startedAt !== undefined && beforeTakenAt !== undefined && after.startedAt >= beforeTakenAt ? 'run' : 'none';
  }
  const change = minus(sumKinds(after, () => true), sumKinds(before, () => true));
  const wentDown = Object.values(change).some((n) => n < 0);
  if (before.startedAt !== after.startedAt || wentDown) return 'since-restart';
  return (after.workersLost ?? 0) > (before.workersLost ?? 0) ? 'workers-lost' : 'run';
}

export function buildLedger(before: FleetSnapshot, after: FleetSnapshot, run: RunFigures): Ledger {
  const machines = Object.values(run.machinesByRegion).reduce((a, b) => a + b, 0);
  // What a fleet without caches and deltas moves for the project: the whole tar and the run manifest naming it.
  const naiveProject = run.fullUploadBytes + run.manifestBytes;
  const naiveOf = (region: string) => (run.machinesByRegion[region] ?? 0) * naiveProject + (run.assetNaiveByRegion[region] ?? 0);
  const caches: CacheFigures[] = after.caches.map((c, i) => {
    const prior = before.caches[i]?.stats;
    const coverage = coverageOf(prior, c.stats, before.takenAt);
    // the run's counts, or those since the cache's restart (its counters start at 0 then)
    const counted = (which: (kind: string) => boolean): CacheKindTally =>
      coverage === 'none' ? sumKinds(undefined, which) : minus(sumKinds(c.stats, which), sumKinds(coverage === 'since-restart' ? undefined : prior, which));
    const all = counted(isMachines);
    const namespace = counted((kind) => isMachines(kind) && !isMirror(kind));
    const mirrors = counted(isMirror);
    const lookups = all.hits + all.misses + all.collapsed;
    const controllerBytes = coverage === 'none' ? 0 : (run.controllerBytesByCache?.[c.url] ?? 0);
    return {
      region: c.region,
      // it is printed and kept in the run's report (.fleetcache/reports)
      url: redactUrl(c.url),
      reachable: c.stats !== undefined,
      coverage,
      hits: all.hits,
      misses: all.misses,
      collapsed: all.collapsed,
      hitRatio: lookups === 0 ? 0 : (all.hits + all.collapsed) / lookups,
      bytesServed: namespace.bytesServed,
      bytesUpstream: namespace.bytesUpstream,
      mirrorBytesServed: mirrors.bytesServed,
      mirrorBytesUpstream: mirrors.bytesUpstream,
      controllerBytes,
      artifactBytesUpstream: counted((kind) => kind === ARTIFACTS).bytesUpstream,
    };
  });
  const links: LedgerLink[] = [{ link: 'controller → origin (project)', actualBytes: run.bytesSent, naiveBytes: naiveProject }];
  // The price of the delta when the controller's base cache lacked the bases: the same slow link, the other way.
  if (run.basesReceived > 0) links.push({ link: 'origin → controller (bases)', actualBytes: run.basesReceived, naiveBytes: 0 });
  // One set of links per region: its machines' naive bytes are counted once, however many
  // caches (the nearest, then fallbacks) shared their requests.
  for (const region of new Set(caches.map((c) => c.region))) {
    const mine = caches.filter((c) => c.region === region);
    const label = mine.length === 1 ? `cache ${region}` : `${mine.length} caches ${region}`;
    const unknown = mine.some((c) => c.coverage === 'none');
    const partial = mine.some((c) => c.coverage === 'since-restart' || c.coverage === 'workers-lost');
    const link = (name: string, of: (c: CacheFigures) => number, naiveBytes: number): LedgerLink => ({
      link: name,
      actualBytes: unknown ? null : mine.reduce((n, c) => n + of(c), 0),
      naiveBytes,
      ...(partial ? { partial } : {}),
    });
    links.push(link(`origin → ${label}`, (c) => c.bytesUpstream, naiveOf(region)));
    links.push(link(`${label} → machines`, (c) => c.bytesServed, naiveOf(region)));
    // Without the cache, each byte taken from a mirror route would have come from its upstream.
    const mirrorServed = mine.reduce((n, c) => n + (c.mirrorBytesServed ?? 0), 0);
    if (mirrorServed > 0) links.push(link(`mirrors → ${label}`, (c) => c.mirrorBytesUpstream ?? 0, mirrorServed));
    // What the runner's artifacts cost the slow link (a cache that did not have them): not the
    // machines' bytes. Without the cache the runner would have fetched them all from the origin
    // (the egress's naive counts them): that is both links' naive figure, and what the cache
    // kept of the machines' uploads is saved.
    const fetchedByRunner = mine.reduce((n, c) => n + (run.controllerBytesByCache?.[c.url] ?? 0), 0);
    if (fetchedByRunner > 0 || mine.some((c) => (c.artifactBytesUpstream ?? 0) > 0)) {
      links.push(link(`origin → ${label} (artifacts)`, (c) => c.artifactBytesUpstream ?? 0, fetchedByRunner));
      links.push(link(`${label} → controller (artifacts)`, (c) => c.controllerBytes ?? 0, fetchedByRunner));
    }
  }
  // Machines that pulled from the origin itself: their bytes crossed the slow link once each.
  const direct = run.machinesByRegion[ORIGIN_DIRECT] ?? 0;
  if (direct > 0) links.push({ link: 'origin → machines (project, direct)', actualBytes: run.originPullBytes ?? 0, naiveBytes: direct * naiveProject });
  // and the assets any machine downloaded from the origin itself, which no cache counted either
  const directAssets = run.assetNaiveByRegion[ORIGIN_DIRECT] ?? 0;
  if (directAssets > 0) links.push({ link: 'origin → machines (assets, direct)', actualBytes: run.originAssetBytes ?? 0, naiveBytes: directAssets });
  // The runner's own artifacts (`run --artifacts`) from the origin itself, when no cache took
  // the request (none in the fleet, or every one failed it): on no cache's link, yet in the egress.
  const cacheUrls = new Set(after.caches.map((c) => c.url));
  const controllerDirect = Object.entries(run.controllerBytesByCache ?? {}).reduce((n, [url, bytes]) => n + (cacheUrls.has(url) ? 0 : bytes), 0);
  if (controllerDirect > 0) links.push({ link: 'origin → controller (artifacts, direct)', actualBytes: controllerDirect, naiveBytes: controllerDirect });
  links.push({ link: 'machines → origin (artifacts)', actualBytes: run.artifactBytes, naiveBytes: run.artifactBytes });
  const [o0, o1] = [before.origin, after.origin];
  const originOut = o0 && o1 && o0.startedAt === o1.startedAt ? o1.totals.bytesOut - o0.totals.bytesOut : null;
  // Every region's: those of machines that pulled, and of machines that did not (`--reuse`) but used assets.
  const regions = new Set([...Object.keys(run.machinesByRegion), ...Object.keys(run.assetNaiveByRegion)]);
  // The runner's own artifacts (`run --artifacts`) come from the origin without a cache too: in the egress either way.
  const controllerNaive = Object.values(run.controllerBytesByCache ?? {}).reduce((a, b) => a + b, 0);
  const originNaive = [...regions].reduce((n, r) => n + naiveOf(r), controllerNaive);
  return {
    run: run.run, project: run.project, machines, ...(run.machinesReused ? { reused: run.machinesReused } : {}), links, caches, originEgress: { actual: originOut, naive: originNaive },
    ...(run.interrupted ? { interrupted: run.interrupted } : {}),
  };
}

/** What a report of an interrupted run covers ("" for a whole run's). */
export function interruptedNote(l: Ledger): string {
  if (!l.interrupted) return '';
  return `interrupted by ${l.interrupted.signal}, ${counted(l.interrupted.abortedJobs, 'job')} aborted: the figures are those of the jobs that ran before it, not the whole run's`;
}

/** One decimal; a share that rounds to zero is 0.0%, not -0.0% (a few bytes more than naive). */
function percent(share: number): string {
  const text = (100 * share).toFixed(1);
  return `${text === '-0.0' ? '0.0' : text}%`;
}

/** "1 hit", "3 hits". */
function counted(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

/** What the naive column stands for, and what the figures are (printed under the table). */
export const BASELINE = 'naive: every machine downloading the compressed project tar, its run manifest and its assets from the origin, and uploading its artifacts to it (and the runner downloading those it fetched); '
  + 'actual: the servers\' counters over the run (other traffic through them meanwhile counts too)';

/** A link's actual bytes and saving as printed: "?" when unknown, "≥" and "≤" when partial. */
export function linkFigures(k: LedgerLink): { actual: string; saved: string } {
  if (k.actualBytes === null) return { actual: '?', saved: k.naiveBytes === 0 ? '-' : '?' };
  const saved = k.naiveBytes === 0 ? '-' : percent(1 - k.actualBytes / k.naiveBytes);
  return k.partial ? { actual: `≥ ${formatBytes(k.actualBytes)}`, saved: saved === '-' ? saved : `≤ ${saved}` } : { actual: formatBytes(k.actualBytes), saved };
}

/** How much of the run a cache's figures cover; a report of an older version has no `coverage` (CacheFigures). */
function figuresCoverage(c: CacheFigures): Coverage {
  return c.coverage ?? (c.reachable === false ? 'none' : 'run');
}

/** The state of a cache's figures, when they are not the whole run's ("" when they are). */
export function coverageNote(c: CacheFigures): string {
  const coverage = figuresCoverage(c);
  if (coverage === 'since-restart') return 'restarted during the run: counted since its restart';
  if (coverage === 'workers-lost') return 'a worker died during the run: its last counts are missing';
  if (coverage === 'run') return '';
  return c.reachable === false ? 'unreachable after the run, no figures' : 'unreachable before the run, no figures';
}

/** A cache whose counters could not be read: no hit ratio to show for it (its zeros are not a 0% one). */
export function withoutFigures(c: CacheFigures): boolean {
  return figuresCoverage(c) === 'none';
}

/** "cache a"; a cache of a region that has several is named by its URL too: "cache a (http://…)". */
export function cacheName(l: Ledger, c: CacheFigures): string {
  const shared = l.caches.filter((o) => o.region === c.region).length > 1;
  return `cache ${c.region}${shared ? ` (${c.url})` : ''}`;
}

export function formatLedger(l: Ledger): string {
  // as wide as the longest link name ("region-b cache → controller (artifacts)"), 34 at least
  const width = Math.max(34, ...l.links.map((k) => k.link.length));
  const cells = l.links.map((k) => ({ link: k.link, ...linkFigures(k), naive: formatBytes(k.naiveBytes) }));
  // and each figure's column as wide as its widest ("≥ 1023.9 MiB", "≤ -146.6%"), 11 and 8 at least
  const wide = (field: 'actual' | 'naive' | 'saved', least: number): number => Math.max(least, ...cells.map((c) => c[field].length));
  const [actualWidth, naiveWidth, savedWidth] = [wide('actual', 11), wide('naive', 11), wide('saved', 8)];
  const line = (c: { link: string; actual: string; naive: string; saved: string }): string =>
    `  ${c.link.padEnd(width)} ${c.actual.padStart(actualWidth)} ${c.naive.padStart(naiveWidth)} ${c.saved.padStart(savedWidth)}`;
  const caches = l.caches.map((c) => {
    const name = cacheName(l, c);
    const note = coverageNote(c);
    if (withoutFigures(c)) return `  ${name}: ${note}`;
    return `  ${name}: ${lookupCounts(c)}, hit ratio ${(100 * c.hitRatio).toFixed(1)}%${note ? ` (${note})` : ''}`;
  });
  const { actual, naive } = l.originEgress;
  const egress = actual === null ? '? (the origin restarted or could not be read)' : `${formatBytes(actual)} (${naive === 0 ? '-' : `${((100 * actual) / naive).toFixed(1)}% of naive`})`;
  const interrupted = interruptedNote(l);
  return [
    `Transfer report of run ${l.run} (${l.project}, ${machinesText(l)}):`,
    ...(interrupted ? [`  ${interrupted}`] : []),
    line({ link: 'link', actual: 'actual', naive: 'naive', saved: 'saved' }),
    ...cells.map(line),
    ...caches,
    `  origin egress: ${egress}`,
    `  (${BASELINE})`,
  ].join('\n');
}

/** "5 machines", or "5 machines, 2 reusing their project" for a `run --reuse`. */
export function machinesText(l: Ledger): string {
  const reused = l.reused ?? 0;
  return `${counted(l.machines + reused, 'machine')}${reused > 0 ? `, ${reused} reusing their project` : ''}`;
}

/** "3 hits, 2 joined a fill, 1 miss" (the fills joined only when there were). */
export function lookupCounts(c: CacheFigures): string {
  return [counted(c.hits, 'hit'), ...(c.collapsed > 0 ? [`${c.collapsed} joined a fill`] : []), counted(c.misses, 'miss', 'misses')].join(', ');
}
