// The hottest path of a regional cache: a plain GET of a small immutable blob, answered
// from node's 'request' event before fastify sees it, from memory or after one blocking
// read of its file (then held in memory). Routing, hooks, the reply object and the stream
// machinery are most of the CPU of a 4 KiB hit (measured with wrk: 37 µs per request
// through fastify against 16 µs for nginx). Any other request (HEAD, Range, conditional,
// a large body, a name, a mirror) goes on (to fast-miss.ts, then fastify) unchanged, and
// the answer here is the one serveHit gives: same status, headers (Age last) and counts.
// On a connection node has not taken yet, the same answer is written on the socket itself
// (sendEarlyHit, for early-hits.ts), without node's request and response objects.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CacheContext } from './context.js';
import { casId, type EntryMeta } from './disk-store.js';
import type { ImmutableKind } from './namespace.js';
import type { Digest, DigestAlgorithm } from '../store/digest.js';
import { FIELD_NAME, FIELD_VALUE } from './early-head.js';
import type { SendAnswer } from './early-hits.js';
import { flatLatin1 } from '../http/flat-string.js';

/**
 * /cas/{algo}/{hex} or the tooltool alias /{algo}/{hex}, the query ignored as the routes
 * do; lowercase hex of the algorithm's length only (anything else takes the full path).
 */
const CAS_PATH = /^\/(cas\/)?(?:(sha256)\/([0-9a-f]{64})|(sha512)\/([0-9a-f]{128}))(?:\?.*)?$/;

/** A GET of a blob with nothing that needs the routes: no Range, no If-None-Match or If-Match. */
export interface PlainBlobGet {
  readonly kind: ImmutableKind;
  readonly digest: Digest;
  /** Its store id. */
  readonly id: string;
}

/**
 * Paths of stored blobs already parsed, by URL: a URL asked before costs one lookup, where
 * parsing it again (the pattern, the digest, the store id, whose hash the index then
 * computes anew) was about a tenth of a hot hit's CPU (A/B with wrk). Only blobs in the
 * index are kept: a cold miss would leave objects that collections carry for nothing.
 * Emptied when full: a bound on its memory (a few MiB), not a policy.
 */
const parsed = new Map<string, PlainBlobGet>();
const PARSED_MAX = 32_768;

export function plainBlobGet(req: IncomingMessage, store: { has(id: string): boolean }): PlainBlobGet | undefined {
  if (req.method !== 'GET') return undefined;
  const h = req.headers;
  // A blob's answer has no Last-Modified: the date conditions are ignored (as the routes do).
  // A no-cache request has its stored copy hashed again first (namespace.ts, wantsRecheck).
  if (h.range !== undefined || h['if-none-match'] !== undefined || h['if-match'] !== undefined || h['cache-control'] !== undefined || h.pragma !== undefined) return undefined;
  return blobGetAt(req.url ?? '', store);
}

/** The blob `url` names, for a GET that plainBlobGet (or early-head.ts) found plain. */
export function blobGetAt(url: string, store: { has(id: string): boolean }): PlainBlobGet | undefined {
  const known = parsed.get(url);
  if (known) return known;
  const m = CAS_PATH.exec(url);
  if (!m) return undefined;
  const digest = { algo: (m[2] ?? m[4]) as DigestAlgorithm, hex: (m[3] ?? m[5])! };
  const get: PlainBlobGet = { kind: m[1] ? 'cas' : 'tooltool', digest, id: casId(digest) };
  if (store.has(get.id)) {
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(url, get);
  }
  return get;
}

/**
 * Answers `get` when its blob is a small hit and returns true; false leaves the request
 * untouched. `probe`: a worker also looks for a copy another worker stored (asked once
 * the miss path declined, so that a cold miss pays no look on disk).
 */
export function serveSmallHit(ctx: CacheContext, get: PlainBlobGet, res: ServerResponse, probe: boolean): boolean {
  const hit = ctx.store.smallHit(get.id, probe);
  if (!hit) return false;
  const { body, meta } = hit;
  // The list is the entry's, made on its first hit; only Age (its last value) changes.
  // writeHead reads it at once, so the next hit may write it again.
  const headers = (hit.answer ??= answerHeaders(meta.headers, body.length));
  headers[headers.length - 1] = ageOf(meta);
  res.writeHead(200, headers);
  res.end(body);
  // Counted as handed to the socket, without a 'finish' listener per answer: a few KiB go
  // out in that one write unless the client is gone.
  ctx.metrics.hitServed(get.kind, body.length);
  return true;
}

/**
 * early-hits.ts's answer: a plain GET (early-head.ts) of `target` answered with `send`, with
 * the bytes serveSmallHit has node write, when its blob is a small hit in this process
 * (`probe`: or one another worker stored). False sends nothing.
 */
export function sendEarlyHit(ctx: CacheContext, target: string, send: SendAnswer, probe: boolean): boolean {
  const get = blobGetAt(target, ctx.store);
  const hit = get && ctx.store.smallHit(get.id, probe);
  if (!hit) return false;
  const head = (hit.head ??= answerHead(hit.answer ??= answerHeaders(hit.meta.headers, hit.body.length)));
  if (head === null) return false; // a stored field node would refuse to write: node's to answer
  send(head + ageOf(hit.meta), hit.body);
  ctx.metrics.hitServed(get.kind, hit.body.length);
  return true;
}

/** The status line and `headers` (Age last, its value left off) as node writes them; null for a field node refuses. */
function answerHead(headers: readonly string[]): string | null {
  const head = okHead(headers, headers.length - 2);
  // kept and written for every hit of the entry: flat (see flat-string.ts)
  return head === null ? null : flatLatin1(`${head}\r\n${headers[headers.length - 2]}: `);
}

/**
 * A 200's status line and the first `count` entries of the flat list `headers` as node's
 * writeHead writes them, without the fields node adds (Date, Connection, Keep-Alive) and
 * the blank line; null for a field node would refuse.
 */
export function okHead(headers: readonly string[], count = headers.length): string | null {
  let head = 'HTTP/1.1 200 OK';
  for (let i = 0; i < count; i += 2) {
    if (!FIELD_NAME.test(headers[i]!) || !FIELD_VALUE.test(headers[i + 1]!)) return null;
    head += `\r\n${headers[i]}: ${headers[i + 1]}`;
  }
  return head;
}

/** The Age of an answer from `meta`'s copy, in whole seconds. */
function ageOf(meta: EntryMeta): string {
  return String(Math.max(0, Math.floor((Date.now() - meta.storedAt) / 1000)));
}

/** A small hit's headers as a flat list, Age last (its value set per answer). */
function answerHeaders(stored: Readonly<Record<string, string>>, size: number): string[] {
  const headers: string[] = [];
  for (const name in stored) headers.push(name, stored[name]!);
  headers.push('x-cache', 'HIT', 'accept-ranges', 'bytes', 'content-length', String(size), 'age', '');
  return headers;
}
