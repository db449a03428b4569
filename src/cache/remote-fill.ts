// Following a fill that another worker leads (multi-process cache, cluster/protocol.ts).
// The leader answers GET /-/fill on its private Unix socket with a line of JSON per
// event: the head and the temp file it writes, each new length, then the end (with the
// body itself for small fills, which have no file) or the error. The follower reads the
// growing file itself, once, into its own windows, which its clients take as the leader's
// clients do (fill-cursor.ts): no byte is relayed.
import { rm, type FileHandle } from 'node:fs/promises';
import { openIfInode } from '../open-if-inode.js';
import { createServer, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Pool } from 'undici';
import { errorMessage, FleetError, NotFoundError, UpstreamError } from '../errors.js';
import type { CacheContext } from './context.js';
import { StorageError } from './disk-store.js';
import { Fill, type TempFile } from './fill.js';
import { readUntilClosed } from './fill-cursor.js';
import { FillProgress, type FillHead } from './fill-progress.js';

type FillEvent =
  /** First, at once: the leader is there (its answer's headers go out with it). */
  | { readonly following: true }
  /** Instead of the head: the fill keeps its body in memory only, so there is no file to follow. */
  | { readonly unfollowable: true }
  | { readonly head: FillHead; readonly file: TempFile | null }
  | { readonly w: number }
  | { readonly end: number; readonly body?: string }
  | FailedEvent;

/** The fill failed: its error, told so that a follower's clients get the same answer (a 504 for a timeout, not a 502). */
interface FailedEvent {
  readonly error: string;
  readonly storage?: true;
  readonly timeout?: true;
  readonly upstreamStatus?: number;
}

function failedEvent(err: Error): FailedEvent {
  if (err instanceof StorageError) return { error: err.message, storage: true };
  const fe = err instanceof FleetError ? err : undefined;
  const status = err instanceof UpstreamError ? err.upstreamStatus : undefined;
  return {
    error: err.message,
    ...(fe?.code === 'FC_ERR_UPSTREAM_TIMEOUT' ? { timeout: true as const } : {}),
    ...(status === undefined ? {} : { upstreamStatus: status }),
  };
}

function failure(e: FailedEvent): Error {
  if (e.storage) return new StorageError(e.error);
  return new UpstreamError(e.error, { ...(e.timeout ? { timeout: true } : {}), ...(e.upstreamStatus !== undefined ? { status: e.upstreamStatus } : {}) });
}

const KEY_HEADER = 'x-fleetcache-fill-key';
/** Asks for the fill only if it has its whole body (ended, its commit under way): see Fills.findReceived. */
const WHOLE_HEADER = 'x-fleetcache-fill-whole';
/**
 * On a 404 to a question for a whole body: the worker holds the key's claim without one. A
 * field, not the body: a follower reads no 404's body (every cross-worker miss asks every
 * other worker, and all but one answer 404).
 */
const CLAIM_HOLDER_HEADER = 'x-fleetcache-fill-claim-holder';

/** Marks a request that came in on the private socket (a symbol no client can send). */
const INTERNAL = Symbol('fleetcache.internal');

function isInternal(req: FastifyRequest): boolean {
  return (req.raw as { [INTERNAL]?: boolean })[INTERNAL] === true;
}

/** Raised by RemoteFill.head when the leader has no such fill any more (it just ended), or is gone. */
export class FillGoneError extends Error {}

/**
 * Raised by RemoteFill.head when the leader had the fill but its file was gone before the
 * follower could open it: renamed into place by its commit (or removed, a failed one).
 */
export class FillFileGoneError extends FillGoneError {}

/**
 * Raised by RemoteFill.head when the leader's fill cannot be followed (it keeps its body
 * in memory only, or the leader does not answer in time): the follower passes its request
 * through, and the claim, still the leader's, stays.
 */
export class FillUnfollowableError extends FillGoneError {}

/**
 * Raised by RemoteFill.head, asked for a whole fill only, when the worker holding the key's
 * claim has not its whole body (or will keep none): no other worker can have it.
 */
export class FillNotWholeError extends FillGoneError {}

/** How long a leader may take to say it is there: it answers at once unless stuck. */
const FOLLOW_ANSWER_MS = 5000;

// ---- leader side ----

