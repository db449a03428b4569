// Soak of the regional cache under faults: real origin and cache processes (the compiled
// CLI, the cache with workers and a disk budget far smaller than the data), clients asking
// at once for whole blobs, ranges, heads, missing blobs, uploads (right and wrong digests),
// artifact names and a mirror's files, while proxies in front of the origin and the mirror
// cut, stall and refuse answers (lib/chaos-proxy.ts) and the cache's workers are killed or
// stopped, the whole cache killed or restarted, or the origin killed mid-upload and restarted.
// Every answer is checked against what the soak knows: a body that ends cleanly is the
// right one whole, a missing blob is never served, a name is never older than its last
// completed upload (unless the cache says STALE, or the origin holds that older one: an
// upload its client gave up on that landed late), a mirror's answer is a version its server
// gave, never served past its max-age after it was replaced (unless STALE), errors are
// 502/503/504 with a JSON body, nothing hangs. At the end, calm again, everything is asked
// twice through the cache, and again after a clean restart: nothing kept from a fault may
// be served, and the restart keeps what the disk held.
// Run: node --import tsx bench/soak-cache.ts [--seconds 120] [--seed N] [--clients 24] [--workers 2] [--disk MiB]
// Exit status 1 when any check failed; what failed is printed, and the data directory (with
// the cache's log) is kept. Runs are summed up by hand in RESULTS.md.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request, type Dispatcher } from 'undici';
import { startChaosProxy, type ChaosAct } from './lib/chaos-proxy.js';
import { descendantsOf, isAlive, undoAtExit } from '../test/helpers/processes.js';
import { casId } from '../src/cache/disk-store.js';
import { benchDir, freePort, startFleetcache, type BenchProcess } from './lib/processes.js';

const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '120' },
    seed: { type: 'string' },
    clients: { type: 'string', default: '24' },
    blobs: { type: 'string', default: '160' },
    workers: { type: 'string', default: '2' },
    // the cache's data on a tmpfs of this many MiB (root): a disk that fills before the budget
    disk: { type: 'string' },
  },
});
const SECONDS = Number(opts.seconds);
const SEED = opts.seed === undefined ? randomBytes(4).readUInt32BE() : Number(opts.seed);
const CLIENTS = Number(opts.clients);
const BLOBS = Number(opts.blobs);
const WORKERS = Number(opts.workers);
const DISK_MIB = opts.disk === undefined ? undefined : Number(opts.disk);
const MAX_SIZE = 96 * 1024 * 1024;
/** No answer may take longer than this (the cache's own bounds are seconds). */
const HANG_MS = 45_000;

/** mulberry32: the soak's choices from its seed (the blobs' bytes are random anyway). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const between = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
const pick = <T>(items: readonly T[]): T | undefined => items[Math.floor(random() * items.length)];
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** What the origin holds of a blob, as far as the soak knows. */
type KnownBlobState = 'absent' | 'present' | 'maybe';
interface KnownBlob { readonly hex: string; readonly data: Buffer; state: KnownBlobState; busy: boolean }
interface NameVersion { readonly hex: string; readonly index: number }
/** `accepted`: each version the origin took, when its answer came back through the proxy, in that order. */
interface Name { readonly path: string; readonly versions: Map<string, NameVersion>; readonly bodies: Map<string, Buffer>; readonly accepted: { hex: string; at: number }[]; started: number; completed: number; busy: boolean }

function makeBlob(): KnownBlob {
  const r = random();
  const size = r < 0.45 ? between(1, 16 * 1024) : r < 0.85 ? between(16 * 1024, 1024 * 1024) : between(1024 * 1024, 12 * 1024 * 1024);
  const data = randomBytes(size);
  return { hex: sha256(data), data, state: 'absent', busy: false };
}

