// Requests that try a list of URLs in turn (nearest cache first, the origin last), the
// machine's pull and its artifacts' upload: when every URL failed for a passing reason, the
// whole list is tried again a few times. A restart of the origin (a deploy, a token
// rotation: a second or two) fails every URL at once, since every cache depends on it.
import type { ErrorCode } from './errors.js';

/** Failures a later try may not meet: unreachable, 5xx, timed out, cut (not a 404, a 403, damaged bytes). */
export const PASSING_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['FC_ERR_UPSTREAM', 'FC_ERR_UPSTREAM_TIMEOUT', 'FC_ERR_UNAVAILABLE', 'FC_ERR_ABORTED']);

/** The waits before passes 2, 3 and 4 over the list. */
export const RETRY_DELAYS_MS: readonly number[] = [2_000, 5_000, 10_000];
