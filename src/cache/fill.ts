// Exactly-once fills. The first miss for a key streams the upstream body into a temp
// file and the last 16 MiB of it into windows in memory; every waiter (the first, late
// joiners, Range requests) takes the windows, or reads the growing file through a shared
// descriptor when further behind, woken on each write (fill-cursor.ts). The entry is
// committed (see DiskStore.commit) only once complete and, for /cas, verified. If upstream
// fails, every waiter's answer is cut (never a clean end) and nothing is kept. Waiters
// hold back the last byte until the fill has ended, so no client ever sees a
// complete-looking body of a failed fill. A disk that fails mid-fill (full) does not fail
// the fill: it goes on from its windows (readers behind them read what the file holds, and
// are cut past it), and keeps nothing. A fill that keeps nothing (an object larger than the
// cache, a private answer) stops fetching once its last reader has gone. What readers see
// of a fill (windows, wake-ups, reader counts) is FillProgress, in fill-progress.ts.
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { openIfInode } from '../open-if-inode.js';
import { DigestMismatchError, failedRequest, UpstreamError, type FailedRequest } from '../errors.js';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { formatDigest, type Digest } from '../store/digest.js';
import { isCasId, SMALL_MAX, StorageError, type DiskStore, type EntryMeta, type FillClaim, type Reservation } from './disk-store.js';
import { failureFields } from './serve.js';
import { newRequestId } from '../http/request-id.js';
import { requestError } from '../http/errors.js';
import type { AnswerFields } from './upstream.js';
import { announcedLength, endsWithConnection, receivedBefore, type AnswerHead, type UpstreamAnswer } from './answer-handler.js';
import { FillProgress, type FillHead } from './fill-progress.js';

export interface FillDecision {
  readonly status: number;
  /** Headers sent to every waiter. */
  readonly headers: AnswerFields;
  /** What to commit with the body, or undefined when the response must not be kept. */
  readonly meta?: Omit<EntryMeta, 'size' | 'storedAt'>;
}


/**
 * A large fill's temp file, which the workers that follow the fill open by its path
 * (remote-fill.ts). The path alone does not name one file: a claim beside an entry (a
 * name's) is the path of every fill of its key in turn, and by the time a follower opens
 * it the fill may have been committed and the key claimed anew; the inode tells.
 */
export interface TempFile {
  readonly path: string;
  readonly ino: number;
}

export interface FillSpec {
  /** Store id to commit under. */
  readonly id: string;
  /**
   * Asks upstream, gathering a body of at most `gatherUpTo` bytes whole (Upstream.fetch);
   * returns a promise and never throws synchronously (an async function).
   */
  readonly request: (gatherUpTo: number) => Promise<UpstreamAnswer>;
  readonly decide: (res: AnswerHead) => FillDecision;
  /** /cas fills: the digest the body must hash to. */
  readonly verify?: Digest;
  /**
   * /cas fills: the request upstream was asked (Upstream.namedGet), which a body that does
   * not hash to `verify` names in the cache's log: which upstream sent the wrong bytes
   * (after a redirect, the target's URL is named instead).
   */
  readonly upstreamRequest?: () => FailedRequest;
  /** Called once with the number of bytes received from upstream. */
  readonly onUpstreamBytes?: (n: number) => void;
}

/**
 * What the request that started a fill is told, once (fast-miss.ts): the head of a large
 * body (which it streams from the fill), the whole of a small one once verified, or the
 * failure that came first.
 */
export type FillOutcome = { readonly head: FillHead; readonly body?: Buffer; readonly error?: undefined } | { readonly error: Error };

/** What names the request of a fill's leader in a log line (an IncomingMessage is one). */
export interface LeaderRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
}

export interface FillHooks {
  /** The file of the fill when it was claimed (Fills.lead); else a temp file is made. */
  readonly claim?: FillClaim | undefined;
  /** Told the outcome without a promise per step: the cheapest way to answer a cold small miss. */
  readonly leader?: ((outcome: FillOutcome, fill: Fill) => void) | undefined;
  /** The request `leader` answers: named in the log line when answering it fails. */
  readonly leaderRequest?: LeaderRequest | undefined;
  /** Called once the fill has ended (committed, dropped or failed), before `done` resolves. */
  readonly ended?: (fill: Fill) => void;
  /**
   * The request that starts the fill asks for part of the body (Range). A body the cache
   * will not keep (larger than the cache) is then not fetched whole for it: the fill is
   * refused (StorageError) and the request asks upstream for its part.
   */
  readonly partial?: boolean | undefined;
  /** Called when the fill fails after its answer began (upstream died or stalled mid-body): its readers see the answer cut. */
  readonly cut?: () => void;
}

