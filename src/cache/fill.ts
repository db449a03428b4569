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
// cache, a private answer) stops fetching once its last reader has gone.
import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { DigestMismatchError, UpstreamError } from '../errors.js';
import { DEFAULT_FILL_MEMORY } from './config.js';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { formatDigest, type Digest } from '../store/digest.js';
import { isCasId, SMALL_MAX, StorageError, type DiskStore, type EntryMeta, type FillClaim } from './disk-store.js';
import { failureFields, newRequestId } from './serve.js';
import { requestError } from '../http/errors.js';
import type { HeaderMap } from './upstream.js';
import { announcedLength, endsWithConnection, type AnswerHead, type UpstreamAnswer } from './answer-handler.js';

export interface FillDecision {
  readonly status: number;
  /** Headers sent to every waiter. */
  readonly headers: HeaderMap;
  /** What to commit with the body, or undefined when the response must not be kept. */
  readonly meta?: Omit<EntryMeta, 'size' | 'storedAt'>;
}

export interface FillHead {
  readonly status: number;
  readonly headers: HeaderMap;
  /** Content-Length when upstream announced it. */
  readonly size: number | undefined;
  /**
   * The body is checked against a digest once complete (/cas): a reader holds back the
   * last byte it sends, of the body or of a range, until the check passed.
   */
  readonly verified: boolean;
  /** A kept mirror answer's RFC 9111 policy (http-cache-semantics' toObject): see mirror.ts's joins. */
  readonly policy: EntryMeta['policy'];
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
  /** Called once with the number of bytes received from upstream. */
  readonly onUpstreamBytes?: (n: number) => void;
}

/**
 * Readers hand bytes on in windows of this size, aligned on multiples of it: a reader at
 * the tail of a fill waits for a whole window (or WINDOW_WAIT_MS) instead of writing each
 * upstream chunk (often 16-64 KiB) to its socket, and every reader takes the window from
 * one shared buffer. In a stampede of 32 readers, per-chunk writes cost 4-5 times the CPU
 * per byte of a cached hit, and a buffer per reader per read made V8 run full collections
 * (external memory pressure) for most of the rest.
 */
export const WINDOW = 256 * 1024;
export const WINDOW_WAIT_MS = 50;
/** The last windows kept in memory, so that readers up to this far behind never touch the file. */
const RECENT_BYTES = 16 * 1024 * 1024;
/**
 * The windows of every fill of this process, against a budget (the cache's `fillMemory`):
 * past it, a fill that makes a window drops its oldest ones first, down to MIN_WINDOWS, and
 * its readers further behind go to the file (those of a fill in memory only are cut). The
 * budget is soft by the MIN_WINDOWS each fill keeps. Without it, hundreds of large fills at
 * once would hold 16 MiB each.
 */
const windows = { bytes: 0, budget: DEFAULT_FILL_MEMORY };
/** Windows a fill keeps whatever the budget: the one being filled and the one before it. */
const MIN_WINDOWS = 2;

/** Sets the budget of this process's fill windows (several caches in one process share it: tests). */
export function setFillMemory(bytes: number): void {
  windows.budget = bytes;
}

/** Bytes of windows the fills of this process hold now. */
export function fillMemoryInUse(): number {
  return windows.bytes;
}

/** The budget of this process's fill windows. */
export function fillMemoryBudget(): number {
  return windows.budget;
}
/**
 * A fill kept in memory only (see Fill) is joined while it has written less than this: a
 * joiner then starts with at least half the windows ahead of it before the first is dropped.
 */
const MEMORY_JOIN_BYTES = RECENT_BYTES / 2;

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
}

/**
 * How long a fill whose body is not kept goes on once its last reader has left, and a
 * worker follows another's fill for no reader (see FillProgress.unread): a request that
 * has just joined it takes its file a moment later.
 */
export const UNREAD_GRACE_MS = 1000;

/** Bytes evicted at a time for a fill whose write found the disk full (see Fill's write). */
const ROOM_STEP = 16 * 1024 * 1024;

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * What serving (fill-cursor.ts) needs of a fill in flight: a Fill of this process, or a
 * RemoteFill (remote-fill.ts) following another worker's through its events.
 */
