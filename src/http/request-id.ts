// Request ids, which join a client's error answer, the log lines of the servers it went
// through and their upstream requests: a cache sends its id upstream (X-Request-Id), and
// each server (origin and cache) takes the id a request brings there when it is a plausible
// one, else makes its own. Anyone may send the header: an id taken from it is short and of
// a few characters only, so that it cannot forge a log line, nor grow one.
import type { IncomingHttpHeaders } from 'node:http';

/** The header a request's id travels in, from a cache to its upstream. */
export const REQUEST_ID_HEADER = 'x-request-id';

/** An id a request may bring: at most 64 characters, letters, digits and `._:-`. */
const BROUGHT_ID = /^[A-Za-z0-9._:-]{1,64}$/;

let lastRequestId = 0;
/** This process's part of its request ids: the workers of a cache each count from 1. */
const REQUEST_ID_PREFIX = `req-${process.pid.toString(36)}-`;

/**
 * A new request id, req-<pid>-1, req-<pid>-2… (pid and number in base 36), in the form of
 * fastify's own (its genReqId) with the process added, so that an id names one request among
 * all the workers of a cache. A cache's fast paths take one only for a request that fails
 * (for its log line), or that a miss sends upstream.
 */
export function newRequestId(): string {
  lastRequestId = (lastRequestId + 1) & 0x7fffffff;
  return REQUEST_ID_PREFIX + lastRequestId.toString(36);
}

/** The id of a request that brought `brought` (its X-Request-Id): that one, when plausible, else a new one. */
export function requestIdFrom(brought: string | string[] | undefined): string {
  return typeof brought === 'string' && BROUGHT_ID.test(brought) ? brought : newRequestId();
}

/** The id of a request with `headers` (requestIdFrom): both servers' genReqId. */
export function requestIdOf(req: { readonly headers: IncomingHttpHeaders }): string {
  return requestIdFrom(req.headers[REQUEST_ID_HEADER]);
}
