// PUT on the namespace: the body is streamed to upstream and, at the same time, into a
// temp file (hashing as it goes, never buffering). Once upstream accepted it (2xx) the
// cache keeps it too, when upstream's answer says a GET of it may be kept by a shared cache
// (Cache-Control present, neither private nor no-store: an internal asset, or any object of
// an origin whose reads need a token, is only forwarded); /cas only when the digest it
// computed itself matches the path; names only when the answer carries an ETag to
// revalidate against later.
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FleetError, isNoRoom } from '../errors.js';
import { missingToken } from '../http/auth.js';
import { REQUEST_ID_HEADER } from '../http/request-id.js';
import { closeUnreadBody } from '../http/unread-body.js';
import { uploadAborted } from '../store/blob-store.js';
import { parseDigest, type Digest } from '../store/digest.js';
import { announcedLength } from './answer-handler.js';
import { isPrivate, type CacheContext } from './context.js';
import { casHeaders, casId, httpId, type EntryMeta, type Reservation } from './disk-store.js';
import { BROWSER_HEADERS, namePath } from './namespace.js';
import type { Kind } from './metrics.js';
import { endToEnd, pickHeaders, type HeaderMap } from './upstream.js';
import { loggedPath } from '../redact-url.js';
import { writeFully } from '../write-fully.js';

// x-fleetcache-plain-size: a base's (push states it; the origin records it for later pushes' gunzip bound)
const FORWARD = ['content-type', 'content-length', 'content-encoding', 'content-disposition', 'if-match', 'if-none-match', 'x-fleetcache-visibility', 'x-fleetcache-digest', 'x-fleetcache-plain-size'];

/** What a Tee does with the copy it writes. */
interface TeeCopy {
  /** The temp file the copy goes to. */
  readonly path: string;
  readonly fh: FileHandle;
  /** The most it writes: past it (a body of unknown length larger than the cache), the copy stops. */
  readonly maxSize: number;
  /** Told the bytes of each write done (to settle the room reserved for them). */
  readonly written: (bytes: number) => void;
  /** Told a write's failure; the copy stops. */
  readonly failed: (err: unknown) => void;
}

/**
 * Passes chunks on unchanged while hashing them and writing them to a temp file; a disk error
 * only stops the copy. The copy is opened (`open`: room taken, temp file made) once the
 * body's first bytes come, or its end, and never after `stop`.
 */
class Tee extends Transform {
  readonly hash: Hash;
  size = 0;
  storing = true;
  /** Resolves once the body's first bytes, or its end, came (or the copy was stopped). */
  readonly started: Promise<void>;
  readonly #start: () => void;
  readonly #open: () => Promise<TeeCopy | undefined>;
  #copy: Promise<TeeCopy | undefined> | undefined;

  constructor(algo: string, open: () => Promise<TeeCopy | undefined>) {
    super();
    this.hash = createHash(algo);
    this.#open = open;
    let start!: () => void;
    this.started = new Promise((resolve) => (start = resolve));
    this.#start = start;
  }

  /** The copy: opened now unless it was, or the tee stopped storing (then none). */
  #opened(): Promise<TeeCopy | undefined> {
    this.#start();
    this.#copy ??= this.storing ? this.#open() : Promise.resolve(undefined);
    return this.#copy;
  }

  /** Stops the copy (no write starts after it, none opens it); resolves with it, once opened, if it was. */
  stop(): Promise<TeeCopy | undefined> {
    this.storing = false;
    return this.#opened();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    const pos = this.size;
    this.size += chunk.length;
    void this.#opened().then((copy) => {
      if (this.size > (copy?.maxSize ?? 0)) this.storing = false; // not kept: not written either
      if (!this.storing || !copy) return cb(null, chunk);
      writeFully(copy.fh, chunk, pos).then(
        () => {
          copy.written(chunk.length);
          cb(null, chunk);
        },
        (err: unknown) => {
          // Stopped meanwhile, its file closed between two writes of a chunk the disk took
          // part of: that failure says nothing of the disk.
          if (this.storing) copy.failed(err);
          this.storing = false;
          cb(null, chunk);
        },
      );
    });
  }

  /** An empty body is copied too (an empty file). */
  override _flush(cb: TransformCallback): void {
    void this.#opened().then(() => cb());
  }
}

