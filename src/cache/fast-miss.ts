// Cold GETs of immutable blobs, led from node's 'request' event before fastify sees them,
// as fast-hit.ts does for memory hits, or from a connection's first reader before node's
// request and response objects exist (leadEarlyMiss, for early-hits.ts). A cold 4 KiB miss
// costs its fixed overheads far more than its bytes: routing, fastify's request and reply
// objects, hooks, a child logger, the reply's send pipeline, and node's own objects. Only
// the plain case is taken: a GET without Range or conditions (plainBlobGet) of a blob no
// process has stored or is filling, whose claim this process takes. Every other case (a
// hit on disk, a fill to join, another worker's fill or copy, a full disk) goes to
// fastify's routes. The answers are the same either way (test/cache/fast-miss.test.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { flightKey, markFillRefused, type CacheContext } from './context.js';
import { StorageError } from './disk-store.js';
import type { OwedAnswer } from './early-hits.js';
import { blobGetAt, okHead, type PlainBlobGet } from './fast-hit.js';
import { sendFill } from './fill-cursor.js';
import type { Fill, FillOutcome, LeaderRequest } from './fill.js';
import type { FillHead } from './fill-progress.js';
import { forwardHeaders, immutableFill, originSource } from './namespace.js';
import { failureFields, lacksType, UNTYPED_BODY } from './serve.js';
import { requestIdFrom, requestIdOf } from '../http/request-id.js';
import type { PlainGet } from './early-head.js';
import type { HeaderMap } from './upstream.js';
import { errorAnswer, isServerFault, requestError } from '../http/errors.js';

/**
 * Starts answering `get` when it is a plain miss this process may lead, and returns true;
 * false leaves the request untouched. `toRoutes` hands it to fastify later, when the disk
 * refuses the fill.
 */
export function leadMiss(ctx: CacheContext, req: IncomingMessage, res: ServerResponse, get: PlainBlobGet, toRoutes: () => void): boolean {
  return lead(ctx, get, flightKey(get.id, req), () => requestIdOf(req), (id) => forwardHeaders({ headers: req.headers, id }), req, (outcome, led, id) => answerOutcome(ctx, req, res, get, led, outcome, toRoutes, id));
}

/**
 * early-hits.ts's miss: leads the fill of the blob the plain GET's target names, as leadMiss does for a
 * GET with the same Authorization and X-Request-Id, and returns true; false takes nothing. A small body is
 * answered with `owed.send`, the bytes node would write; anything else (a large body to
 * stream, an error, a disk that refused the fill) is handed to node, whose request handler
 * answers it as leadMiss does (`toRoutes`: the routes, when the disk refused).
 */
export function leadEarlyMiss(ctx: CacheContext, { target, authorization, requestId }: PlainGet, owed: OwedAnswer, toRoutes: (req: IncomingMessage, res: ServerResponse) => void): boolean {
  const get = blobGetAt(target, ctx.store);
  if (!get) return false;
  const asked = { headers: { authorization } };
  return lead(ctx, get, flightKey(get.id, asked), () => requestIdFrom(requestId), (id) => forwardHeaders({ ...asked, id }), { method: 'GET', url: target }, (outcome, led, id) => {
    if (!outcome.error && outcome.body && outcome.head.status === 200) {
      const head = okHead(missHeaders(outcome.head, outcome.body.length));
      if (head !== null) {
        ctx.metrics.miss(get.kind);
        // served only when written: the client may have gone while the fill ran
        if (owed.send(head, outcome.body) && outcome.body.length > 0) ctx.metrics.served(get.kind, outcome.body.length);
        return;
      }
    }
    owed.handOff((req, res) => answerOutcome(ctx, req, res, get, led, outcome, () => toRoutes(req, res), id));
  });
}

/**
 * Leads the fill of `get` under `key` when no process has it or fills it; false when it takes
 * nothing. Only a request it leads takes an id (`newId`, a miss's, sent upstream with the
 * headers `forwardWith` makes, and said by its error answer and log line): a hit, a fill to
 * join or another worker's copy goes on to the routes, which give it its id.
 */