async function* fillEvents(fill: Fill, res: ServerResponse): AsyncGenerator<string> {
  const line = (e: FillEvent): string => JSON.stringify(e) + '\n';
  // Before upstream's head, which may take as long as the upstream timeout allows.
  yield line({ following: true });
  let head: FillHead;
  try {
    head = await fill.head;
  } catch (err) {
    // The leader's disk refused the fill: followers pass their requests through, as it does.
    yield line(failedEvent(err as Error));
    return;
  }
  // The disk began refusing writes after this follower came (decided with the head): nothing to follow.
  if (fill.memoryOnly) return yield line({ unfollowable: true });
  // A follower is one of the fill's readers while it is connected: a fill not kept goes on
  // for it (see Fill.unread). Not until this generator ends: one waiting for a stalled
  // fill's progress would not end when the follower leaves.
  if (fill.streamed && !res.destroyed) readUntilClosed(fill, res);
  yield line({ head, file: fill.tempFile ?? null });
  let sent = -1;
  for (;;) {
    if (fill.error) return yield line(failedEvent(fill.error));
    // The disk failed mid-fill: the rest is in the leader's memory only, out of a follower's reach.
    if (fill.memoryOnly) return yield line({ error: 'the fill followed stopped writing its file (its disk failed)' });
    if (fill.ended) return yield line({ end: fill.written, ...(fill.body ? { body: fill.body.toString('base64') } : {}) });
    if (fill.written !== sent) {
      yield line({ w: (sent = fill.written) });
      continue; // the fill may have ended while this line waited to be read: look again before sleeping
    }
    await fill.progress();
  }
}

/**
 * Listens on this worker's private socket, where other workers follow its fills: GET
 * /-/fill gives the events of a fill this worker leads, and is answered only there.
 */
export function serveFillEvents(app: FastifyInstance, ctx: CacheContext, socket: string): void {
  app.get('/-/fill', { logLevel: 'silent' }, async (req, reply) => {
    const encoded = req.headers[KEY_HEADER];
    if (!isInternal(req) || typeof encoded !== 'string') throw new NotFoundError(`no route for GET /-/fill`);
    const key = Buffer.from(encoded, 'base64url').toString();
    // The fill to join, else the one holding the claim that sent the follower here (one no
    // longer joined: its disk failed mid-way): its claim must not be taken for an orphan's.
    // Asked only for a whole body, the fill that has it and keeps it (no claim is at stake).
    const wholeOnly = req.headers[WHOLE_HEADER] !== undefined;
    const fill = wholeOnly ? ctx.fills.received(key) : ctx.fills.get(key) ?? ctx.fills.claimHolder(key);
    // Answered, not thrown: another worker's question is no error of this cache's (fleetcache_cache_errors_total).
    // Holding the key's claim without a whole body to give, this worker says so: no other can have one.
    if (!(fill instanceof Fill) || fill.error) {
      if (wholeOnly && ctx.fills.claimHolder(key)) reply.header(CLAIM_HOLDER_HEADER, '1');
      return reply.code(404).send({ fill: false });
    }
    // One streamed from memory (its worker's disk refuses writes, or failed mid-fill) cannot be followed through its file.
    if (fill.memoryOnly) return reply.code(409).send({ followable: false });
    return reply.type('application/x-ndjson').send(Readable.from(fillEvents(fill, reply.raw)));
  });
  // Its requests are marked and handed to the same app.
  const internal = createServer((req, res) => {
    (req as { [INTERNAL]?: boolean })[INTERNAL] = true;
    app.server.emit('request', req, res);
  });
  app.addHook('onReady', async () => {
    await rm(socket, { force: true });
    // Its own (exclusive): through node's cluster, the primary would accept each connection and pass it on.
    await new Promise<void>((resolve, reject) => internal.once('error', reject).listen({ path: socket, exclusive: true }, resolve));
    // Later (a failed accept: EMFILE), followers find no answer and pass their requests through.
    internal.on('error', (err) => ctx.log.error({ err: err.message, socket }, 'the socket where other workers follow fills failed'));
  });
  app.addHook('onClose', async () => {
    internal.closeAllConnections();
    await new Promise<void>((resolve) => internal.close(() => resolve()));
  });
}

// ---- follower side ----

/**
 * Opens the temp file a leader named, or throws FillFileGoneError when the fill ended
 * before: its file renamed into place (or removed), and its path, a claim's, perhaps
 * another fill's file since (see TempFile), whose bytes must never be served as this one's.
 */
async function openTempFile(file: TempFile): Promise<FileHandle> {
  const fh = await openIfInode(file.path, 'r', file.ino).catch(() => {
    throw new FillFileGoneError('the fill ended before its file was opened');
  });
  if (!fh) throw new FillFileGoneError('the fill ended before its file was opened (its path is another fill\'s file now)');
  return fh;
}

