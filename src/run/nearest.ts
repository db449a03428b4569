// Which URLs a machine pulls through, nearest first: the caches of its own region, then
// the other regions' caches, then the origin. `auto` orders every cache by the round
// trip the machine itself measures to /-/healthz.
import type { Machine } from '../backends/backend.js';
import { PASSING_CODES } from '../url-passes.js';
import { redactUrl } from '../redact-url.js';
import type { FleetConfig } from './fleet.js';

export interface CacheChoice {
  readonly region: string;
  /** Nearest first; the origin last. */
  readonly urls: readonly string[];
  /** How the order was chosen, for the log. */
  readonly how: string;
}

export function staticOrder(fleet: FleetConfig & { origin: string }, region: string | undefined): CacheChoice {
  const regionName = region ?? fleet.defaultRegion ?? Object.keys(fleet.regions)[0] ?? '';
  const own = fleet.regions[regionName]?.caches ?? [];
  const others = Object.entries(fleet.regions)
    .filter(([name]) => name !== regionName)
    .flatMap(([, r]) => r.caches);
  return { region: regionName, urls: [...own, ...others, fleet.origin], how: own.length > 0 ? `region ${regionName}` : `no cache for region ${regionName || '(none)'}` };
}

/**
 * The cache the machines of each of `regions` pull through first, one per region: the caches
 * push asks which bases they hold. `regions` are the run's jobs' (undefined where a job names
 * none: the fleet's defaultRegion); a region the fleet has no cache for pulls through
 * staticOrder's first. "auto" may end at any region: the first cache of each.
 */
export function pullingCaches(fleet: FleetConfig & { origin: string }, regions: ReadonlyArray<string | undefined>): string[] {
  const caches = new Set<string>();
  for (const named of new Set(regions)) {
    const region = named ?? fleet.defaultRegion;
    const firsts = region === 'auto' ? Object.values(fleet.regions).map((r) => r.caches[0]) : [staticOrder(fleet, region).urls[0]];
    for (const url of firsts) if (url !== undefined && url !== fleet.origin) caches.add(url);
  }
  return [...caches];
}

/** Where machines that pulled from the origin itself are counted in a run's report (no region can be named so: config/names.ts). */
export const ORIGIN_DIRECT = '(origin)';

/** The region whose cache `url` is; ORIGIN_DIRECT for the origin (or a URL of no region). */
export function regionServing(fleet: FleetConfig, url: string): string {
  return Object.entries(fleet.regions).find(([, r]) => r.caches.includes(url))?.[0] ?? ORIGIN_DIRECT;
}

/**
 * Warnings for regions the jobs name that the fleet has no caches for (a typo in a region:
 * field, a region not deployed yet): their machines pull through the other regions' caches,
 * across the links the caches exist to spare, so the run says so once, up front. `regions`:
 * each job's region, undefined where it names none (it then goes to defaultRegion, which
 * loadFleetConfig checked, or where staticOrder sends it).
 */
export function unservedRegions(fleet: FleetConfig, regions: ReadonlyArray<string | undefined>): string[] {
  const known = Object.keys(fleet.regions);
  return [...new Set(regions)]
    .filter((region): region is string => region !== undefined && region !== 'auto' && fleet.regions[region] === undefined)
    .map((region) => `WARNING: region ${region} has no cache in the fleet configuration (regions: ${known.join(', ') || 'none'}); its machines pull through the other regions' caches, then the origin.`);
}

/** Ends the here-document of a measure's curl config; no line of it can match (each starts with `url = "`). */
const URL_END = 'FLEETCACHE_CACHE_URL';

/** `text` as a double-quoted string of a curl config file (its escapes: backslash, quote, line breaks). */
function curlConfigString(text: string): string {
  return `"${text.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\n').replace(/\r/g, '\\r')}"`;
}

/**
 * Measures, on the machine, the time of one GET /-/healthz to each cache (curl), fastest
 * first. Aborting `signal` (the run interrupted) kills the measuring script and throws.
 */
export async function measuredOrder(machine: Machine, fleet: Pick<FleetConfig, 'regions'> & { origin: string }, signal?: AbortSignal): Promise<CacheChoice> {
  const caches = Object.entries(fleet.regions).flatMap(([region, r]) => r.caches.map((url) => ({ region, url })));
  // The URLs come from configuration: each goes to curl in a config read from a quoted
  // here-document, never on its command line, where a quote, `$` or space in it would be
  // shell syntax and `ps` would show a password in it to every user of the machine; curl
  // takes no `[` or `{` in it for a glob (-g).
  const script = caches
    .map((c) => `printf '%s\\n' "$(curl -s -g -o /dev/null -m 3 -w '%{http_code} %{time_total}' -K - <<'${URL_END}' || echo 000 9\nurl = ${curlConfigString(`${c.url}/-/healthz`)}\n${URL_END}\n)"`)
    .join('\n');
  // from /: the project path, a script's default directory, is not made yet on a new machine (cd fails, nothing is measured)
  const res = await machine.exec(script, { trace: false, cwd: '/', ...(signal ? { signal } : {}) });
  signal?.throwIfAborted();
  const lines = res.output.trim().split('\n');
  const timed = caches
    .map((c, i) => {
      const [code, secs] = (lines[i] ?? '000 9').trim().split(/\s+/);
      return { ...c, ok: code === '200', ms: Number(secs) * 1000 };
    })
    .filter((c) => c.ok)
    .sort((a, b) => a.ms - b.ms);
  const best = timed[0];
  const rest = caches.filter((c) => !timed.some((t) => t.url === c.url)).map((c) => c.url);
  return {
    region: best?.region ?? '',
    urls: [...timed.map((t) => t.url), ...rest, fleet.origin],
    how: best ? `auto: ${redactUrl(best.url)} answered in ${best.ms.toFixed(1)} ms` : 'auto: no cache answered',
  };
}

/**
 * Caches the run's machines found unreachable (no answer in time, refused, cut): for
 * `forMs` after the last such failure, later machines try them after every other cache,
 * just before the origin, rather than each one waiting for the same dead cache first.
 */
export class UnreachableCaches {
  /** When each URL last failed. */
  readonly #failedAt = new Map<string, number>();

  constructor(private readonly forMs = 2 * 60_000) {}

  /**
   * Marks unreachable the URLs of a pull's or an asset fetch's `skipped` list (the agent's answer: redacted URLs
   * with why) that could not be reached or did not answer; not those that lacked the run or
   * served damaged bytes.
   */
  markSkipped(skipped: unknown, now = Date.now()): void {
    if (!Array.isArray(skipped)) return;
    for (const attempt of skipped as Array<{ url?: unknown; code?: unknown }>) {
      if (typeof attempt?.url === 'string' && (PASSING_CODES as ReadonlySet<string>).has(String(attempt.code))) this.#failedAt.set(attempt.url, now);
    }
  }

  /** `choice` with the caches marked in the last `forMs` moved to just before the origin (the last URL). */
  order(choice: CacheChoice, now = Date.now()): CacheChoice {
    const caches = choice.urls.slice(0, -1);
    const down = caches.filter((url) => (this.#failedAt.get(redactUrl(url)) ?? -Infinity) > now - this.forMs);
    if (down.length === 0) return choice;
    const up = caches.filter((url) => !down.includes(url));
    return {
      ...choice,
      urls: [...up, ...down, ...choice.urls.slice(-1)],
      how: `${choice.how}; tried last, unreachable for a machine of this run lately: ${down.map(redactUrl).join(', ')}`,
    };
  }
}