function lead(ctx: CacheContext, get: PlainBlobGet, key: string, newId: () => string, forwardWith: (id: string) => HeaderMap, leaderRequest: LeaderRequest, told: (outcome: FillOutcome, fill: Fill, id: string) => void): boolean {
  if (ctx.store.has(get.id) || ctx.fills.get(key) || ctx.store.isFull()) return false;
  // A copy another worker stored: the claim under the blob's own name finds it (and the
  // routes serve it); another claim needs a look first.
  if (!ctx.store.claimsInPlace(get.id, key) && ctx.store.storedElsewhere(get.id)) return false;
  const id = newId();
  let fill: Fill | undefined;
  try {
    fill = ctx.fills.lead(key, immutableFill(ctx, originSource(ctx, get.kind, get.digest), get.digest, forwardWith(id)), { leader: (outcome, led) => told(outcome, led, id), leaderRequest });
  } catch {
    return false; // the disk refuses: the routes pass it through
  }
  return fill !== undefined; // undefined: another worker fills it, and the routes follow its fill
}

/** Answers the request that led `fill` (whose id is `id`) from its outcome. */
function answerOutcome(ctx: CacheContext, req: IncomingMessage, res: ServerResponse, get: PlainBlobGet, fill: Fill, outcome: FillOutcome, toRoutes: () => void, id: string): void {
  try {
    if (outcome.error) return failed(ctx, req, res, get, fill, outcome.error, toRoutes, id);
    ctx.metrics.miss(get.kind);
    send(ctx, res, get, fill, outcome.head, outcome.body);
  } catch (err) {
    answerError(ctx, req, res, err, id);
  }
}

/** The fill failed before an answer started: a passthrough when the disk refused it, else the error. */
function failed(ctx: CacheContext, req: IncomingMessage, res: ServerResponse, get: PlainBlobGet, fill: Fill, err: Error, toRoutes: () => void, id: string): void {
  if (err instanceof StorageError) {
    markFillRefused(req, fill.takeUnkept());
    return toRoutes(); // the route passes it through, and counts it
  }
  ctx.metrics.miss(get.kind);
  answerError(ctx, req, res, err, id);
}

/**
 * The fields serveFill and sendBody answer a plain GET of a fill with, in the same order, as
 * a flat list (as fast-hit.ts does: no object built per answer).
 */
function missHeaders(head: FillHead, size: number | undefined): string[] {
  const headers: string[] = [];
  for (const name in head.headers) {
    const value = head.headers[name]!;
    if (typeof value === 'string') headers.push(name, value);
    else for (const line of value) headers.push(name, line); // Set-Cookie's lines (AnswerFields)
  }
  headers.push('x-cache', 'MISS');
  if (head.headers.age === undefined) headers.push('age', '0');
  if (head.status === 200) headers.push('accept-ranges', 'bytes');
  if (size !== undefined) headers.push('content-length', String(size));
  if (lacksType(head.status, head.headers)) headers.push('content-type', UNTYPED_BODY);
  return headers;
}

/** What serveFill and sendBody answer to a plain GET of a fill. */
function send(ctx: CacheContext, res: ServerResponse, get: PlainBlobGet, fill: Fill, head: FillHead, body: Buffer | undefined): void {
  const size = body ? body.length : head.size;
  const kind = get.kind;
  // Bytes are counted as handed to the socket, as serve.ts counts them: a whole body at once
  // (as a small hit, fast-hit.ts), unless its client went while the fill ran, a streamed one
  // chunk by chunk (what went out of one cut short).
  if (body && body.length > 0 && !res.destroyed) ctx.metrics.served(kind, body.length);
  res.writeHead(head.status, missHeaders(head, size));
  if (body) return void res.end(body);
  void sendFill(res, fill, 0, size === undefined ? Infinity : size - 1, (n) => ctx.metrics.served(kind, n));
}

/** The cache's error answer to the request whose id is `reqId` (server.ts's error handler gives the same). */
function answerError(ctx: CacheContext, req: IncomingMessage, res: ServerResponse, err: unknown, reqId: string): void {
  const fe = requestError(err);
  ctx.metrics.error(fe.code, fe.status);
  if (isServerFault(fe)) ctx.log.error({ reqId, ...failureFields(fe, req) }, 'request failed');
  if (res.headersSent) return void res.destroy();
  const json = JSON.stringify(errorAnswer(fe, reqId));
  res.writeHead(fe.status, { 'content-type': 'application/json; charset=utf-8', 'x-cache': 'MISS', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(json)) });
  res.end(json);
}