const violations: string[] = [];
const outcomes = new Map<string, number>();
function count(op: string, outcome: string): void {
  const key = `${op} ${outcome}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}
function violation(op: string, what: string): void {
  count(op, 'VIOLATION');
  violations.push(`${new Date().toISOString()} ${op}: ${what}`);
  console.log(`VIOLATION ${op}: ${what}`);
}

const clientAgent = new Agent({ connections: 64, headersTimeout: HANG_MS, bodyTimeout: HANG_MS });

/** An answer's body read whole: its bytes, or 'cut' when the connection ended before its end. */
async function readBody(res: Dispatcher.ResponseData): Promise<Buffer | 'cut'> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res.body) chunks.push(chunk as Buffer);
  } catch {
    return 'cut';
  }
  return Buffer.concat(chunks);
}

/**
 * The answers a fault may give in place of the expected one: an error status with a JSON
 * body, the connection refused or cut (the cache restarting). Anything else is checked by
 * the caller; a hang is a violation.
 */
async function faultOutcome(op: string, method: string, res: Dispatcher.ResponseData): Promise<string | undefined> {
  // A request whose head sat unread in a stopped worker's socket past the cache's client-header
  // timeout (15 s) is answered 408 once the worker runs again: the stop's doing.
  const afterStop = res.statusCode === 408 && Date.now() - workerStopped < 20_000;
  if (res.statusCode !== 502 && res.statusCode !== 503 && res.statusCode !== 504 && !afterStop) return undefined;
  if (method === 'HEAD') {
    if (!String(res.headers['content-type']).startsWith('application/json')) violation(op, `HEAD ${res.statusCode} of content-type ${String(res.headers['content-type'])}`);
    return `status-${res.statusCode}`;
  }
  const body = await readBody(res);
  if (body === 'cut') return 'error-status-cut';
  try {
    const parsed = JSON.parse(body.toString()) as { code?: unknown };
    if (typeof parsed.code !== 'string') violation(op, `${res.statusCode} JSON without a code: ${body.toString().slice(0, 200)}`);
  } catch {
    violation(op, `${res.statusCode} with a body that is not JSON: ${body.toString().slice(0, 200)}`);
  }
  return `status-${res.statusCode}`;
}

/** When a worker stopped by the soak (SIGSTOP) ran again: Infinity while one is stopped. */
let workerStopped = 0;

/** Requests in flight, for a look when one hangs. */
const inFlight = new Set<string>();

async function ask(op: string, path: string, options: Omit<Dispatcher.RequestOptions, 'origin' | 'path'> & { method: Dispatcher.HttpMethod }, check: (res: Dispatcher.ResponseData) => Promise<string>): Promise<void> {
  const started = Date.now();
  const label = `${new Date(started).toISOString()} ${op} ${options.method} ${path}`;
  inFlight.add(label);
  try {
    await askOnce(op, path, options, check, started);
  } finally {
    inFlight.delete(label);
  }
}

async function askOnce(op: string, path: string, options: Omit<Dispatcher.RequestOptions, 'origin' | 'path'> & { method: Dispatcher.HttpMethod }, check: (res: Dispatcher.ResponseData) => Promise<string>, started: number): Promise<void> {
  const signal = AbortSignal.timeout(HANG_MS + 5000);
  let res: Dispatcher.ResponseData;
  try {
    res = await request(`${cacheUrl}${path}`, { ...options, dispatcher: clientAgent, signal });
  } catch (err) {
    if (Date.now() - started >= HANG_MS) return violation(op, `no answer to ${options.method} ${path} in ${Date.now() - started} ms: ${(err as Error).message}`);
    count(op, 'connection-error');
    // the cache restarting: not a loop of refused connections meanwhile
    return sleep(20);
  }
  try {
    const fault = await faultOutcome(op, options.method, res);
    count(op, fault ?? (await check(res)));
  } catch (err) {
    violation(op, `${options.method} ${path}: ${(err as Error).stack ?? String(err)}`);
  } finally {
    // a body the check left unread (its abort is no error here)
    if (!res.body.destroyed) res.body.on('error', () => undefined).destroy();
  }
  if (Date.now() - started >= HANG_MS) violation(op, `${options.method} ${path} took ${Date.now() - started} ms`);
}

/**
 * What a status says of `blob`: a violation when the cache's answer contradicts what is known.
 * A 404 is wrong only for a blob stored before the request was sent (`storedBefore`): one
 * uploaded by another client meanwhile may have been asked upstream before it was there.
 */
function checkPresence(op: string, blob: KnownBlob, status: number, path: string, storedBefore: boolean): 'present' | 'absent' | undefined {
  if (status === 404) {
    if (storedBefore) violation(op, `404 for ${path}, stored at the origin (${blob.data.length} bytes) before the request`);
    return 'absent';
  }
  if (status === 200 || status === 206) {
    if (blob.state === 'absent') violation(op, `${status} for ${path}, never uploaded`);
    return 'present';
  }
  violation(op, `status ${status} for ${path}`);
  return undefined;
}

const blobPath = (blob: KnownBlob): string => `/cas/sha256/${blob.hex}`;

async function getWhole(blob: KnownBlob, op = 'get'): Promise<void> {
  const storedBefore = blob.state === 'present';
  await ask(op, blobPath(blob), { method: 'GET' }, async (res) => {
    if (checkPresence(op, blob, res.statusCode, blobPath(blob), storedBefore) !== 'present') return `status-${res.statusCode}`;
    const body = await readBody(res);
    if (body === 'cut') return 'body-cut';
    if (body.length !== blob.data.length || sha256(body) !== blob.hex) {
      // kept beside the run's directory, for a look at what was sent instead
      const saved = join(dir, `wrong-${blob.hex}-${Date.now()}`);
      writeFileSync(saved, body);
      const other = known.blobs.find((b) => b.hex === sha256(body));
      violation(op, `wrong body for ${blobPath(blob)}: ${body.length} bytes (want ${blob.data.length}), x-cache ${String(res.headers['x-cache'])}, first wrong byte at ${commonPrefix(body, blob.data)}${other ? `, the blob ${other.hex}` : ''}; saved as ${saved}`);
    }
    return `ok-${String(res.headers['x-cache'] ?? 'none')}`;
  });
}

async function getRange(blob: KnownBlob): Promise<void> {
  const size = blob.data.length;
  const start = between(0, size - 1);
  const end = Math.min(size - 1, start + between(0, random() < 0.5 ? 4096 : size));
  const suffix = random() < 0.15;
  const header = suffix ? `bytes=-${end - start + 1}` : `bytes=${start}-${end}`;
  const [from, to] = suffix ? [size - (end - start + 1), size - 1] : [start, end];
  const storedBefore = blob.state === 'present';
  await ask('range', blobPath(blob), { method: 'GET', headers: { range: header } }, async (res) => {
    if (checkPresence('range', blob, res.statusCode, blobPath(blob), storedBefore) !== 'present') return `status-${res.statusCode}`;
    const body = await readBody(res);
    if (body === 'cut') return 'body-cut';
    if (res.statusCode === 200) {
      if (!body.equals(blob.data)) violation('range', `200 to ${header} with a wrong body (${body.length} bytes of ${size})`);
      return 'whole';
    }
    if (res.headers['content-range'] !== `bytes ${from}-${to}/${size}`) violation('range', `${header} of ${size} bytes: content-range ${String(res.headers['content-range'])}`);
    if (!body.equals(blob.data.subarray(from, to + 1))) violation('range', `${header} of ${blobPath(blob)} (${size} bytes): wrong bytes (${body.length}), x-cache ${String(res.headers['x-cache'])}`);
    return `ok-${String(res.headers['x-cache'] ?? 'none')}`;
  });
}

async function head(blob: KnownBlob): Promise<void> {
  const storedBefore = blob.state === 'present';
  await ask('head', blobPath(blob), { method: 'HEAD' }, async (res) => {
    if (checkPresence('head', blob, res.statusCode, blobPath(blob), storedBefore) !== 'present') return `status-${res.statusCode}`;
    if (res.headers['content-length'] !== String(blob.data.length)) violation('head', `content-length ${String(res.headers['content-length'])} for ${blob.data.length} bytes`);
    return 'ok';
  });
}

/** A GET the client gives up midway: the fill it started or joined must go on for the others. */
async function abandon(blob: KnownBlob): Promise<void> {
  await ask('abandon', blobPath(blob), { method: 'GET' }, async (res) => {
    let left = between(0, blob.data.length);
    try {
      for await (const chunk of res.body) {
        left -= (chunk as Buffer).length;
        if (left <= 0) return 'left';
      }
    } catch {
      return 'body-cut';
    }
    return 'whole';
  });
}

async function put(blob: KnownBlob): Promise<void> {
  const before = blob.state;
  blob.busy = true;
  if (blob.state === 'absent') blob.state = 'maybe';
  try {
    await ask('put', blobPath(blob), { method: 'PUT', body: blob.data, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' } }, async (res) => {
      await res.body.dump();
      if (res.statusCode === 200 || res.statusCode === 201) {
        blob.state = 'present';
        return `ok-${res.statusCode}`;
      }
      violation('put', `status ${res.statusCode} for ${blobPath(blob)} (was ${before})`);
      return `status-${res.statusCode}`;
    });
  } finally {
    blob.busy = false;
  }
}

/** An upload whose bytes are not the digest's: refused, and nothing stored for the digest. */
async function putWrong(blob: KnownBlob): Promise<void> {
  blob.busy = true;
  try {
    const wrong = randomBytes(blob.data.length);
    await ask('put-wrong', blobPath(blob), { method: 'PUT', body: wrong, headers: { authorization: `Bearer ${token}` } }, async (res) => {
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) violation('put-wrong', `${res.statusCode} for wrong bytes at ${blobPath(blob)}`);
      return `status-${res.statusCode}`;
    });
  } finally {
    blob.busy = false;
  }
}

/** Every blob and name of the soak, for a look at a wrong body (likeness). */
const known: { blobs: readonly KnownBlob[]; names: readonly Name[] } = { blobs: [], names: [] };

/**
 * How a body that is no version of `name` relates to what the soak knows: a prefix of one of
 * its versions, one's length, parts of two; or the bytes of another entry (a blob, another name).
 */
function likeness(body: Buffer, name: Name): string {
  const hex = sha256(body);
  const blob = known.blobs.find((b) => b.hex === hex);
  if (blob) return `the blob ${blob.hex}`;
  const other = known.names.find((n) => n.versions.has(hex));
  if (other) return `version ${other.versions.get(hex)!.index} of ${other.path}`;
  const said: string[] = [];
  for (const b of known.blobs) {
    const common = commonPrefix(body, b.data);
    if (common >= 4096) said.push(`its first ${common} bytes are the blob ${b.hex}'s (${b.data.length} bytes)`);
  }
  for (const [hex, { index }] of name.versions) {
    const data = name.bodies.get(hex)!;
    const common = commonPrefix(body, data);
    if (data.length === body.length) said.push(`as long as version ${index}`);
    if (common === body.length) said.push(`a prefix of version ${index} (${data.length} bytes)`);
    else if (common > 0) said.push(`its first ${common} bytes are version ${index}'s (${data.length} bytes)`);
    if (data.length < body.length && body.subarray(body.length - data.length).equals(data)) said.push(`ends with version ${index}`);
  }
  return said.join('; ') || 'nothing in common with any version';
}

