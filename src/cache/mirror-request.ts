// What a mirror is asked with, and which requests' answers may be kept for the whole region.
import type { IncomingHttpHeaders } from 'node:http';
import { requestEndToEnd, type HeaderMap } from './upstream.js';

/** Answered by the cache itself (or meaningless for a full fetch), so never forwarded. */
const CLIENT_ONLY = ['range', 'if-range', 'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since'];

/**
 * Fields that describe the hop from a client to the cache (a TLS terminator in front adds
 * them), not the cache's own request to a mirror: never forwarded, as Host is not. Sent on,
 * X-Forwarded-Host or X-Forwarded-Proto changes the absolute URLs many servers write into an
 * answer (redirects, links), which the cache then kept for every client of the region.
 */
function describesClientHop(field: string): boolean {
  return field === 'forwarded' || field === 'x-real-ip' || field.startsWith('x-forwarded-');
}

/** A client's request fields as a mirror gets them (hop-by-hop ones dropped too). */
export function mirrorRequestFields(headers: IncomingHttpHeaders): HeaderMap {
  const h = requestEndToEnd(headers);
  for (const name of CLIENT_ONLY) delete h[name];
  for (const name of Object.keys(h)) if (describesClientHop(name)) delete h[name];
  return h;
}

/**
 * Request fields an answer may be kept for without its Vary naming them: those the usual
 * clients send (apt, pip, curl, fetch, npm), whose values do not pick another content, those
 * that trace a request through proxies (new in each, or a request would never be served from
 * the cache: W3C, Zipkin's b3 as Envoy adds it, and those an AWS or Google Cloud load balancer
 * in front adds), and those the caching rules judge themselves (Authorization, Cache-Control,
 * Pragma). npm sends npm-session new in each run, and the others (its command, its auth type,
 * a package's scope) to every registry, which picks no content by them.
 */
const KEYLESS_FIELDS = new Set([
  'accept', 'accept-encoding', 'accept-language', 'user-agent', 'sec-fetch-mode',
  'npm-session', 'npm-command', 'npm-auth-type', 'npm-scope', 'npm-in-ci',
  'x-request-id', 'traceparent', 'tracestate', 'via', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled',
  'x-amzn-trace-id', 'x-cloud-trace-context',
  'authorization', 'cache-control', 'pragma',
]);

/**
 * The fields of a mirror request (`fields`, as forwarded) its answer may depend on unsaid:
 * any but KEYLESS_FIELDS that the answer's `vary` does not name (a Cookie, an X-Original-URL,
 * a client's own header), and Accept-Encoding for an answer in a Content-Encoding without
 * Vary naming it (nginx's gzip without gzip_vary). Kept, such an answer would be served to
 * every client of the region, whatever they sent (web cache poisoning): it is passed on only,
 * as Varnish passes a request with a Cookie.
 */
export function unkeyedFields(fields: Readonly<Record<string, string | string[] | undefined>>, vary: readonly string[], contentEncoding: string | string[] | undefined): string[] {
  const named = new Set(vary);
  const unkeyed = Object.keys(fields).filter((field) => !KEYLESS_FIELDS.has(field) && !named.has(field));
  const encoded = contentEncoding !== undefined && String(contentEncoding).trim().toLowerCase() !== 'identity';
  if (encoded && fields['accept-encoding'] !== undefined && !named.has('accept-encoding')) unkeyed.push('accept-encoding');
  return unkeyed;
}

/**
 * What requests for one mirror path must agree on to share one upstream request (a fill):
 * the usual suspects of Vary (Accept, Accept-Encoding, Accept-Language) and every field an
 * answer may depend on unsaid (unkeyedFields: a Cookie, a client's own header). Vary is
 * unknown before the answer; joined to a fill led by a request with a Cookie, a plain
 * request would be given the answer chosen for that cookie.
 */
export function collapseKey(fields: Readonly<Record<string, string | string[] | undefined>>): string {
  const agreed = ['accept', 'accept-encoding', 'accept-language'].map((field) => String(fields[field] ?? ''));
  for (const field of Object.keys(fields).sort()) if (!KEYLESS_FIELDS.has(field)) agreed.push(`${field}:${String(fields[field])}`);
  return agreed.join('\0');
}
