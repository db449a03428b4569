// A 5xx that answers what the client sent (a 501 to a method no path has, a scanner's
// PROPFIND; a 505 to HTTP/2.0 in a request line) is not a fault of the server: at the default
// log level the origin logs it as a 4xx, at info without a stack, and a cache does not log it,
// as it logs none of its 4xx. A server fault is still an error line (deploy/OPERATIONS.md, Logs).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { exchange, statusOf } from '../helpers/raw-http.js';
import { eventually } from '../helpers/wait.js';

interface Line { level: number; msg?: string; code?: string; err?: unknown }

// The default level: the environment's override unset (an empty value counts as unset).
const DEFAULT_LEVEL = { FLEETCACHE_LOG_LEVEL: '', FLEETCACHE_TOKEN: 'client-input-log-token-0123456789' };
const ERROR = 50;
const INFO = 30;

const REFUSALS = [
  { line: `PROPFIND /cas/sha256/${'a'.repeat(64)} HTTP/1.1`, status: 501, code: 'FC_ERR_NOT_IMPLEMENTED' },
  { line: 'LOCK /-/healthz HTTP/1.1', status: 501, code: 'FC_ERR_NOT_IMPLEMENTED' },
  { line: `GET /cas/sha256/${'a'.repeat(64)} HTTP/2.0`, status: 505, code: 'FC_ERR_HTTP_VERSION' },
] as const;

async function sendRefused(t: Test, url: string, server: string): Promise<void> {
  for (const r of REFUSALS) {
    const answer = await exchange(url, (host) => `${r.line}\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    t.equal(statusOf(answer), r.status, `${server}: ${r.line} answered ${r.status}`);
  }
}

const lines = (stderr: string): Line[] => stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

t.test('origin: a 501 or 505 to the client\'s request is logged at info, without a stack', async (t) => {
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', t.testdir()], DEFAULT_LEVEL);
  await sendRefused(t, origin.url, 'origin');
  const refused = (): Line[] => lines(origin.stderr()).filter((l) => REFUSALS.some((r) => r.code === l.code));
  await eventually('a line per refused request', () => refused().length >= REFUSALS.length);
  for (const [i, l] of refused().entries()) {
    t.equal(l.level, INFO, `${REFUSALS[i]!.line}: at info`);
    t.equal(l.err, undefined, `${REFUSALS[i]!.line}: no stack`);
  }
  t.same(lines(origin.stderr()).filter((l) => l.level >= ERROR), [], 'no error line');
  await origin.stop();
});

t.test('cache: a 501 or 505 to the client\'s request is not an error line; a failed fill still is', async (t) => {
  const dir = t.testdir();
  // Nothing listens on port 1: a miss fails (502), the server fault that is logged.
  writeFileSync(join(dir, 'cache.yaml'), 'upstream: http://127.0.0.1:1/\n');
  const cache = await startServerProcess(t, ['cache', '-c', join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', join(dir, 'data')], DEFAULT_LEVEL);
  await sendRefused(t, cache.url, 'cache');
  const miss = await request(`${cache.url}/cas/sha256/${'b'.repeat(64)}`);
  await miss.body.dump();
  t.equal(miss.statusCode, 502, 'a miss upstream cannot fill: 502');
  const failed = (): Line[] => lines(cache.stderr()).filter((l) => l.msg === 'request failed');
  await eventually('the failed miss logged', () => failed().length >= 1);
  t.same(failed().map((l) => [l.level, l.code]), [[ERROR, 'FC_ERR_UPSTREAM']], 'only the failed miss is an error line');
  await cache.stop();
});
