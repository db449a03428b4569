// Requests that try a list of URLs in turn (nearest cache first, the origin last), the
// machine's pull and its artifacts' upload: when every URL failed for a passing reason, the
// whole list is tried again a few times. A restart of the origin (a deploy, a token
// rotation: a second or two) fails every URL at once, since every cache depends on it.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ErrorCode, FleetError } from './errors.js';

/**
 * Failures a later try may not meet: unreachable, 5xx, timed out, cut (not a 404, a 403,
 * damaged bytes). The runner also tries caches that failed so last for a while (nearest.ts).
 */
export const PASSING_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['FC_ERR_UPSTREAM', 'FC_ERR_UPSTREAM_TIMEOUT', 'FC_ERR_UNAVAILABLE', 'FC_ERR_ABORTED']);

/**
 * A server's refusal of the request itself: malformed to it, too many header fields, a method
 * it does not take. From a cache (another version, a lower limit) the next URL may take the
 * request; the origin, last, says whether the request is really at fault.
 */
export const REFUSED_BY_CACHE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['FC_ERR_BAD_REQUEST', 'FC_ERR_TOO_MANY_HEADERS', 'FC_ERR_METHOD_NOT_ALLOWED', 'FC_ERR_NOT_IMPLEMENTED', 'FC_ERR_HTTP_VERSION']);

/** The waits before passes 2, 3 and 4 over the list. */
const RETRY_DELAYS_MS: readonly number[] = [2_000, 5_000, 10_000];

interface PassesOptions {
  /** The waits before each new pass (default RETRY_DELAYS_MS). */
  readonly delaysMs?: readonly number[];
  /** Called before such a wait, with the last failure. */
  readonly onRetry?: (waitMs: number, last: FleetError) => void;
  /** The error thrown when no pass is left, or a failure is not a passing one. */
  readonly giveUp: (failures: readonly FleetError[]) => Error;
  readonly signal?: AbortSignal;
}

/**
 * Runs `pass` (one try of every URL) until it gives a result; while every failure of the last
 * pass is a passing one, waits and passes again, RETRY_DELAYS_MS apart.
 */
export async function inPasses<T>(pass: () => Promise<{ result: T } | { failures: readonly FleetError[] }>, o: PassesOptions): Promise<T> {
  for (let n = 0; ; n++) {
    const round = await pass();
    if ('result' in round) return round.result;
    const wait = (o.delaysMs ?? RETRY_DELAYS_MS)[n];
    if (wait === undefined || !round.failures.every((e) => PASSING_CODES.has(e.code))) throw o.giveUp(round.failures);
    o.onRetry?.(wait, round.failures.at(-1)!);
    await sleep(wait, undefined, o.signal ? { signal: o.signal } : {});
  }
}