/**
 * Resolves true once `started` or `ended` did, false if neither did within `ms`: no timer is
 * left behind either way.
 */
async function startsWithin(ms: number, started: Promise<unknown>, ended: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([started.then(() => true), ended.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function forwardPut(ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: Kind, upath: string, firstBytesMs: number, digest?: Digest): Promise<void> {
  const headers: HeaderMap = {};
  for (const name of FORWARD) {
    const v = req.headers[name];
    if (typeof v === 'string') headers[name] = v;
  }
  // Every write needs the client's own token (a cache adds none: it would write for whoever
  // reaches it). Refused here, before a byte goes upstream: an upstream that refuses a
  // chunked body early cuts it, and the client got a 502 instead of this 401.
  const auth = req.headers.authorization;
  if (!auth) throw missingToken();
  headers.authorization = auth;
  // as a miss's GET does (forwardHeaders): upstream's log line and error answer name this request's id
  headers[REQUEST_ID_HEADER] = req.id;

  // Room for a body of declared length is taken before a byte of it is written: one larger
  // than the cache (reserve refuses it), or than the disk has free, is only forwarded.
  // Written regardless, it filled the disk past the budget, and a full disk put every fill of
  // the cache in a cool-down. Nothing is evicted for it: the cache cannot tell a token upstream
  // will refuse, and any client with "Authorization: Bearer x" and a Content-Length the size
  // of the cache emptied it (upstream's 403 came after the eviction). Not before the body's
  // first bytes come either: upstream sees the request only with them (undici sends its head
  // with the body's first chunk), and a client that announced a body and sent none held the
  // room it named, whatever its token, until upstream's head timeout; fills evicted for it.
  const declared = announcedLength(req.headers);
  let reservation: Reservation | undefined;
  // A copy that finds no room (a body of unknown length: nothing reserved) is only forwarded,
  // as one reserve refused: no storage failure, whose cool-down would stop every fill.
  const failed = (err: unknown): void => {
    if (!isNoRoom(err)) ctx.store.storageFailure(err, 'upload-copy');
  };
  const open = async (): Promise<TeeCopy | undefined> => {
    try {
      reservation = declared !== undefined ? await ctx.store.reserve(declared, { evict: false }) : ctx.store.holdAsWritten();
      return { ...(await ctx.store.createTemp()), maxSize: declared ?? ctx.store.maxSize, written: (bytes) => reservation?.written(bytes), failed };
    } catch {
      return undefined; // refused (logged as the store's failure when it is one): forwarded only
    }
  };
  const tee = new Tee(digest?.algo ?? 'sha256', open);
  // The client's body failed (its client gone, or cut, midway): the request's own stream
  // errs before the tee (destroyed first when upstream's request failed, and that one then).
  let clientFailure: unknown;
  req.raw.once('error', (err) => {
    if (!tee.destroyed) clientFailure = err;
  });
  const uploaded = pipeline(req.raw, tee).then(() => true, () => false);
  // Nor is upstream asked before them: the request would wait for them on one of the
  // connections to upstream (upstreamConnections), and a few hundred clients that sent
  // heads only, with any token, took every one, each until upstream's head timeout: every
  // miss of the cache waited meanwhile. (A client gone before them fails the request at once.)
  // They must come within the head's own limit (clientHeaderTimeout), as upstream would have
  // them: else a client that sent a head only held its connection, and this request, until
  // the idle limit (minutes). The 408 closes the connection, its body unread (the error handler).
  let committed = false;
  try {
    if (!(await startsWithin(firstBytesMs, tee.started, uploaded))) {
      throw new FleetError('FC_ERR_REQUEST_TIMEOUT', `the body of the PUT did not start within ${firstBytesMs} ms of its head (clientHeaderTimeout)`);
    }
    // Its client gone already (before the first bytes): upstream is not asked, only to fail
    // at once on the destroyed body, after it took a connection to upstream.
    if (clientFailure !== undefined || (req.raw.destroyed && !req.raw.complete)) throw uploadAborted(clientFailure);
    const res = await ctx.upstream.request(upath, { method: 'PUT', headers, body: tee }).catch((err: unknown) => {
      // failed for the body its client cut (before it started, or midway), not for upstream's
      // fault: else answered 502, logged at error and counted as upstream's failure
      throw clientFailure === undefined ? err : uploadAborted(clientFailure);
    });
    const accepted = res.statusCode >= 200 && res.statusCode < 300;
    if (accepted) {
      ctx.metrics.uploaded(kind, tee.size); // upstream answers once it has the whole body
      if ((await uploaded) && tee.storing && isShareable(res.headers)) {
        const copy = await tee.stop();
        if (copy) committed = await keep(ctx, kind, upath, headers, res.headers, tee, copy, digest);
      }
    } else if (closeUnreadBody(req.raw, reply)) {
      // Upstream refused before reading the whole body: it is not read further either.
      tee.destroy();
    }
    reply.code(res.statusCode).headers(endToEnd(res.headers)).header('x-cache', 'MISS');
    reply.send(res.body);
  } finally {
    // The client's body may still be flowing into the tee (upstream failed before reading
    // it): no write may start on the file being closed, whose "file closed" error would be
    // taken for the disk's. A write already started is waited for by close.
    const copy = await tee.stop();
    reservation?.end(); // written by now, or never to be
    if (copy) {
      await copy.fh.close().catch(() => undefined);
      if (!committed) await ctx.store.discardTemp(copy.path);
    }
  }
}

/** Upstream's answer to a PUT tells how a GET of the object may be cached: kept only when it allows a shared cache to. */
function isShareable(resHeaders: Record<string, string | string[] | undefined>): boolean {
  return resHeaders['cache-control'] !== undefined && !isPrivate(resHeaders);
}

async function keep(
  ctx: CacheContext, kind: Kind, upath: string, sent: HeaderMap, resHeaders: Record<string, string | string[] | undefined>, tee: Tee,
  temp: { path: string; fh: FileHandle }, digest?: Digest,
): Promise<boolean> {
  let id: string;
  let meta: EntryMeta;
  const now = Date.now();
  if (digest) {
    const actual = tee.hash.digest('hex');
    if (actual !== digest.hex) {
      ctx.log.error({ url: loggedPath(upath), actual }, 'upstream accepted a PUT whose body does not match its digest; not kept');
      return false;
    }
    id = casId(digest);
    meta = { key: `/cas/${digest.algo}/${digest.hex}`, status: 200, headers: casHeaders(digest), size: tee.size, storedAt: now };
  } else {
    const etag = resHeaders.etag;
    if (typeof etag !== 'string') return false;
    const key = `GET ${upath}`;
    id = httpId(key);
    // What a GET from upstream would answer: the type the upload declared, upstream's caching headers.
    const headers: HeaderMap = { 'content-type': sent['content-type'] ?? 'application/octet-stream', etag, 'cache-control': String(resHeaders['cache-control']), ...pickHeaders(resHeaders, BROWSER_HEADERS) };
    if (sent['content-disposition']) headers['content-disposition'] = sent['content-disposition'];
    meta = { key, status: 200, headers, size: tee.size, storedAt: now };
  }
  try {
    // Never 'larger-than-cache': the copy stops past the declared size reserve accepted, or past the cache's size.
    const outcome = await ctx.store.commit(id, temp, meta);
    ctx.log.debug({ kind, url: loggedPath(upath), size: tee.size, outcome }, 'kept uploaded object');
    return true;
  } catch (err) {
    ctx.store.storageFailure(err, 'commit');
    return false;
  }
}

/** `firstBytesMs`: how long after its head a PUT's body may take to start (clientHeaderTimeout). */
export function registerPutRoutes(app: FastifyInstance, ctx: CacheContext, firstBytesMs: number): void {
  app.put<{ Params: { algo: string; hex: string } }>('/cas/:algo/:hex', async (req, reply) => {
    const d = parseDigest(req.params.algo, req.params.hex);
    await ctx.uploads.track(forwardPut(ctx, req, reply, 'cas', `/cas/${d.algo}/${d.hex}`, firstBytesMs, d));
    return reply;
  });
  for (const kind of ['artifacts', 'projects'] as const) {
    app.put(`/${kind}/*`, async (req, reply) => {
      await ctx.uploads.track(forwardPut(ctx, req, reply, kind, namePath(req.url), firstBytesMs));
      return reply;
    });
  }
}