export interface FillSource {
  readonly head: Promise<FillHead>;
  /** Resolves when the fill has ended (committed, dropped or failed). */
  readonly done: Promise<void>;
  readonly written: number;
  readonly ended: boolean;
  readonly error: Error | undefined;
  /** Bytes a reader may hand out now (the last one waits for the end). */
  readonly readable: number;
  /** See FillHead.verified. */
  readonly verified: boolean;
  /** Nothing was written for WINDOW_WAIT_MS (readers are woken then): waiting for a window is pointless. */
  readonly paused: boolean;
  /**
   * A new reader can start at byte 0: always, but for a fill in memory only that went too
   * far, or whose file stopped (see memoryOnly).
   */
  readonly joinable: boolean;
  /**
   * Streamed from its windows only, from the start (no file: the disk refused writes) or
   * from `fileHolds` on (the disk failed mid-fill).
   */
  readonly memoryOnly: boolean;
  /** The first bytes that its file holds (readers take the rest from the windows). */
  readonly fileHolds: number;
  /** Resolves on the next write, end or failure. */
  progress(): Promise<void>;
  /** Bytes [start, end) still in memory as one buffer, or undefined (the reader goes to the file). */
  recentWindow(start: number, end: number): Buffer | undefined;
  /**
   * Counts the caller as a reader of a large fill until it calls `release`, and returns
   * the growing file, held open meanwhile (one that stopped holds `fileHolds` bytes):
   * undefined for a fill with no file. The windows of a fill in memory only (see
   * memoryOnly) are kept for its readers until the last one is done. Call
   * after `head` resolved; not for a small fill (see `wholeBody`).
   */
  acquireFile(): FileHandle | undefined;
  /**
   * A small fill's whole body (gathered in memory, no file), once ended and verified;
   * undefined for a fill read from its file. Call after `head` resolved.
   */
  wholeBody(): Promise<Buffer> | undefined;
  /** A reader that called `acquireFile` is done. */
  release(): void;
  /**
   * Upstream's answer of a fill the disk refused before its body was read, once: the first
   * waiter passes it through instead of asking upstream again (the others do ask).
   */
  takeUnkept(): UpstreamAnswer | undefined;
}

/**
 * The progress of a fill as its readers see it, shared by a Fill of this process and a
 * RemoteFill following another worker's: the head, the length so far, the end (with the
 * whole body for small fills, which have no file) or the error, and the wake-ups.
 */
export abstract class FillProgress implements FillSource {
  abstract readonly done: Promise<void>;
  // The head, and the promises readers wait on, are made on first use: a fill whose only
  // reader is its leader (told through FillHooks.leader) makes none of them.
  #head: FillHead | undefined;
  #headFailure: Error | undefined;
  #headPromise: Promise<FillHead> | undefined;
  #settleHead: { resolve: (h: FillHead) => void; reject: (e: Error) => void } | undefined;
  #fh: FileHandle | undefined;
  /** Where the file stopped growing, when the disk failed mid-fill (see stopFile). */
  #fileEnd: number | undefined;
  /** Readers stream it (a large fill): from its file, or from its windows only (memoryOnly). */
  #streamed = false;
  #body: Buffer | undefined;
  #refs = 1;
  #written = 0;
  #ended = false;
  #error: Error | undefined;
  #progress: Deferred | undefined;
  /** The last windows written, oldest first; the bytes are copied in as they come (the last one fills up). */
  #recent: { start: number; buf: Buffer }[] = [];
  #paused = false;
  /** Marks a pause and wakes readers waiting for a window (restarted on each write). */
  #pauseTimer: NodeJS.Timeout | undefined;