/**
 * The message a fill's readers are told of a failure not upstream's nor the disk's: a
 * mismatch without the upstream URL it names for the log (the cache's clients learn nothing
 * of the network behind it, as upstream.ts's withoutAddress).
 */
function toldClients(e: Error): string {
  return e instanceof DigestMismatchError ? new DigestMismatchError(e.expected, e.actual).message : e.message;
}

/** At most this many bytes evicted at a time for a fill whose write found the disk full (see roomStep). */
const ROOM_STEP = 16 * 1024 * 1024;
/** Nor more than this share of the cache's size limit. */
const ROOM_STEP_SHARE = 1 / 8;

export class Fill extends FillProgress {
  /** Resolves when the fill has committed or dropped its body. */
  readonly done: Promise<void>;
  #store: DiskStore;
  #log: Logger;
  #spec: FillSpec;
  #claim: FillClaim | undefined;
  #tempFile: TempFile | undefined;
  /** Upstream's answer to a fill the disk refused before its body was read (see takeUnkept). */
  #refused: UpstreamAnswer | undefined;
  #leader: ((outcome: FillOutcome, fill: Fill) => void) | undefined;
  #leaderRequest: LeaderRequest | undefined;
  #onEnded: ((fill: Fill) => void) | undefined;
  #onCut: (() => void) | undefined;
  #partial: boolean;
  /** Upstream's answer, once its head came. */
  #answer: UpstreamAnswer | undefined;
  /** The body will not be kept: the fill stops once it has no reader left (see unread). */
  #unkept = false;
  /** The room reserved for the body (DiskStore.reserve; holdAsWritten for one of unknown length): told of each write, and of the end. */
  #reservation: Reservation | undefined;

  constructor(store: DiskStore, log: Logger, spec: FillSpec, hooks: FillHooks = {}, unreadGraceMs?: number) {
    super(unreadGraceMs);
    this.#store = store;
    this.#log = log;
    this.#spec = spec;
    this.#claim = hooks.claim;
    this.#leader = hooks.leader;
    this.#leaderRequest = hooks.leaderRequest;
    this.#onEnded = hooks.ended;
    this.#onCut = hooks.cut;
    this.#partial = hooks.partial === true;
    this.done = this.#run();
  }

  /** Tells the leader, once; its failure is not the fill's. */
  #tell(outcome: FillOutcome): void {
    const leader = this.#leader;
    if (!leader) return;
    this.#leader = undefined;
    try {
      leader(outcome, this);
    } catch (err) {
      // As every failed request's log line: the method, the path and a request id (serve.ts).
      const fields = failureFields(requestError(err), this.#leaderRequest ?? {});
      this.#log.error({ id: this.#spec.id, reqId: newRequestId(), ...fields }, 'answering the request that started a fill failed');
    }
  }

  override takeUnkept(): UpstreamAnswer | undefined {
    const res = this.#refused;
    this.#refused = undefined;
    return res;
  }

