// One client per configured upstream (the origin, a parent cache, each mirror): a shared
// undici Pool with explicit connect/headers/body timeouts, hop-by-hop stripping, failures
// mapped to catalogued 502/504 errors so a miss never hangs, and a breaker that stops
// trying an upstream that refuses connections for a few seconds.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { UpstreamError } from '../errors.js';
import { AnswerHandler, type UpstreamAnswer } from './answer-handler.js';
import type { UpstreamTimeouts } from './config.js';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'proxy-connection',
]);

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** Failures to reach upstream at all (as opposed to a slow or failing answer). */
const CONNECT_FAILURES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * After `failures` connection failures in a row the upstream is marked down for `openMs`:
 * misses answer 502 at once instead of each waiting for a connect timeout (nginx's
 * max_fails/fail_timeout). The first request after the pause tries again.
 */
const BREAKER = { failures: 5, openMs: 5_000 };

export type HeaderMap = Record<string, string>;

/** Flattens headers and drops hop-by-hop ones (including those named by Connection). */
export function endToEnd(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): HeaderMap {
  const out: HeaderMap = {};
  const connection = headers.connection;
  const named = new Set(
    (Array.isArray(connection) ? connection.join(',') : connection ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean),
  );
  for (const [k, v] of Object.entries(headers)) {
    const name = k.toLowerCase();
    if (v === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = Array.isArray(v) ? v.join(', ') : String(v);
  }
  return out;
}

export function isTimeout(err: unknown): boolean {
  return typeof err === 'object' && err !== null && TIMEOUT_CODES.has(String((err as { code?: unknown }).code));
}

/** Maps a transport failure to UpstreamError (504 for timeouts, 502 otherwise). */
export function upstreamFailure(name: string, err: unknown): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new UpstreamError(`upstream ${name}: ${message}`, { cause: err, timeout: isTimeout(err) });
}

export interface UpstreamRequest {
  readonly method: 'GET' | 'HEAD' | 'PUT';
  readonly headers: HeaderMap;
  readonly body?: Readable;
  readonly signal?: AbortSignal;
}

export class Upstream {
  readonly name: string;
  readonly url: string;
  #pool: Pool;
  #basePath: string;
  #breaker: { readonly failures: number; readonly openMs: number };
  #failuresInARow = 0;
  #downUntil = 0;

  constructor(name: string, url: string, timeouts: UpstreamTimeouts, breaker = BREAKER) {
    this.#breaker = breaker;
    const u = new URL(url);
    this.name = name;
    this.url = url;
    this.#basePath = u.pathname.replace(/\/+$/, '');
    this.#pool = new Pool(u.origin, {
      connectTimeout: timeouts.connectMs,
      headersTimeout: timeouts.headersMs,
      bodyTimeout: timeouts.bodyMs,
      keepAliveTimeout: 10_000,
    });
  }

  /** Sends one request; `path` starts with "/" and may carry a query. Throws UpstreamError. */
  request(path: string, req: UpstreamRequest): Promise<Dispatcher.ResponseData> {
    return this.#attempt(() => this.#pool.request({
      path: this.#basePath + path,
      method: req.method,
      headers: req.headers,
      body: req.body ?? null,
      signal: req.signal,
    }));
  }

  /**
   * A fill's GET: its answer, with the body gathered whole when upstream announces at most
   * `gatherUpTo` bytes (answer-handler.ts). Throws UpstreamError.
   */
  fetch(path: string, headers: HeaderMap, gatherUpTo: number): Promise<UpstreamAnswer> {
    return this.#attempt(() => {
      const handler = new AnswerHandler(gatherUpTo);
      this.#pool.dispatch({ path: this.#basePath + path, method: 'GET', headers }, handler);
      return handler.answer;
    });
  }

  /** Sends unless the breaker is open; counts connection failures in a row, and maps failures to UpstreamError. */
  async #attempt<T>(send: () => Promise<T>): Promise<T> {
    const wait = this.#downUntil - Date.now();
    if (wait > 0) {
      throw new UpstreamError(`upstream ${this.name}: marked down after ${this.#failuresInARow} failed connections in a row; next try in ${Math.ceil(wait / 1000)} s`);
    }
    try {
      const res = await send();
      this.#failuresInARow = 0;
      return res;
    } catch (err) {
      const code = String((err as { code?: unknown }).code);
      if (CONNECT_FAILURES.has(code) && ++this.#failuresInARow >= this.#breaker.failures) this.#downUntil = Date.now() + this.#breaker.openMs;
      throw upstreamFailure(this.name, err);
    }
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
