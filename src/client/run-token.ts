// Run tokens: what the runner gives the machines of a run instead of the origin's write
// token. A test machine runs arbitrary code, often as root; with the write token, a task
// could rewrite other runs' manifests and bases, or upload anything. A run token lets a
// machine read what a token reads and write only its run's artifacts (/artifacts/<run>/…).
// It is `fcrun1.<run, base64url>.<HMAC-SHA256 of the run, keyed with a write token>`: the
// origin checks it against each of its write tokens, so nothing is stored, and a write token
// rotated out takes the run tokens made from it along.
import { createHmac } from 'node:crypto';

const PREFIX = 'fcrun1';

/** The MAC a run token of `run` made from `writeToken` carries. */
export function runTokenMac(writeToken: string, run: string): Buffer {
  return createHmac('sha256', writeToken).update(`fleetcache run token\0${run}`).digest();
}

/** The run token of `run`, made from the write token `writeToken`. */
export function runToken(writeToken: string, run: string): string {
  return `${PREFIX}.${Buffer.from(run).toString('base64url')}.${runTokenMac(writeToken, run).toString('base64url')}`;
}

/** A token's run and MAC when it has the form of a run token (not checked: see runTokenMac). */
export function parseRunToken(token: string): { run: string; mac: Buffer } | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX || !parts[1] || !parts[2]) return undefined;
  return { run: Buffer.from(parts[1], 'base64url').toString('utf8'), mac: Buffer.from(parts[2], 'base64url') };
}