  get head(): Promise<FillHead> {
    if (!this.#headPromise) {
      if (this.#head) this.#headPromise = Promise.resolve(this.#head);
      else if (this.#headFailure) this.#headPromise = Promise.reject(this.#headFailure);
      else this.#headPromise = new Promise<FillHead>((resolve, reject) => (this.#settleHead = { resolve, reject }));
      this.#headPromise.catch(() => undefined);
    }
    return this.#headPromise;
  }

  get written(): number {
    return this.#written;
  }

  get ended(): boolean {
    return this.#ended;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  /** A small fill's whole body, once ended and verified. */
  get body(): Buffer | undefined {
    return this.#body;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Readers stream it (a large fill), from its file or its windows: not handed a whole body (see wholeBody). */
  get streamed(): boolean {
    return this.#streamed;
  }

  /** A large fill read from its windows (see FillSource.memoryOnly): a reader too far behind them is cut. */
  get memoryOnly(): boolean {
    return this.#streamed && (!this.#fh || this.#fileEnd !== undefined);
  }

  get fileHolds(): number {
    return this.#fh ? (this.#fileEnd ?? this.#written) : 0;
  }

  /** A fill whose file stopped is not joined: a reader of its first bytes would likely be cut past them. */
  get joinable(): boolean {
    return !this.memoryOnly || (this.fileHolds === 0 && this.#written < MEMORY_JOIN_BYTES && (this.#recent[0]?.start ?? 0) === 0);
  }

  get readable(): number {
    return this.#ended ? this.#written : Math.max(0, this.#written - 1);
  }

  /** See FillHead.verified (false until the head is known). */
  get verified(): boolean {
    return this.#head?.verified === true;
  }

  progress(): Promise<void> {
    return (this.#progress ??= deferred()).promise;
  }

  recentWindow(start: number, end: number): Buffer | undefined {
    const first = this.#recent[0];
    if (!first || start < first.start || end > this.#written) return undefined;
    const w = this.#recent[Math.floor((start - first.start) / WINDOW)];
    if (!w || end > w.start + WINDOW) return undefined;
    return w.buf.subarray(start - w.start, end - w.start);
  }

  wholeBody(): Promise<Buffer> | undefined {
    return this.#streamed ? undefined : this.#whole();
  }

  takeUnkept(): UpstreamAnswer | undefined {
    return undefined;
  }

  acquireFile(): FileHandle | undefined {
    this.#refs++;
    return this.#fh;
  }

  release(): void {
    if (--this.#refs > 0) {
      if (this.#refs === 1 && !this.#ended && !this.#error) this.unread();
      return;
    }
    if (this.#fh) void this.#fh.close().catch(() => undefined);
    this.forgetRecent(); // no reader left: the windows of a fill in memory only go too
  }

  /** Readers that hold the fill now (acquireFile without release yet). */
  protected get readers(): number {
    return this.#refs - 1;
  }

  /**
   * Every reader has left while the fill runs. Readers still to come may join it, so a
   * fill stops for want of readers only if none came after UNREAD_GRACE_MS (see whenUnread).
   */
  protected abstract unread(): void;

  /** Calls `stop` if the fill still runs with no reader after UNREAD_GRACE_MS. */
  protected whenUnread(stop: () => void): void {
    setTimeout(() => {
      if (this.readers === 0 && !this.#ended && !this.#error) stop();
    }, UNREAD_GRACE_MS).unref();
  }

  /**
   * Copies `chunk`, the bytes from `written` on, into the recent windows (before `advance`;
   * fills write from the start, so windows are aligned on multiples of WINDOW).
   */
  protected remember(chunk: Buffer): void {
    for (let off = 0; off < chunk.length;) {
      const w = this.#windowAt(this.written + off);
      const at = this.written + off - w.start;
      off += chunk.copy(w.buf, at, off, Math.min(chunk.length, off + WINDOW - at));
    }
  }

  /**
   * Reads bytes [written, upTo) of `file` (the last RECENT_BYTES of them at most) into the
   * recent windows (before `advance`): a follower of another worker's fill reads them once,
   * for all its readers.
   */
  protected async rememberFrom(file: FileHandle, upTo: number): Promise<void> {
    let pos = this.written;
    // A follower that joins a fill long under way skips what the windows would not keep
    // (its readers take it from the file) instead of reading it all to throw it away.
    const keepFrom = upTo - RECENT_BYTES;
    if (keepFrom > pos + WINDOW) {
      this.forgetRecent(); // the windows stay contiguous (recentWindow indexes them)
      pos = keepFrom - (keepFrom % WINDOW);
    }
    while (pos < upTo) {
      const w = this.#windowAt(pos);
      const at = pos - w.start;
      const { bytesRead } = await file.read(w.buf, at, Math.min(upTo - pos, WINDOW - at), pos);
      if (bytesRead === 0) throw new UpstreamError(`the followed fill's file ended at ${pos} of ${upTo} bytes`);
      pos += bytesRead;
    }
  }

  /** The window holding byte `pos`, the last one or a new one after it. */
  #windowAt(pos: number): { start: number; buf: Buffer } {
    let last = this.#recent.at(-1);
    if (!last || pos >= last.start + WINDOW) {
      last = { start: pos - (pos % WINDOW), buf: Buffer.allocUnsafeSlow(WINDOW) };
      this.#recent.push(last);
      windows.bytes += WINDOW;
      const recent = this.#recent;
      while (recent.length * WINDOW > RECENT_BYTES || (windows.bytes > windows.budget && recent.length > MIN_WINDOWS)) {
        recent.shift();
        windows.bytes -= WINDOW;
      }
    }
    return last;
  }

  protected forgetRecent(): void {
    windows.bytes -= this.#recent.length * WINDOW;
    this.#recent = [];
  }

  /** Readers read the file behind this descriptor (large fills). */
  protected useFile(fh: FileHandle): void {
    this.#fh = fh;
    this.#streamed = true;
  }

  /** Readers stream it from its windows only: a large fill with no file (see memoryOnly). */
  protected streamFromMemory(): void {
    this.#streamed = true;
  }

  /** The file holds the bytes written so far and no more: readers take the rest from the windows. */
  protected stopFile(): void {
    this.#fileEnd = this.#written;
  }

  protected get file(): FileHandle | undefined {
    return this.#fh;
  }

  /** Whether the head was told (a failure after it does not change it). */
  protected get headKnown(): boolean {
    return this.#head !== undefined;
  }

  protected resolveHead(head: FillHead): void {
    this.#head = head;
    this.#settleHead?.resolve(head);
    // Its waiters may all be answered without its body (a 304, a 412): with no reader ever
    // counted, no release would start the grace, and a fill not kept would run to its end.
    if (this.#streamed && this.readers === 0) this.unread();
  }

  protected rejectHead(err: Error): void {
    if (this.#head) return;
    this.#headFailure = err;
    this.#settleHead?.reject(err);
  }

  /** The body is `written` bytes long so far; readers are woken unless told not to. */
  protected advance(written: number, wake = true): void {
    this.#written = written;
    if (!wake) return;
    this.#paused = false;
    if (this.#pauseTimer) this.#pauseTimer.refresh();
    else {
      this.#pauseTimer = setTimeout(() => {
        this.#paused = true;
        this.#wake();
      }, WINDOW_WAIT_MS).unref();
    }
    this.#wake();
  }

  protected finish(body?: Buffer): void {
    if (body) this.#body = body;
    this.#ended = true;
    clearTimeout(this.#pauseTimer);
    this.#wake();
  }

  protected fail(err: Error): void {
    this.#error = err;
    clearTimeout(this.#pauseTimer);
    this.#wake();
  }

  async #whole(): Promise<Buffer> {
    while (!this.#ended && !this.#error) await this.progress();
    if (this.#error || !this.#body) throw this.#error ?? new UpstreamError('fill ended without a body');
    return this.#body;
  }

  #wake(): void {
    const d = this.#progress;
    this.#progress = undefined;
    d?.resolve();
  }
}

export class Fill extends FillProgress {
  /** Resolves when the fill has committed or dropped its body. */
  readonly done: Promise<void>;
  #store: DiskStore;
  #log: Logger;
  #spec: FillSpec;
  #claim: FillClaim | undefined;
  #tempPath: string | undefined;
  /** Upstream's answer to a fill the disk refused before its body was read (see takeUnkept). */
  #refused: UpstreamAnswer | undefined;
  #leader: ((outcome: FillOutcome, fill: Fill) => void) | undefined;
  #leaderRequest: LeaderRequest | undefined;
  #onEnded: ((fill: Fill) => void) | undefined;
  #partial: boolean;
  /** Upstream's answer, once its head came. */
  #answer: UpstreamAnswer | undefined;
  /** The body will not be kept: the fill stops once it has no reader left (see unread). */
  #unkept = false;
  /** Of the room reserved for the body (DiskStore.reserve), the bytes not written yet: settled as they are, the rest at the end. */
  #reserved = 0;

  constructor(store: DiskStore, log: Logger, spec: FillSpec, hooks: FillHooks = {}) {
    super();
    this.#store = store;
    this.#log = log;
    this.#spec = spec;
    this.#claim = hooks.claim;
    this.#leader = hooks.leader;
    this.#leaderRequest = hooks.leaderRequest;
    this.#onEnded = hooks.ended;
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

  /** The file being written (large fills), for workers that follow this fill. */
  get tempPath(): string | undefined {
    return this.#tempPath;
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
          // was wrong: the least recently used entries make some, as for a reservation,
          // until there are none left to evict.
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || (await this.#store.makeRoom(ROOM_STEP)) === 0) throw err;
        }
      }
      const settled = Math.min(chunk.length, this.#reserved);
      this.#reserved -= settled;
      this.#store.settle(settled);
    } catch (err) {
      this.#store.storageFailure(err); // logged, and the disk refuses writes for a while
      this.#log.warn({ id: this.#spec.id, at: position }, 'the disk failed mid-fill: the fill goes on from memory, not kept');
      this.stopFile();
      this.#unkept = true;
    }
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
    /** Counts the bytes received, once, before any reader hears the fill ended: a client that has its whole body then sees them in /-/stats. */
    const countUpstream = (): void => {
      if (counted) return;
      counted = true;
      this.#spec.onUpstreamBytes?.(this.written);
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
      const answer = await this.#spec.request(SMALL_MAX);
      this.#answer = answer;
      const decision = this.#spec.decide(answer);
      const size = announcedLength(answer.headers);
      const oversize = size !== undefined && size > this.#store.maxSize;
      if (oversize && this.#partial) throw new StorageError(`object of ${size} bytes exceeds the cache size ${this.#store.maxSize}: its range is asked for instead`);
      // Small bodies are gathered in memory and handed out whole once verified: no temp
      // file and no reads while filling; the file is written at commit. A body the request
      // gathered (Upstream.fetch) was announced within SMALL_MAX.
      const small = answer.whole !== undefined || (size !== undefined && size <= SMALL_MAX);
      if (size !== undefined && !unkeptOnly) {
        await this.#store.reserve(size, oversize);
        this.#reserved = size;
      }
      let body: Buffer | undefined;
      if (!small && unkeptOnly) {
        this.streamFromMemory();
      } else if (!small) {
        tmp = this.#claim ? await this.#store.openClaim(this.#claim) : await this.#store.createTemp();
        this.useFile(await open(tmp.path, 'r'));
        this.#tempPath = tmp.path;
      }
      // A body whose end is the connection's may be a cut one: served, not kept (a blob's digest tells, it is).
      const uncertain = !this.#spec.verify && endsWithConnection(answer.headers);
      this.#unkept = unkeptOnly || oversize || uncertain || decision.meta === undefined;
      const head: FillHead = { status: decision.status, headers: decision.headers, size, verified: this.#spec.verify !== undefined, policy: decision.meta?.policy };
      this.resolveHead(head);
      if (!small) this.#tell({ head });
      if (this.#spec.verify) hash = createHash(this.#spec.verify.algo);
      if (small) {
        // Small fills take the body in one piece (no async iteration per chunk) and wake
        // their readers once, at the end.
        bodyRead = true;
        body = answer.whole ?? (await buffer(answer.body));
        hash?.update(body);
        this.advance(body.length, false);
      } else {
        bodyRead = true;
        for await (const chunk of answer.body as AsyncIterable<Buffer>) {
          hash?.update(chunk);
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
          throw new DigestMismatchError(formatDigest(this.#spec.verify), `${this.#spec.verify.algo}:${actual}`);
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
          if (body) this.#store.commitSmall(this.#spec.id, body, meta, this.#claim);
          else await this.#store.commit(this.#spec.id, tmp!, meta, this.#claim);
          committed = true;
          if (body) this.#store.remember(this.#spec.id, body);
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
      const failure = e instanceof UpstreamError || e instanceof StorageError ? e : new UpstreamError(e.message, { cause: e });
      const told = this.headKnown ? failure : e;
      countUpstream();
      this.rejectHead(e);
      if (!this.ended) this.fail(failure);
      this.#tell({ error: told });
    } finally {
      try {
        this.#store.settle(this.#reserved); // written (a small body at its commit), or never to be
        this.#reserved = 0;
        giveUpClaim(); // an answer not kept (not 200, private)
        if (tmp) {
          await tmp.fh.close().catch(() => undefined);
          if (!committed && tmp.path !== this.#claim?.path) await this.#store.discardTemp(tmp.path);
        }
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
