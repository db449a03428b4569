// A floor under a download's rate, as curl's --speed-limit/--speed-time: a body whose bytes
// over the last window average less than the minimum is abandoned. An idle timeout alone
// never gives up on a server that trickles a byte now and then, each just within it (a
// cache with a sick disk or link): a machine's pull would wait on it for hours rather than
// take the next URL. Counted where undici receives the bytes (an interceptor), so every
// reader of the body is covered; a window in which the reader itself held the body back
// (backpressure: a slow disk) is not held against the server, and starts the window anew.
// An upload's body is held to the same floor, counted as the request takes its bytes: a
// cache that accepted an upload and then reads it a trickle at a time is given up on too.
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type Duplex, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { failedRequest, UpstreamError } from '../errors.js';
import { redactUrl } from '../redact-url.js';

export interface SpeedFloor {
  readonly minBytesPerSecond: number;
  readonly windowMs: number;
}

/**
 * The floor under a transfer from a cache, from the fleet's cacheTimeout: below 16 KiB/s
 * (128 kbit/s, far under any healthy link) over twice cacheTimeout, the next URL is tried.
 */
export function cacheSpeedFloor(cacheTimeoutMs: number): SpeedFloor {
  return { minBytesPerSecond: 16 * 1024, windowMs: 2 * cacheTimeoutMs };
}

/** Samples of the byte count taken per window: the window slides by a tenth of itself. */
const SAMPLES_PER_WINDOW = 10;

/** `dispatcher` with `floor` under the rate of every answer's body it receives (`dispatcher` itself without one). */
export function withSpeedFloor(dispatcher: Dispatcher, floor: SpeedFloor | undefined): Dispatcher {
  if (!floor) return dispatcher;
  return dispatcher.compose((dispatch) => (options, handler) => dispatch(options, new SpeedFloorHandler(handler, floor, `${options.origin?.toString() ?? ''}${options.path}`)));
}

/** Passes everything on to the request's own handler, counting the body's bytes as they come. */
class SpeedFloorHandler implements Dispatcher.DispatchHandler {
  readonly #inner: Dispatcher.DispatchHandler;
  readonly #floor: SpeedFloor;
  readonly #url: string;
  #received = 0;
  /** Whether the reader held the body back (paused it) since the last sample. */
  #heldBack = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(inner: Dispatcher.DispatchHandler, floor: SpeedFloor, url: string) {
    this.#inner = inner;
    this.#floor = floor;
    this.#url = url;
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#inner.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#inner.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    // the body's rate from its headers on (how long they may take is the idle timeout's)
    if (statusCode >= 200) this.#watch(controller);
    this.#inner.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#received += chunk.length;
    this.#inner.onResponseData?.(controller, chunk);
    // the reader pauses the body in answer to a chunk it has no room for
    if (controller.paused) this.#heldBack = true;
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    clearInterval(this.#timer);
    this.#inner.onResponseEnd?.(controller, trailers);
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    clearInterval(this.#timer);
    this.#inner.onResponseError?.(controller, error);
  }

  #watch(controller: Dispatcher.DispatchController): void {
    this.#timer = watchRate(this.#floor, () => this.#received, () => {
      // held back by its reader: that window says nothing of the server
      const held = this.#heldBack || controller.paused;
      this.#heldBack = false;
      return held;
    }, (rule) => controller.abort(new UpstreamError(`GET ${redactUrl(this.#url)}: ${rule}, given up on`, { timeout: true, request: failedRequest('GET', this.#url) })));
  }
}

/**
 * `body`, an upload's, under `floor`: the bytes the server takes of it (those the request
 * reads; a server that stops reading soon stops the request too) must keep up the floor, else
 * the body fails with an UpstreamError that names it and the request with it.
 */
export function uploadWithSpeedFloor(body: Readable, floor: SpeedFloor, method: string, url: string): Readable {
  let taken = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      taken += chunk.length;
      cb(null, chunk);
    },
  });
  // the source (a local file) is never the slow side: every window counts against the server
  const timer = watchRate(floor, () => taken, () => false, (rule) => counter.destroy(new UpstreamError(`${method} ${redactUrl(url)}: the server took the upload ${rule}, given up on`, { timeout: true, request: failedRequest(method, url) })));
  counter.once('close', () => clearInterval(timer));
  body.once('error', (err) => counter.destroy(err));
  return body.pipe(counter);
}

/**
 * Samples `count()` every tenth of the floor's window and calls `breached` (once, with the
 * rule and what the window held) when the last window held fewer bytes than the floor asks;
 * a sample at which `heldBack()` is true starts the window anew. The interval, to be cleared.
 */
function watchRate(floor: SpeedFloor, count: () => number, heldBack: () => boolean, breached: (rule: string) => void): NodeJS.Timeout {
  const { minBytesPerSecond, windowMs } = floor;
  let samples = [count()];
  const timer = setInterval(() => {
    if (heldBack()) {
      samples = [count()];
      return;
    }
    samples.push(count());
    if (samples.length <= SAMPLES_PER_WINDOW) return;
    const inWindow = count() - samples.shift()!;
    if (inWindow >= (minBytesPerSecond * windowMs) / 1000) return;
    clearInterval(timer);
    breached(`slower than ${minBytesPerSecond / 1024} KiB/s over ${windowMs / 1000} s (${inWindow} bytes in the last ${windowMs / 1000} s)`);
  }, windowMs / SAMPLES_PER_WINDOW);
  timer.unref();
  return timer;
}
