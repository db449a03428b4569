// Upstream's answer to a fill's GET, taken through undici's dispatch API rather than its
// request API: a small body (Content-Length up to a limit) is gathered into one Buffer and
// handed over with the head once complete, with no stream made for it. undici's request
// API gives every answer a BodyReadable, and reading 4 KiB out of it cost a cold small
// miss about 30 µs of CPU of its 250-300 (bench/work measure, 2026-12-03). A larger or
// unannounced body is a Readable fed from the dispatcher, with undici's backpressure
// (pause while the reader is behind) and abort (destroying the stream aborts the request).
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { errors, type Dispatcher } from 'undici';

/** What a fill decides from (status and headers) before the body. */
export interface AnswerHead {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  /** The URL upstream redirected to, when this is its answer (see Upstream.fetch), not upstream's own. */
  readonly redirected?: string;
  /** When the request it answers was sent, where its age counts from then (a mirror's: agedFromRequest). */
  readonly sentAt?: number;
}

/** A head and its body: gathered whole (`whole`), or as a stream (`body`). */
export type UpstreamAnswer =
  | (AnswerHead & { readonly whole: Buffer; readonly body?: undefined })
  | (AnswerHead & { readonly body: Readable; readonly whole?: undefined });

/** The body length a head announces (Content-Length), undefined when it announces none. */
export function announcedLength(headers: IncomingHttpHeaders): number | undefined {
  const cl = headers['content-length'];
  return typeof cl === 'string' && /^\d+$/.test(cl) ? Number(cl) : undefined;
}

/**
 * Whether the body ends where the connection does: neither a Content-Length nor chunked
 * (RFC 9112 §6.3). A body cut by the upstream's death, or by a reset (which undici takes for
 * the end of such a body), then looks the same as a whole one.
 */
export function endsWithConnection(headers: IncomingHttpHeaders): boolean {
  const coding = headers['transfer-encoding'];
  return announcedLength(headers) === undefined && !(typeof coding === 'string' && /\bchunked\b/i.test(coding));
}

/** The bytes of a body taken from upstream when a failure cut it, by that failure (see receivedBefore). */
const cutBodies = new WeakMap<Error, number>();

/**
 * The bytes of a body undici had taken from upstream when `err` (or the failure it wraps, as
 * Upstream's UpstreamError does) cut it: those of a small body being gathered, which no
 * answer then brings, and those of a streamed one still in its buffer, which the stream drops
 * as it fails. They crossed the link, and the accounting counts them (fill.ts). 0 for a failure
 * before any body.
 */
export function receivedBefore(err: unknown): number {
  for (let e = err; e instanceof Error; e = e.cause) {
    const n = cutBodies.get(e);
    if (n !== undefined) return n;
  }
  return 0;
}

/** undici's own high-water mark for response bodies (its BodyReadable's). */
const HIGH_WATER_MARK = 64 * 1024;

/** One answer's handler: resolves `answer` with the head (and a whole small body), or rejects with the transport's failure. */
export class AnswerHandler implements Dispatcher.DispatchHandler {
  readonly answer: Promise<UpstreamAnswer>;
  #resolve!: (answer: UpstreamAnswer) => void;
  #reject!: (err: Error) => void;
  #gatherMax: number;
  #head: AnswerHead | undefined;
  /** Chunks of a body being gathered. */
  #chunks: Buffer[] | undefined;
  #gathered = 0;
  #stream: Readable | undefined;
  /** Bytes of a streamed body pushed into #stream. */
  #streamed = 0;
  #ended = false;

  constructor(gatherMax: number) {
    this.#gatherMax = gatherMax;
    this.answer = new Promise<UpstreamAnswer>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** Present so that undici calls this handler by its current API (it tells them apart by this method). @public undici calls it, which knip does not see. */
  onRequestStart(): void {}

  /** @public undici calls it (Dispatcher.DispatchHandler), which knip does not see. */
  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // informational: the answer follows
    const size = announcedLength(headers);
    if (size !== undefined && size <= this.#gatherMax) {
      this.#head = { statusCode, headers };
      this.#chunks = [];
      return;
    }
    this.#stream = new Readable({
      highWaterMark: HIGH_WATER_MARK,
      read: () => controller.resume(),
      destroy: (err, callback) => {
        if (!this.#ended) controller.abort(err ?? new errors.RequestAbortedError());
        callback(err);
      },
    });
    this.#resolve({ statusCode, headers, body: this.#stream });
  }

  /** @public undici calls it (Dispatcher.DispatchHandler), which knip does not see. */
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#chunks) {
      // undici hands each chunk as a view of a socket read of its own: safe to keep while
      // the fill answers from it (a hit reads the stored file, never this buffer). Copying
      // each body into a buffer of its own cost a cold miss more than that is worth (A/B:
      // 382 against 345 µs).
      this.#chunks.push(chunk);
      this.#gathered += chunk.length;
    } else if (this.#stream) {
      this.#streamed += chunk.length;
      if (!this.#stream.push(chunk)) controller.pause();
    }
  }

  /** @public undici calls it (Dispatcher.DispatchHandler), which knip does not see. */
  onResponseEnd(): void {
    this.#ended = true;
    const chunks = this.#chunks;
    if (chunks && this.#head) {
      const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#gathered);
      this.#resolve({ statusCode: this.#head.statusCode, headers: this.#head.headers, whole });
    } else {
      this.#stream?.push(null);
    }
  }

  /** @public undici calls it (Dispatcher.DispatchHandler), which knip does not see. */
  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#ended = true;
    // Before the answer: the promise fails; after it, the stream (a reader sees an error,
    // never a clean end). As undici's own bodies, an error with no reader yet (the fill still
    // opening its file) is kept by the stream for its reader, not thrown at the process.
    if (this.#chunks || this.#stream) cutBodies.set(err, this.#gathered + this.#streamed);
    if (this.#stream) this.#stream.on('error', () => undefined).destroy(err);
    else this.#reject(err);
  }
}