/** One pool per leader socket (a connection per followed fill), for the life of the process. */
const pools = new Map<string, Pool>();

function poolFor(socket: string): Pool {
  let pool = pools.get(socket);
  if (!pool) {
    pool = new Pool('http://localhost', { socketPath: socket, bodyTimeout: 0, headersTimeout: FOLLOW_ANSWER_MS });
    pools.set(socket, pool);
  }
  return pool;
}

export async function closeFollowerPools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.destroy()));
}

export class RemoteFill extends FillProgress {
  readonly done: Promise<void>;
  /** Stops following (the leader's events), once they come. */
  #stop: (() => void) | undefined;
  /** Aborts the question to the leader, answered or not (see abandon). */
  readonly #abort = new AbortController();

  /** `wholeOnly`: follows the fill only if it has its whole body already (else head fails with FillGoneError). */
  constructor(socket: string, key: string, wholeOnly = false) {
    super();
    this.done = this.#follow(socket, key, wholeOnly).finally(() => this.release());
  }

  /** Not followed after all: the question is dropped, its answer not waited for (one stuck gives none until FOLLOW_ANSWER_MS). */
  abandon(): void {
    this.#abort.abort();
  }

  /** With no local reader left, the leader's fill is not followed further (its own readers, if any, go on). */
  protected override unread(): void {
    this.whenUnread(() => this.#stop?.());
  }

  /**
   * Reads the bytes the leader wrote since the last event once, for every local reader:
   * they take them from memory as the leader's own readers do, instead of each reading
   * the file.
   */
  async #readAhead(upTo: number): Promise<void> {
    if (this.file) await this.rememberFrom(this.file, upTo);
  }

  async #follow(socket: string, key: string, wholeOnly: boolean): Promise<void> {
    let headSeen = false;
    const headers = { [KEY_HEADER]: Buffer.from(key).toString('base64url'), ...(wholeOnly ? { [WHOLE_HEADER]: '1' } : {}) };
    try {
      const res = await poolFor(socket).request({ path: '/-/fill', method: 'GET', headers, signal: this.#abort.signal })
        .catch((err: NodeJS.ErrnoException) => {
          // No one listens: dead, or being replaced. Anything else (no answer in time): alive, its claim kept.
          if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') throw new FillGoneError(`the worker is unreachable (${err.message})`);
          throw new FillUnfollowableError(`the worker leading this fill does not answer (${err.message})`);
        });
      if (res.statusCode === 409) {
        await res.body.dump();
        throw new FillUnfollowableError('the worker leading this fill keeps it in memory only');
      }
      if (res.statusCode === 404) {
        await res.body.dump();
        if (wholeOnly && res.headers[CLAIM_HOLDER_HEADER] !== undefined) throw new FillNotWholeError("the worker holding this fill's claim has not its whole body");
        throw new FillGoneError('the fill ended before it could be followed');
      }
      if (res.statusCode !== 200) throw new UpstreamError(`following a fill: worker answered HTTP ${res.statusCode}`);
      this.#stop = () => res.body.destroy(new UpstreamError('every reader of the followed fill went away'));
      let rest = '';
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        rest += chunk.toString();
        let nl: number;
        while ((nl = rest.indexOf('\n')) >= 0) {
          const e = JSON.parse(rest.slice(0, nl)) as FillEvent;
          rest = rest.slice(nl + 1);
          if ('following' in e) continue;
          if ('unfollowable' in e) throw new FillUnfollowableError('the worker leading this fill keeps it in memory only');
          if ('head' in e) {
            // Opened before the leader can rename it: the descriptor outlives the rename.
            if (e.file) this.useFile(await openTempFile(e.file));
            headSeen = true;
            this.resolveHead(e.head);
          } else if ('w' in e) {
            await this.#readAhead(e.w);
            this.advance(e.w);
          } else if ('end' in e) {
            await this.#readAhead(e.end);
            this.advance(e.end, false);
            this.finish(e.body === undefined ? undefined : Buffer.from(e.body, 'base64'));
          } else {
            throw failure(e);
          }
        }
      }
      if (!this.ended) throw new UpstreamError('the worker leading this fill went away');
      this.forgetRecent();
    } catch (err) {
      if (this.ended) return; // the whole body is here; what the connection does next does not matter
      const known = err instanceof FillGoneError || err instanceof UpstreamError || err instanceof StorageError;
      const e = known ? err : new UpstreamError(errorMessage(err), { cause: err });
      if (!headSeen) this.rejectHead(e);
      this.fail(e);
    }
  }
}