  /** A body nobody reads and nobody keeps is not fetched further. */
  protected override unread(): void {
    if (!this.#unkept || !this.streamed) return; // a small body is read whole, with no reader counted
    this.whenUnread(() => this.#answer?.body?.destroy(new UpstreamError('every reader of a fill whose body is not kept went away')));
  }

  /**
   * Its answer is to be stored: known from its head on (an answer not kept, an upstream 404
   * say, never is), and given up when the body turns out not to fit (see stopKeeping) or
   * the fill fails.
   */
  get keeps(): boolean {
    return this.headKnown && !this.#unkept && !this.error;
  }

  /**
   * Once ended, only a fill whose answer is kept is joined: one not kept (no-store, a 404)
   * lingers until its cleanup is over, and a request arriving then must go upstream.
   */
  override get joinable(): boolean {
    return super.joinable && (!this.ended || this.keeps);
  }

  /** The file being written (large fills), for workers that follow this fill. */
  get tempFile(): TempFile | undefined {
    return this.#tempFile;
  }

  /**
   * Writes `chunk` at the end of the temp file. When the disk fails (full), the fill goes on
   * from its windows only and keeps nothing (see stopFile): its readers are not cut.
   */
  async #write(fh: FileHandle, chunk: Buffer): Promise<void> {
    const position = this.written;
    let off = 0;
    try {
      while (off < chunk.length) {
        try {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, position + off);
          off += bytesWritten;
        } catch (err) {
          // No room left, where none was reserved (a body of unknown length) or the figure
          // was wrong (another worker's fill took the room at the same moment): the least
          // recently used entries make some, as for a reservation, until there are none left
          // to evict; never for a body no entry will take.
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || this.#unkept) throw err;
          const step = this.#roomStep(position + off, chunk.length - off);
          if ((await this.#store.makeRoom(step)) > 0) continue;
          // Held by bodies being read, or taken by another fill (two workers that reserved at the
          // same moment, a body of unknown length): the cache's own use of the disk, not a failing disk.
          if (this.#store.isHeldByCache(step, this.#reservation?.size)) throw new StorageError(`no space left for the body, ${position + off} bytes into it: the room is held by the cache's own use of the disk (bodies being read, objects kept, other fills in progress)`);
          throw err;
        }
      }
      this.#reservation?.written(chunk.length);
    } catch (err) {
      // A body not kept that finds no room (one grown larger than the cache), or one whose
      // room is held by bodies being read or by the cache's own objects and other fills,
      // says nothing of the disk, nor of the room for the objects kept: no failure, no
      // cool-down. Any other is logged (as an error), and the disk refuses writes for a while.
      if (this.#unkept && (err as NodeJS.ErrnoException).code === 'ENOSPC') {
        this.#log.info({ id: this.#spec.id, at: position }, 'a body not kept filled the disk: its fill goes on from memory');
      } else if (err instanceof StorageError) {
        this.#log.info({ id: this.#spec.id, at: position, reason: err.message }, 'a body that finds no room left on the disk: its fill goes on from memory, not kept');
      } else {
        this.#store.storageFailure(err, 'fill-write');
        this.#log.warn({ id: this.#spec.id, at: position }, 'the disk failed mid-fill: the fill goes on from memory, not kept');
      }
      this.stopFile();
      this.#stopKeeping();
    }
  }

  /**
   * The body, taken to be kept, will not be after all: when every reader left while it was
   * (an endless body of unknown length grown past the cache), it is not fetched further
   * either. Checked only as readers leave (unread), it was fetched to its end, or for ever.
   */
  #stopKeeping(): void {
    if (this.#unkept) return;
    this.#unkept = true;
    if (this.readers === 0) this.unread();
  }

  /**
   * The bytes to evict for a body of unknown length whose write found the disk full, `written`
   * bytes into it, with `pending` bytes of its chunk left: as much again as it has written
   * (a body's evictions add up to about its size, in a few steps), within a share of the
   * size limit, and at least what the chunk needs. One fixed step emptied a small cache for
   * a body a fraction of its size.
   */
  #roomStep(written: number, pending: number): number {
    return Math.max(pending, Math.min(written, ROOM_STEP, Math.floor(this.#store.maxSize * ROOM_STEP_SHARE)));
  }

  /** Bytes of a small body read so far by #readSmall: counted even when it fails midway (they crossed the link). */
  #smallRead = 0;

  /** A small body that came as a stream (a name's answer to its revalidation), whole. */
  async #readSmall(body: AsyncIterable<Buffer>): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of body) {
      chunks.push(chunk);
      this.#smallRead += chunk.length;
    }
    return Buffer.concat(chunks, this.#smallRead);
  }

  async #run(): Promise<void> {
    let tmp: { path: string; fh: FileHandle } | undefined;
    let hash: Hash | undefined;
    let committed = false;
    let bodyRead = false;
    let claimGone = false;
    /** Removes the claim file of a fill that did not commit, once: after that the name may be another fill's claim. */
    const giveUpClaim = (): void => {
      if (!this.#claim || committed || claimGone) return;
      claimGone = true;
      this.#store.dropClaim(this.#claim);
    };
    let counted = false;
    /**
     * Counts the bytes received, once, before any reader hears the fill ended: a client that
     * has its whole body then sees them in /-/stats. `cut`: those undici took of a body cut
     * short (receivedBefore), more than `written` when they never reached the fill.
     */
    const countUpstream = (cut = 0): void => {
      if (counted) return;
      counted = true;
      this.#spec.onUpstreamBytes?.(Math.max(this.written, cut));
    };
    // While the disk refuses writes (cooling down after a failure), a body is still fetched
    // once for every waiter, and not kept: a small one gathered whole, a large one streamed
    // from its windows only, with no file (readers too far behind are cut, and requests
    // that come too late start a fill of their own: see joinable). An object larger than
    // the free space, once evictions made what room they could (see reserve), is passed
    // through to each waiter instead, each at its own pace: no reader of it is ever cut. One
    // larger than the whole cache is still fetched once for all its waiters, through a temp
    // file of its own that nothing keeps (but for a Range request starting it, which asks
    // upstream for its part instead).
    const unkeptOnly = this.#store.isFull();
    try {
      const askedAt = Date.now(); // (FillHead.askedAt)
      const answer = await this.#spec.request(SMALL_MAX);
      this.#answer = answer;
      const decision = this.#spec.decide(answer);
      const size = announcedLength(answer.headers);
      const oversize = size !== undefined && this.#store.exceedsCache(size);
      if (oversize && this.#partial) throw new StorageError(`object of ${size} bytes exceeds the cache size ${this.#store.maxSize}: its range is asked for instead`);
      // Small bodies are gathered in memory and handed out whole once verified: no temp
      // file and no reads while filling; the file is written at commit. A body the request
      // gathered (Upstream.fetch) was announced within SMALL_MAX.
      const small = answer.whole !== undefined || (size !== undefined && size <= SMALL_MAX);
      if (size !== undefined && !unkeptOnly) {
        this.#reservation = await this.#store.reserve(size, { unkept: oversize });
      } else if (!small && !unkeptOnly) {
        this.#reservation = this.#store.holdAsWritten();
      }
      let body: Buffer | undefined;
      if (!small && unkeptOnly) {
        this.streamFromMemory();
      } else if (!small) {
        tmp = this.#claim ? await this.#store.openClaim(this.#claim) : await this.#store.createTemp();
        // Opened again by its name, as followers do: a claim's name is that of every fill of
        // its key in turn (see TempFile), so the file must be the one this fill writes.
        const { ino } = await tmp.fh.stat();
        const reader = await openIfInode(tmp.path, 'r', ino);
        if (!reader) throw new StorageError('the temp file of this fill is no longer its own (its claim was taken for an orphan\'s): nothing is written');
        this.useFile(reader);
        this.#tempFile = { path: tmp.path, ino };
      }
      // A body whose end is the connection's may be a cut one: served, not kept (a blob's digest tells, it is).
      const uncertain = !this.#spec.verify && endsWithConnection(answer.headers);
      this.#unkept = unkeptOnly || oversize || uncertain || decision.meta === undefined;
      const head: FillHead = { status: decision.status, headers: decision.headers, size, verified: this.#spec.verify !== undefined, policy: decision.meta?.policy, askedAt };
      this.resolveHead(head);
      if (!small) this.#tell({ head });
      if (this.#spec.verify) hash = createHash(this.#spec.verify.algo);
      if (small) {
        // Small fills take the body in one piece (no async iteration per chunk) and wake
        // their readers once, at the end.
        bodyRead = true;
        body = answer.whole ?? (await this.#readSmall(answer.body));
        hash?.update(body);
        this.advance(body.length, false);
      } else {
        bodyRead = true;
        for await (const chunk of answer.body as AsyncIterable<Buffer>) {
          hash?.update(chunk);
          // A body of unknown length grown larger than the cache is not kept: its claim goes as
          // the fill ends. (Committed, it was dropped there, and the claim taken for a fill going on.)
          // Known before the chunk is written: a full disk it meets is then no storage failure,
          // and nothing is evicted for it.
          if (this.#store.exceedsCache(this.written + chunk.length)) this.#stopKeeping();
          if (tmp && !this.memoryOnly) await this.#write(tmp.fh, chunk);
          this.remember(chunk);
          this.advance(this.written + chunk.length);
        }
      }
      if (size !== undefined && this.written !== size) {
        throw new UpstreamError(`upstream sent ${this.written} of ${size} bytes`);
      }
      if (hash && this.#spec.verify && decision.status === 200) {
        const actual = hash.digest('hex');
        if (actual !== this.#spec.verify.hex) {
          // The URL that sent the bytes: a redirect's target, not the one asked.
          const sender = answer.redirected === undefined ? this.#spec.upstreamRequest?.() : failedRequest('GET', answer.redirected);
          throw new DigestMismatchError(formatDigest(this.#spec.verify), `${this.#spec.verify.algo}:${actual}`, sender);
        }
      }
      countUpstream();
      const end = (): void => {
        this.finish(body);
        if (body) this.#tell({ head, body });
      };
      const kept = this.#unkept ? undefined : decision.meta;
      // A name or a mirror object replaces what its id held: its readers end once it is
      // stored, so that a client that has the whole answer finds it in whichever worker it
      // asks next (a request that must revalidate would otherwise find neither this fill
      // nor its entry, and pass through without keeping the newer answer; see Fills). A
      // blob is the same whoever stores it: its readers do not wait for its flush to disk.
      const storeFirst = kept !== undefined && !isCasId(this.#spec.id);
      if (!storeFirst) end();
      if (kept) {
        try {
          // Built field by field: a spread of decision.meta cost a cold small miss about 5 µs.
          const { key, status, headers, policy } = kept;
          const written = this.written;
          const storedAt = Date.now();
          const meta: EntryMeta = policy ? { key, status, headers, size: written, storedAt, policy } : { key, status, headers, size: written, storedAt };
          // A body not stored (see CommitOutcome) gives its claim up, as an answer not kept does.
          // A small one is not kept in memory here: its first hit reads it (DiskStore.smallHit).
          if (body) {
            committed = this.#store.commitSmall(this.#spec.id, body, meta, this.#claim, this.#reservation?.size) === 'stored';
          } else {
            committed = (await this.#store.commit(this.#spec.id, tmp!, meta, this.#claim)) === 'stored';
          }
        } finally {
          if (storeFirst) end(); // whole and verified: served, kept or not
        }
      }
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      // Given up before anyone hears of the failure: a request retrying right away claims anew.
      giveUpClaim();
      if (!(e instanceof StorageError) && !(e instanceof UpstreamError)) this.#log.warn({ id: this.#spec.id, err: e.message }, 'fill failed');
      // A body nobody reads emits an error when destroyed or cut: with no listener, the process would die of it.
      const res = this.#answer;
      res?.body?.on('error', () => undefined);
      if (res && e instanceof StorageError && !bodyRead) {
        // Waiters resume (the leader now, the others from the head's rejection) before this macrotask: the first takes it.
        this.#refused = res;
        setImmediate(() => this.takeUnkept()?.body?.destroy());
      } else {
        res?.body?.destroy();
      }
      // Before the head, waiters see the failure itself (a StorageError turns into a passthrough); after it, the fill's.
      const failure = e instanceof UpstreamError || e instanceof StorageError ? e : new UpstreamError(toldClients(e), { cause: e });
      const told = this.headKnown ? failure : e;
      // Before the head the failure is an error answer (fleetcache_cache_errors_total), and so
      // is a small fill's (its readers wait for the whole body); a disk's is no cut (the fill
      // went on from memory). Only the readers of a streamed body see their answer cut.
      if (this.headKnown && this.streamed && !(e instanceof StorageError) && !this.stoppedUnread) this.#onCut?.();
      countUpstream(Math.max(receivedBefore(e), this.#smallRead));
      this.rejectHead(e);
      if (!this.ended) this.fail(failure);
      this.#tell({ error: told });
    } finally {
      try {
        this.#reservation?.end(); // written (a small body at its commit), or never to be
        this.#reservation = undefined;
        giveUpClaim(); // an answer not kept (not 200, private)
        if (tmp) {
          await tmp.fh.close().catch(() => undefined);
          if (!committed && tmp.path !== this.#claim?.path) await this.#store.discardTemp(tmp.path);
        }
        // Once the claim is committed or removed: while the link is there, the claim is this fill's.
        if (this.#claim?.owner) await this.#store.discardTemp(this.#claim.owner);
        // Readers behind go to the file; with none, the windows are theirs until they finish.
        if (!this.memoryOnly) this.forgetRecent();
      } finally {
        // Whatever the cleanup met: the fill is over for the count of fills and the claims.
        this.release();
        this.#onEnded?.(this);
      }
    }
  }
}
