// Run tokens: what the runner gives the machines of a run instead of the origin's write
// token. A test machine runs arbitrary code, often as root; with the write token, a task
// could rewrite other runs' manifests and bases, or upload anything. A run token lets a
// machine read what a token reads and write only its run's artifacts (/artifacts/<run>/…),
// until it expires: one copied off a machine (a task's log, a core dump) is worth nothing
// a day later.
// It is `fcrun2.<run, base64url>.<expiry, Unix seconds>.<HMAC-SHA256 of both, keyed with a
// write token>`: the origin checks it against each of its write tokens, so nothing is
// stored, and a write token rotated out takes the run tokens made from it along.
import { createHmac } from 'node:crypto';

/** The second version: the first (`fcrun1.<run>.<mac>`) had no expiry, and is refused. */
const PREFIX = 'fcrun2';

/**
 * How long a token the runner makes is accepted. The runner hands the newest (at most
 * RUN_TOKEN_RENEW_MS old) to each command it has a machine run (a pull, a job's assets or
 * artifacts), so this bounds one command, not a run: a day is room for the slowest pull,
 * and not a lasting secret.
 */
export const RUN_TOKEN_TTL_S = 24 * 3600;
/** How often the runner makes a new one (its commands get one at most this old). */
export const RUN_TOKEN_RENEW_MS = 3600_000;

/** The MAC a run token of `run`, valid until `expires` (Unix seconds), made from `writeToken` carries. */
export function runTokenMac(writeToken: string, run: string, expires: number): Buffer {
  return createHmac('sha256', writeToken).update(`fleetcache run token\0${run}\0${expires}`).digest();
}

/** The run token of `run` made from the write token `writeToken`, valid for `ttlSeconds` from now. */
export function runToken(writeToken: string, run: string, ttlSeconds: number = RUN_TOKEN_TTL_S, now: number = Date.now()): string {
  const expires = Math.floor(now / 1000) + ttlSeconds;
  return `${PREFIX}.${Buffer.from(run).toString('base64url')}.${expires}.${runTokenMac(writeToken, run, expires).toString('base64url')}`;
}

/**
 * The runner's tokens of `run`: the same one for RUN_TOKEN_RENEW_MS, then a new one, so that
 * every command a machine runs has most of a day before its token expires, and the machines
 * of a run meanwhile carry one token (a cache joins requests for one object into one fill
 * only when they carry the same Authorization).
 */
export function runTokenSource(writeToken: string, run: string, clock: () => number = Date.now): () => string {
  let minted: { at: number; token: string } | undefined;
  return () => {
    const now = clock();
    if (!minted || now - minted.at >= RUN_TOKEN_RENEW_MS) minted = { at: now, token: runToken(writeToken, run, RUN_TOKEN_TTL_S, now) };
    return minted.token;
  };
}

/**
 * A token's run, expiry and MAC when it has the form of a run token (not checked: see
 * runTokenMac), spelled exactly as runToken spells it: base64url decoding takes padding,
 * stray characters and leading zeros, and one token with many spellings would defeat a
 * cache's joining of requests by Authorization, and any deny-list by string.
 */
export function parseRunToken(token: string): { run: string; expires: number; mac: Buffer } | undefined {
  const parts = token.split('.');
  if (parts.length !== 4 || parts[0] !== PREFIX || !parts[1] || !/^[1-9][0-9]{0,11}$/.test(parts[2]!) || !parts[3]) return undefined;
  const run = Buffer.from(parts[1], 'base64url');
  const mac = Buffer.from(parts[3], 'base64url');
  if (run.toString('base64url') !== parts[1] || mac.toString('base64url') !== parts[3]) return undefined;
  return { run: run.toString('utf8'), expires: Number(parts[2]), mac };
}

/** Whether a token is a run token of any version, valid or not: one never goes to a third party. */
export function isRunToken(token: string): boolean {
  return /^fcrun[0-9]+\./.test(token);
}