function commonPrefix(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

function nameVersion(name: Name, body: Buffer): NameVersion | undefined {
  return name.versions.get(sha256(body));
}

async function putName(name: Name): Promise<void> {
  name.busy = true;
  const data = randomBytes(random() < 0.7 ? between(1, 64 * 1024) : between(64 * 1024, 3 * 1024 * 1024));
  const version = { hex: sha256(data), index: name.started++ };
  name.versions.set(version.hex, version);
  name.bodies.set(version.hex, data);
  try {
    await ask('put-name', name.path, { method: 'PUT', body: data, headers: { authorization: `Bearer ${token}` } }, async (res) => {
      await res.body.dump();
      if (res.statusCode === 200 || res.statusCode === 201) {
        name.completed = version.index;
        return `ok-${res.statusCode}`;
      }
      violation('put-name', `status ${res.statusCode} for ${name.path}`);
      return `status-${res.statusCode}`;
    });
  } finally {
    name.busy = false;
  }
}

async function getName(name: Name, op = 'get-name'): Promise<void> {
  const completed = name.completed;
  const asked = Date.now();
  await ask(op, name.path, { method: 'GET' }, async (res) => {
    const xcache = String(res.headers['x-cache'] ?? 'none');
    if (res.statusCode === 404) {
      if (completed >= 0) violation(op, `404 for ${name.path}, uploaded (version ${completed})`);
      return 'status-404';
    }
    if (res.statusCode !== 200) {
      violation(op, `status ${res.statusCode} for ${name.path}`);
      return `status-${res.statusCode}`;
    }
    const body = await readBody(res);
    if (body === 'cut') return 'body-cut';
    const version = nameVersion(name, body);
    if (version === undefined) violation(op, `${name.path}: a body that is no version uploaded (${body.length} bytes, x-cache ${xcache}, etag ${String(res.headers.etag)}, age ${String(res.headers.age)}): ${likeness(body, name)}`);
    else if (version.index < completed && xcache !== 'STALE') {
      // An upload its client gave up on (a worker stopped while it held it) may land at the
      // origin after a later one completed: that version is then the origin's, and serving
      // it is right. Anything else is the cache's fault.
      if (originHadAfter(name, version.hex, asked)) return 'older-upload-landed-late';
      violation(op, `${name.path}: version ${version.index}, older than ${completed} (completed before the request), x-cache ${xcache}; asked at ${new Date(asked).toISOString()}, the origin took ${acceptedLately(name, asked)}`);
    }
    return `ok-${xcache}`;
  });
}

/**
 * Whether version `hex` of `name` may have been the origin's at `asked` or after: the last
 * version the origin took before then (as the proxy saw its answers), or one it took after.
 * Its answers reach the proxy a little after it took each: a version replaced shortly
 * before `asked` may pass for one still there, never the other way round.
 */
function originHadAfter(name: Name, hex: string, asked: number): boolean {
  const taken = name.accepted;
  const current = taken.findLastIndex((a) => a.at < asked);
  return taken.slice(Math.max(current, 0)).some((a) => a.hex === hex);
}

/** The versions the origin took around `asked`, for a violation's message. */
function acceptedLately(name: Name, asked: number): string {
  const index = (hex: string): string => String(name.versions.get(hex)?.index ?? '?');
  return name.accepted.filter((a) => a.at > asked - 30_000).map((a) => `${index(a.hex)} at ${a.at - asked} ms`).join(', ') || 'nothing in the 30 s before';
}

/** A mirror's path: the versions its server has given, each with when it was replaced. */
interface MirrorVersion { readonly hex: string; readonly body: Buffer; readonly etag: string; replacedAt: number | undefined }
interface MirrorPath { readonly path: string; readonly versions: MirrorVersion[]; readonly byHex: Map<string, MirrorVersion> }
/** How long a mirror answer is fresh (Cache-Control: max-age), seconds. */
const MIRROR_MAX_AGE = 2;

function newMirrorVersion(path: MirrorPath): void {
  const body = randomBytes(between(1, 200 * 1024));
  const version = { hex: sha256(body), body, etag: `"${sha256(body).slice(0, 16)}"`, replacedAt: undefined };
  const current = path.versions.at(-1);
  if (current) current.replacedAt = Date.now();
  path.versions.push(version);
  path.byHex.set(version.hex, version);
}

/** A plain HTTP server with ETags and max-age, whose bodies change now and then: a distribution mirror. */
async function startMirrorServer(paths: readonly MirrorPath[]): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    const path = paths.find((p) => p.path === req.url);
    if (!path) return void res.writeHead(404).end();
    const version = path.versions.at(-1)!;
    const headers = { etag: version.etag, 'cache-control': `max-age=${MIRROR_MAX_AGE}`, 'content-type': 'application/octet-stream' };
    if (req.headers['if-none-match'] === version.etag) return void res.writeHead(304, headers).end();
    res.writeHead(200, { ...headers, 'content-length': String(version.body.length) });
    res.end(req.method === 'HEAD' ? undefined : version.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

async function getMirror(path: MirrorPath, op = 'mirror'): Promise<void> {
  const started = Date.now();
  await ask(op, `/mirror/soak${path.path}`, { method: 'GET' }, async (res) => {
    const xcache = String(res.headers['x-cache'] ?? 'none');
    if (res.statusCode !== 200) {
      violation(op, `status ${res.statusCode} for ${path.path}`);
      return `status-${res.statusCode}`;
    }
    const body = await readBody(res);
    if (body === 'cut') return 'body-cut';
    const version = path.byHex.get(sha256(body));
    if (version === undefined) violation(op, `${path.path}: a body its server never gave (${body.length} bytes, x-cache ${xcache})`);
    // fresh for max-age after it was replaced (its last copy may have been taken just before), a second of slack
    else if (version.replacedAt !== undefined && xcache !== 'STALE' && started > version.replacedAt + (MIRROR_MAX_AGE + 1) * 1000) {
      violation(op, `${path.path}: a version replaced ${started - version.replacedAt} ms before the request, x-cache ${xcache}, age ${String(res.headers.age)}`);
    }
    return `ok-${xcache}`;
  });
}

/**
 * Who holds the cache port's connections now (ss from iproute2), for a request that hangs:
 * the connections per process (the cache's primary, a worker of it, or a process no longer
 * the cache's: a worker of a cache stopped or killed), the bytes unread in each, and the
 * connections waiting in the listen queue. The whole listing goes to a file of the run's
 * directory; a line sums it up.
 */
function connectionsAtCache(): string {
  const port = new URL(cacheUrl).port;
  let listing: string;
  try {
    listing = execFileSync('ss', ['-tanpH', `( sport = :${port} )`], { encoding: 'utf8' });
  } catch (err) {
    return `ss failed: ${(err as Error).message}`;
  }
  const file = join(dir, `ss-${Date.now()}.txt`);
  writeFileSync(file, listing);
  const primary = cache?.child.pid;
  const current = new Set(primary === undefined ? [] : [primary, ...descendantsOf(primary)]);
  const byHolder = new Map<string, { connections: number; unread: number }>();
  for (const line of listing.trim().split('\n').filter(Boolean)) {
    const [state, recvQ] = line.split(/\s+/);
    if (state === 'TIME-WAIT') continue; // closed on both sides
    const pid = /pid=(\d+)/.exec(line)?.[1];
    const who = state === 'LISTEN' ? `listen queue (${pid ?? '?'})` : pid === undefined ? 'no process' : current.has(Number(pid)) ? `${Number(pid) === primary ? 'primary' : 'worker'} ${pid}` : `not the cache's ${pid}`;
    const held = byHolder.get(who) ?? { connections: 0, unread: 0 };
    held.connections += state === 'LISTEN' ? Number(recvQ) : 1;
    if (state !== 'LISTEN' && Number(recvQ) > 0) held.unread++;
    byHolder.set(who, held);
  }
  return `connections at the cache (${file}): ${[...byHolder].map(([who, h]) => `${who}: ${h.connections}${h.unread > 0 ? ` (${h.unread} with bytes unread)` : ''}`).join('; ')}`;
}

// ---- the processes ----

const { dir, remove, keep } = benchDir('fleetcache-soak-');
let cacheUrl = '';
let token = '';
let cache: BenchProcess | undefined;
/** Exits of the cache the soak did not cause. */
let expectedExit = false;
const errorLines: string[] = [];
let errorLineCount = 0;
/** Of those, the storage failures (the first 10 lines, and how many): each starts a 30 s cool-down of its process, when nothing is kept. */
const storageFailures: string[] = [];
let storageFailureCount = 0;

/**
 * Starts `fleetcache <args>` on its fixed port, trying again while the port is still held
 * (a killed cache's last worker lets it go a moment later). An exit while `stopping()`
 * says no one stops it is a violation named `what`.
 */
async function startServer(what: string, args: string[], env: NodeJS.ProcessEnv, stopping: () => boolean): Promise<BenchProcess & { url: string }> {
  for (let attempt = 1; ; attempt++) {
    try {
      const started = await startFleetcache(args, env);
      started.child.once('exit', (code, signal) => {
        if (!stopping()) violation(what, `exited on its own (${code ?? signal}): ${started.stderr().slice(-2000)}`);
      });
      return started;
    } catch (err) {
      if (attempt === 20) throw err;
      await sleep(250);
    }
  }
}

async function startCache(configFile: string): Promise<void> {
  // TMPDIR: the socket directories of the primaries the soak kills go with the soak's directory
  const started = await startServer('cache', ['cache', '--config', configFile], { TMPDIR: dir }, () => expectedExit);
  cache = started;
  expectedExit = false;
  started.child.stderr!.on('data', (chunk: Buffer) => {
    appendFileSync(join(dir, 'cache.log'), chunk);
    for (const line of chunk.toString().split('\n')) {
      if (!/"level":(50|60)/.test(line)) continue;
      errorLineCount++;
      if (line.includes('"msg":"cache storage failure')) {
        storageFailureCount++;
        if (storageFailures.length < 10) storageFailures.push(line.slice(0, 600));
      }
      if (errorLines.length < 20) errorLines.push(line.slice(0, 600));
    }
  });
}

/** Connections a cache's primary handed to another worker than the first (one died first), summed over the caches of the run. */
const rerouted = { connections: 0, unread: 0 };

/** Adds the running cache's count of connections handed on (its counter starts with it) to `rerouted`. */
async function countRerouted(): Promise<void> {
  try {
    const res = await request(`${cacheUrl}/-/metrics`, { dispatcher: clientAgent, signal: AbortSignal.timeout(2000) });
    const text = await res.body.text();
    const m = /^fleetcache_cache_connections_rerouted_total(?:\{[^}]*\})? (\d+)$/m.exec(text);
    if (m) rerouted.connections += Number(m[1]);
    else rerouted.unread++;
  } catch {
    rerouted.unread++; // a worker stopped by the soak holds the request, say
  }
}

async function killCache(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
  const running = cache;
  if (running?.child.pid === undefined || running.child.exitCode !== null || running.child.signalCode !== null) return;
  if (WORKERS > 1) await countRerouted();
  expectedExit = true;
  const exited = new Promise<void>((resolve) => running.child.once('exit', () => resolve()));
  const workers = descendantsOf(running.child.pid);
  if (signal === 'SIGKILL') for (const pid of [running.child.pid, ...workers]) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
  } else process.kill(running.child.pid, 'SIGTERM');
  await exited;
  // the workers of a killed primary: wait until they are gone too
  for (let i = 0; i < 100 && workers.some(isAlive); i++) await sleep(50);
}

