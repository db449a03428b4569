// A floor under a download's rate, as curl's --speed-limit/--speed-time: a body whose bytes
// over the last window average less than the minimum is abandoned. An idle timeout alone
// never gives up on a server that trickles a byte now and then, each just within it (a
// cache with a sick disk or link): a machine's pull would wait on it for hours rather than
// take the next URL. Counted where undici receives the bytes (an interceptor), so every
// reader of the body is covered; a window in which the reader itself held the body back
// (backpressure: a slow disk) is not held against the server, and starts the window anew.
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { UpstreamError } from '../errors.js';
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
  /** The byte counts at the last samples, oldest first. */
  #samples: number[] = [];
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
    const { minBytesPerSecond, windowMs } = this.#floor;
    this.#samples = [this.#received];
    this.#timer = setInterval(() => {
      // held back by its reader: that window says nothing of the server
      if (this.#heldBack || controller.paused) {
        this.#heldBack = false;
        this.#samples = [this.#received];
        return;
      }
      this.#samples.push(this.#received);
      if (this.#samples.length <= SAMPLES_PER_WINDOW) return;
      const inWindow = this.#received - this.#samples.shift()!;
      if (inWindow >= (minBytesPerSecond * windowMs) / 1000) return;
      clearInterval(this.#timer);
      const rule = `slower than ${minBytesPerSecond / 1024} KiB/s over ${windowMs / 1000} s`;
      controller.abort(new UpstreamError(`GET ${redactUrl(this.#url)}: ${rule} (${inWindow} bytes in the last ${windowMs / 1000} s), given up on`, { timeout: true }));
    }, windowMs / SAMPLES_PER_WINDOW);
    this.#timer.unref();
  }
}
