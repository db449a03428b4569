// What a fill in flight is to its readers (fill-cursor.ts), whether this process fetches it
// (Fill, fill.ts) or follows another worker's (RemoteFill, remote-fill.ts): its head, the
// bytes so far, its end or failure, and the wake-ups; the last 16 MiB in windows of memory
// shared by every reader, within the process's budget of fill memory; the readers counted,
// so that a fill nobody keeps stops once none is left (unread).
import type { FileHandle } from 'node:fs/promises';
import { UpstreamError } from '../errors.js';
import { DEFAULT_FILL_MEMORY } from './config.js';
import type { EntryMeta } from './disk-store.js';
import type { AnswerFields } from './upstream.js';
import type { UpstreamAnswer } from './answer-handler.js';

export interface FillHead {
  readonly status: number;
  readonly headers: AnswerFields;
  /** Content-Length when upstream announced it. */
  readonly size: number | undefined;
  /**
   * The body is checked against a digest once complete (/cas): a reader holds back the
   * last byte it sends, of the body or of a range, until the check passed.
   */
  readonly verified: boolean;
  /** A kept mirror answer's RFC 9111 policy (http-cache-semantics' toObject): see mirror.ts's joins. */
  readonly policy: EntryMeta['policy'];
  /**
   * When the fill asked upstream (Date.now() of the leading process: the workers of a cache
   * share one clock): a request for a name that came later asks whether it changed since
   * (namespace.ts, nameJoins). An upload completed between the two may not be in the
   * answer, however late the answer came.
   */
  readonly askedAt: number;
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
 * How long a fill whose body is not kept goes on once its last reader has left, and a
 * worker follows another's fill for no reader (see FillProgress.unread): a request that
 * has just joined it takes its file a moment later.
 */
export const UNREAD_GRACE_MS = 1000;

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
  /** Stopped for want of readers (see whenUnread): no longer joined. */
  #stopped = false;
  #progress: Deferred | undefined;
  /** The last windows written, oldest first; the bytes are copied in as they come (the last one fills up). */
  #recent: { start: number; buf: Buffer }[] = [];
  #paused = false;
  /** UNREAD_GRACE_MS, but for tests of the grace itself, which lower it. */
  readonly #unreadGraceMs: number;
  /** Marks a pause and wakes readers waiting for a window (restarted on each write). */
  #pauseTimer: NodeJS.Timeout | undefined;

  constructor(unreadGraceMs = UNREAD_GRACE_MS) {
    this.#unreadGraceMs = unreadGraceMs;
  }

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

  /** Whether the fill was stopped for want of readers (see whenUnread): its failure then cut nobody. */
  protected get stoppedUnread(): boolean {
    return this.#stopped;
  }

  /** A fill whose file stopped is not joined: a reader of its first bytes would likely be cut past them. */
  get joinable(): boolean {
    if (this.#stopped) return false; // stopped for want of readers: its end is near, and is a failure
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

  /** Calls `stop` if the fill still runs with no reader after UNREAD_GRACE_MS (see the constructor). */
  protected whenUnread(stop: () => void): void {
    setTimeout(() => {
      if (this.readers !== 0 || this.#ended || this.#error) return;
      // From now on a request starts a fill of its own: the failure that `stop` causes
      // comes a few ticks later, and a request joining meanwhile would get a head and then a cut.
      this.#stopped = true;
      stop();
    }, this.#unreadGraceMs).unref();
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