async function main(): Promise<void> {
  console.log(`soak: seed ${SEED}, ${SECONDS} s, ${CLIENTS} clients, ${BLOBS} blobs, ${WORKERS} workers, cache budget ${MAX_SIZE / 1048576} MiB`);
  // on a port of its own: restarted after a kill, the proxy finds it there again
  const originArgs = ['origin', '--listen', `127.0.0.1:${await freePort()}`, '--data', join(dir, 'origin')];
  let originStopping = false;
  const startOriginProcess = async (): Promise<BenchProcess & { url: string }> => {
    const started = await startServer('origin', originArgs, { FLEETCACHE_LOG_LEVEL: 'warn' }, () => originStopping);
    originStopping = false;
    return started;
  };
  let origin = await startOriginProcess();
  token = readFileSync(join(dir, 'origin', 'token'), 'utf8').trim().split('\n')[0]!;

  const blobs = Array.from({ length: BLOBS }, makeBlob);
  const total = blobs.reduce((sum, b) => sum + b.data.length, 0);
  console.log(`blobs: ${(total / 1048576).toFixed(1)} MiB in all`);
  // three quarters at the origin before the start; the rest uploaded through the cache
  const uploadAgent = new Agent({ connections: 8 });
  await Promise.all(blobs.slice(0, Math.floor(BLOBS * 0.75)).map(async (blob) => {
    const res = await request(`${origin.url}${blobPath(blob)}`, { method: 'PUT', body: blob.data, headers: { authorization: `Bearer ${token}` }, dispatcher: uploadAgent });
    await res.body.dump();
    if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`upload: ${res.statusCode}`);
    blob.state = 'present';
  }));
  await uploadAgent.close();
  known.blobs = blobs;
  const names: Name[] = Array.from({ length: 8 }, (_, i) => ({ path: `/artifacts/soak/job-${i}/out.bin`, versions: new Map(), bodies: new Map(), accepted: [], started: 0, completed: -1, busy: false }));
  known.names = names;

  const act = (method: string): ChaosAct => {
    const r = random();
    if (method === 'PUT') return r < 0.05 ? 'cut' : 'pass';
    return r < 0.04 ? 'cut' : r < 0.06 ? 'stall' : r < 0.08 ? 'refuse' : 'pass';
  };
  const onAccepted = (path: string, hex: string): void => void names.find((n) => n.path === path)?.accepted.push({ hex, at: Date.now() });
  const proxy = await startChaosProxy(origin.url, { act, random, stallMs: 2500, onAccepted });
  const mirrorPaths: MirrorPath[] = Array.from({ length: 12 }, (_, i) => ({ path: `/pool/m${i}.bin`, versions: [], byHex: new Map() }));
  for (const path of mirrorPaths) newMirrorVersion(path);
  const mirror = await startMirrorServer(mirrorPaths);
  const mirrorProxy = await startChaosProxy(mirror.url, { act, random, stallMs: 2500 });
  // a path changes now and then: often enough that stale copies would be seen
  const changes = setInterval(() => newMirrorVersion(pick(mirrorPaths)!), 300);

  const port = await freePort();
  cacheUrl = `http://127.0.0.1:${port}`;
  const configFile = join(dir, 'cache.yaml');
  mkdirSync(join(dir, 'cache'));
  let unmount = (): void => undefined;
  let keepMounted = (): void => undefined;
  if (DISK_MIB !== undefined) {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${DISK_MIB}m`, 'soak', join(dir, 'cache')]);
    const unmountNow = (): void => void execFileSync('umount', ['-l', join(dir, 'cache')]);
    const forget = undoAtExit(unmountNow);
    unmount = () => { forget(); unmountNow(); };
    keepMounted = forget;
  }
  writeFileSync(configFile, [
    'region: soak', `listen: 127.0.0.1:${port}`, `upstream: ${proxy.url}`, `data: ${join(dir, 'cache')}`, `maxSize: ${MAX_SIZE}`,
    `workers: ${WORKERS}`, 'logLevel: warn', 'shutdownTimeout: 3s', 'workerTimeout: 10s',
    'timeouts:', '  connect: 1s', '  headers: 3s', '  body: 2s',
    'mirrors:', '  soak:', `    url: ${mirrorProxy.url}`, '',
  ].join('\n'));
  await startCache(configFile);

  let stopping = false;
  const client = async (): Promise<void> => {
    while (!stopping) {
      // a turn that found nothing to do must not keep the event loop to itself
      await new Promise((resolve) => setImmediate(resolve));
      const r = random();
      const idle = blobs.filter((b) => !b.busy);
      const blob = pick(idle.length > 0 ? idle : blobs)!;
      if (r < 0.40) await getWhole(blob);
      else if (r < 0.55) await getRange(blob);
      else if (r < 0.63) await head(blob);
      else if (r < 0.70) await abandon(blob);
      else if (r < 0.76) {
        const target = pick(blobs.filter((b) => !b.busy && b.state !== 'present')) ?? pick(idle);
        if (target !== undefined) await put(target);
      } else if (r < 0.78) {
        const target = pick(blobs.filter((b) => !b.busy && b.state === 'absent'));
        if (target !== undefined) await putWrong(target);
      } else if (r < 0.84) {
        const name = pick(names.filter((n) => !n.busy));
        if (name !== undefined) await putName(name);
      } else if (r < 0.92) await getName(pick(names)!);
      else await getMirror(pick(mirrorPaths)!);
    }
  };

  const faults = { outage: 0, 'kill-worker': 0, 'stop-worker': 0, 'kill-cache': 0, 'restart-cache': 0, 'kill-origin': 0 };
  const chaos = async (): Promise<void> => {
    const workerKills: number[] = [];
    while (!stopping) {
      await sleep(between(3000, 8000));
      if (stopping) break;
      const r = random();
      if (r < 0.3) {
        faults.outage++;
        proxy.down();
        mirrorProxy.down();
        await sleep(between(1000, 3000));
        proxy.up();
        mirrorProxy.up();
      } else if (r < 0.6) {
        // no more than two a minute: the fifth worker death within a minute stops the cache, by
        // design, and a worker stopped past workerTimeout (10 s) is killed by its primary
        const now = Date.now();
        if (workerKills.filter((at) => now - at < 60_000).length >= 2) continue;
        const worker = pick(descendantsOf(cache!.child.pid!));
        if (worker === undefined) continue;
        workerKills.push(now);
        if (r < 0.45) {
          faults['kill-worker']++;
          process.kill(worker, 'SIGKILL');
          continue;
        }
        // a wedged worker: its clients wait, the other worker's do not
        faults['stop-worker']++;
        process.kill(worker, 'SIGSTOP');
        workerStopped = Infinity;
        await sleep(between(2000, 12_000));
        try { process.kill(worker, 'SIGCONT'); } catch { /* killed by its primary meanwhile */ }
        workerStopped = Date.now();
      } else if (r < 0.72) {
        faults['kill-cache']++;
        await killCache('SIGKILL');
        await sleep(between(100, 1500));
        await startCache(configFile);
      } else if (r < 0.85) {
        faults['restart-cache']++;
        await killCache('SIGTERM');
        await startCache(configFile);
      } else if (r < 0.93) {
        // the origin killed mid-upload: what it answered 201 for stays, nothing half-written is served
        faults['kill-origin']++;
        const exited = new Promise<void>((resolve) => origin.child.once('exit', () => resolve()));
        originStopping = true;
        origin.child.kill('SIGKILL');
        await exited;
        await sleep(between(300, 2000));
        origin = await startOriginProcess();
      }
    }
  };

  const deadline = sleep(SECONDS * 1000).then(() => { stopping = true; });
  const progress = setInterval(() => {
    const done = [...outcomes.values()].reduce((a, b) => a + b, 0);
    console.log(`… ${done} answers, ${violations.length} violations, faults ${JSON.stringify(faults)}, proxy ${JSON.stringify(proxy.counts)}`);
    const old = [...inFlight].filter((label) => Date.now() - Date.parse(label.slice(0, 24)) > 10_000);
    if (old.length > 0) {
      console.log(`  in flight for over 10 s:\n    ${old.join('\n    ')}`);
      console.log(`  ${connectionsAtCache()}`);
    }
    const stuck = proxy.stuck(10_000);
    if (stuck.length > 0) console.log(`  at the proxy for over 10 s (${stuck.length}):\n    ${stuck.slice(0, 10).join('\n    ')}`);
  }, 10_000);
  await Promise.all([deadline, chaos(), ...Array.from({ length: CLIENTS }, client)]);

  // calm: everything asked twice through the cache, then again after a clean restart
  proxy.calm();
  proxy.up();
  mirrorProxy.calm();
  mirrorProxy.up();
  // `queue` is asked from its end: the pass after the restart asks first what the pass before
  // asked last, which a budget smaller than the blobs kept, if the restart kept anything
  const finalPass = async (label: string, queue = [...blobs]): Promise<void> => {
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let blob = queue.pop(); blob !== undefined; blob = queue.pop()) await getWhole(blob, label);
    }));
    for (const name of names) await getName(name, `${label}-name`);
    for (const path of mirrorPaths) await getMirror(path, `${label}-mirror`);
  };
  console.log('calm: every blob and name asked twice');
  await finalPass('calm-1');
  await finalPass('calm-2');
  const stats = await request(`${cacheUrl}/-/stats`, { dispatcher: clientAgent });
  const statsText = await stats.body.text();
  if (stats.statusCode !== 200) violation('stats', `status ${stats.statusCode}: ${statsText.slice(0, 300)}`);
  const du = Number(execFileSync('du', ['-s', '--block-size=1', join(dir, 'cache')], { encoding: 'utf8' }).split('\t')[0]);
  if (du > MAX_SIZE * 1.25) violation('disk', `the cache's directory takes ${du} bytes, over its budget ${MAX_SIZE}`);
  console.log('a clean restart, then every blob and name asked again');
  await killCache('SIGTERM');
  // The blobs whose files the restart finds: each a hit when asked first (before any miss
  // of this pass can evict it to make room).
  // (a claim of a fill left behind has no permission bit, see disk-store.ts: not a body)
  const onDisk = blobs.filter((b) => ((statSync(join(dir, 'cache', casId({ algo: 'sha256', hex: b.hex })), { throwIfNoEntry: false })?.mode ?? 0) & 0o777) !== 0);
  await startCache(configFile);
  await Promise.all(onDisk.map((b) => getWhole(b, 'restarted-kept')));
  const kept = outcomes.get('restarted-kept ok-HIT') ?? 0;
  if (kept < onDisk.length) violation('restarted', `${onDisk.length - kept} of the ${onDisk.length} blobs on disk at the restart were not a hit after it`);
  // (none on disk: the calm passes stored nothing, as while a storage failure's cool-down lasts)
  if (onDisk.length === 0) console.log('  no blob on disk at the restart: what it keeps is not checked');
  await finalPass('restarted', [...blobs].reverse());
  await killCache('SIGTERM');
  clearInterval(progress);
  clearInterval(changes);
  await proxy.close();
  await mirrorProxy.close();
  await mirror.close();
  originStopping = true;
  await origin.stop();
  await clientAgent.close();
  if (violations.length === 0) unmount();

  console.log(`\nfaults: ${JSON.stringify(faults)}; proxy: ${JSON.stringify(proxy.counts)}; cache directory ${(du / 1048576).toFixed(1)} MiB of ${MAX_SIZE / 1048576}`);
  for (const [key, n] of [...outcomes].sort()) console.log(`${key.padEnd(36)} ${n}`);
  if (WORKERS > 1) console.log(`connections handed to another worker than the first (it died or was stopped and killed first): ${rerouted.connections}${rerouted.unread > 0 ? ` (at least: ${rerouted.unread} of the caches' counts could not be read)` : ''}`);
  console.log(`cache log lines at error level: ${errorLineCount}, storage failures (each a 30 s cool-down of its process) among them: ${storageFailureCount}`);
  for (const line of storageFailures) console.log(`  storage failure: ${line}`);
  for (const line of errorLines) console.log(`  ${line}`);
  console.log(`\n${violations.length} violations (seed ${SEED})`);
  for (const v of violations.slice(0, 40)) console.log(`  ${v}`);
  if (violations.length === 0) remove();
  else {
    keep();
    keepMounted();
    console.log(`kept for a look: ${dir} (cache.log: the cache's warnings and errors)${DISK_MIB === undefined ? '' : `; its cache/ is still a tmpfs: umount it after`}`);
  }
  process.exitCode = violations.length > 0 ? 1 : 0;
}

await main();
