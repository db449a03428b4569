// The agent's project fetch: pullProject() against each URL in turn (the region's cache
// first, other caches next, the origin last). A URL that cannot be reached, answers 5xx,
// does not have a digest (404), or serves bytes that fail verification is skipped; any
// other error (a bad token, a broken delta, a tar that does not unpack) ends the pull. Bytes
// that fail verification are asked once more of the same URL with no-cache first (but the
// last URL, the origin): a cache
// then checks its stored copy and fetches a damaged one anew, so that one bad copy does not
// send every machine of the region to the next URL for good.
import { pullProject, type PullResult } from '../project-upload/pull.js';
import { cacheLimits } from '../client/http.js';
import { FleetError, isDamagedBytes, toFleetError, withDetails, type ErrorCode } from '../errors.js';
import { redactUrl } from '../redact-url.js';
import { quotedReason } from '../quoted-reasons.js';
import { inPasses, REFUSED_BY_CACHE_CODES } from '../url-passes.js';

interface FallbackPullOptions {
  readonly urls: readonly string[];
  readonly project: string;
  readonly run: string;
  readonly dest: string;
  readonly token?: string;
  /**
   * How long a cache (every URL but the last, the origin) may take to accept a connection
   * (at most 10 s), and keep silent, for an answer's headers and then within its body, before
   * it is skipped: one whose host drops the connection's packets (black-holed), or that
   * accepts connections and never answers, or stops in the middle of a body, costs this, not
   * the client's 10 s, minute (or two). A cache whose bytes come, each within it, slower than the floor it
   * sets (cacheSpeedFloor: 16 KiB/s over twice this) is skipped too.
   */
  readonly cacheTimeoutMs?: number;
  /** Called for each URL given up on, before the next one is tried. */
  readonly onSkip?: (url: string, error: FleetError) => void;
  /** Called when a URL served damaged bytes and is asked again with no-cache. */
  readonly onRecheck?: (url: string, error: FleetError) => void;
  /** The waits before each new pass over the URLs when every one failed for a passing reason (default: url-passes.ts). */
  readonly retryDelaysMs?: readonly number[];
  /** Called before such a wait. */
  readonly onRetry?: (waitMs: number, error: FleetError) => void;
}

interface Attempt {
  readonly url: string;
  readonly code: ErrorCode;
  readonly error: string;
}

interface FallbackPullResult {
  readonly url: string;
  /** Position of `url` in the list: 0 is the nearest cache. */
  readonly index: number;
  readonly result: PullResult;
  /** The URLs tried before, with why they were skipped. */
  readonly skipped: readonly Attempt[];
}

/** Failures after which the next URL may serve the pull (a cache's refusal of the request itself too). */
const NEXT_URL_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ...REFUSED_BY_CACHE_CODES,
  'FC_ERR_NOT_FOUND',
  'FC_ERR_UPSTREAM',
  'FC_ERR_UPSTREAM_TIMEOUT',
  'FC_ERR_UNAVAILABLE',
  'FC_ERR_DIGEST_MISMATCH',
  'FC_ERR_SIZE_MISMATCH',
  'FC_ERR_ABORTED',
]);

/** The failure as a FleetError (connection failures that surface raw while a body streams are upstream errors), and whether the next URL may do better. */
function classify(err: unknown): { next: boolean; error: FleetError } {
  const error = toFleetError(err);
  return { next: NEXT_URL_CODES.has(error.code), error };
}

export async function pullWithFallback(options: FallbackPullOptions): Promise<FallbackPullResult> {
  if (options.urls.length === 0) throw new FleetError('FC_ERR_USAGE', 'pull: no URL to fetch the project from');
  const skipped: Attempt[] = [];
  return inPasses(() => pullOnce(options, skipped), {
    ...(options.retryDelaysMs ? { delaysMs: options.retryDelaysMs } : {}),
    ...(options.onRetry ? { onRetry: options.onRetry } : {}),
    giveUp: (failures) => {
      return new FleetError(failures.at(-1)!.code, `pull: every URL failed (${attemptsByUrl(skipped)})`, { details: { skipped } });
    },
  });
}

/**
 * The attempts of every pass, one entry per URL in the order first tried, each distinct reason
 * once with how many times it was met: four passes over three caches and the origin read as
 * four entries, not sixteen. Each reason is quoted (quotedReason): one holding "; " or " / "
 * cannot be taken for the next URL's entry or reason.
 */
function attemptsByUrl(attempts: readonly Attempt[]): string {
  const reasons = new Map<string, Map<string, number>>();
  for (const { url, error } of attempts) {
    const ofUrl = reasons.get(url) ?? new Map<string, number>();
    ofUrl.set(error, (ofUrl.get(error) ?? 0) + 1);
    reasons.set(url, ofUrl);
  }
  const counted = (reason: string, times: number): string => `${quotedReason(reason)}${times > 1 ? ` (${times} times)` : ''}`;
  return [...reasons].map(([url, ofUrl]) => `${url}: ${[...ofUrl].map(([reason, times]) => counted(reason, times)).join(' / ')}`).join('; ');
}

/**
 * One pass over the URLs: the first pull that succeeds, else every URL's failure (also added to
 * `skipped`). A failure that ends the pull is thrown with `skipped` in its details, as the
 * pull's giving up is.
 */
async function pullOnce(options: FallbackPullOptions, skipped: Attempt[]): Promise<{ result: FallbackPullResult } | { failures: FleetError[] }> {
  const failures: FleetError[] = [];
  for (const [index, url] of options.urls.entries()) {
    const isOrigin = index === options.urls.length - 1;
    const pull = (recheck: boolean): Promise<PullResult> => pullProject({
      project: options.project,
      run: options.run,
      from: url,
      dir: options.dest,
      ...(options.token ? { token: options.token } : {}),
      ...(recheck ? { recheck } : {}),
      ...(!isOrigin && options.cacheTimeoutMs !== undefined ? { limits: cacheLimits(options.cacheTimeoutMs) } : {}),
    });
    try {
      // The last URL is the origin, which keeps no copy to check again: asking it twice would
      // only send the bytes over the slow link twice.
      const result = await pull(false).catch((err: unknown) => {
        if (isOrigin || !isDamagedBytes(err)) throw err;
        options.onRecheck?.(redactUrl(url), err);
        return pull(true);
      });
      return { result: { url, index, result, skipped } };
    } catch (err) {
      const { next, error } = classify(err);
      // the URLs given up on before it still go with the error: the runner has its next machines try them last
      if (!next) throw withDetails(error, { skipped });
      // a cache's refusal of the request itself says nothing of a later pass over the list
      if (isOrigin || !REFUSED_BY_CACHE_CODES.has(error.code)) failures.push(error);
      skipped.push({ url: redactUrl(url), code: error.code, error: error.message });
      options.onSkip?.(redactUrl(url), error);
    }
  }
  return { failures };
}
