// The one request shape a connection's first reader (early-hits.ts) answers itself: a GET
// in HTTP/1.1 with one Host and no header that changes the answer or the connection. It is
// recognised strictly, and anything else (another method or version, a body, a Range or a
// condition, two Authorization headers, a character llhttp would refuse, a head that is not
// whole) is not interpreted here at all: node's parser (llhttp) reads it from its first
// byte and answers it as it answers every request. So this code never decides what an
// unusual request means, and a request it takes is one llhttp reads the same way.

import { REQUEST_ID_HEADER } from '../http/request-id.js';

/** The head of a plain GET found at `from`: its target, and where the next request starts. */
export interface PlainGet {
  readonly target: string;
  readonly end: number;
  /** Its Authorization field's value, as llhttp gives it (a hit is the same for all; a miss is fetched with it). */
  readonly authorization: string | undefined;
  /** Its X-Request-Id field's value (a miss takes it as its id when plausible: http/request-id.ts). */
  readonly requestId: string | undefined;
}

/** origin-form only, the characters a request target may have unescaped (no space, no CTL). */
const TARGET = /^\/[\x21-\x7e]*$/;
/** A field name: an RFC 9110 token (what node's writeHead accepts as a name too). */
export const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** A field value as llhttp's strict mode takes it, and node's writeHead: no CTL but HTAB, obs-text allowed. */
export const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** The optional white space around a field value, which llhttp leaves out (not all that String#trim takes). */
const OWS_AROUND = /^[\t ]+|[\t ]+$/g;
/**
 * Fields whose presence leaves the request to node and the routes: they give it a body,
 * change the connection, or change the answer (the routes handle Range and conditions;
 * a no-cache request has the stored copy checked again). Proxy-Connection is one llhttp
 * reads as Connection; Connection itself is taken when it says only keep-alive (as undici
 * does on every request), which changes nothing in HTTP/1.1.
 */
const TO_ROUTES = new Set([
  'content-length', 'transfer-encoding', 'proxy-connection', 'expect', 'upgrade',
  'range', 'if-none-match', 'if-match', 'cache-control', 'pragma',
]);

/**
 * The plain GET whose head starts at `from` in `text` (a chunk read as latin1, one
 * character per byte), or undefined when what starts there is anything else or is not
 * whole. More header fields than `maxFields`, or a head longer than `maxHead` bytes, is for
 * node and the routes to refuse.
 */
export function readPlainGet(text: string, from: number, maxFields: number, maxHead: number): PlainGet | undefined {
  if (!text.startsWith('GET /', from)) return undefined;
  let eol = text.indexOf('\r\n', from);
  if (eol < 0 || eol - from > maxHead || !text.startsWith(' HTTP/1.1', eol - 9)) return undefined;
  const target = text.slice(from + 4, eol - 9);
  if (!TARGET.test(target)) return undefined;
  let fields = 0;
  let hosts = 0;
  let authorization: string | undefined;
  let requestId: string | undefined;
  for (;;) {
    const start = eol + 2;
    if (text.startsWith('\r\n', start)) {
      if (hosts !== 1 || start + 2 - from > maxHead) return undefined;
      return { target, end: start + 2, authorization, requestId };
    }
    eol = text.indexOf('\r\n', start);
    if (eol < 0 || eol - from > maxHead || ++fields > maxFields) return undefined;
    const colon = text.indexOf(':', start);
    if (colon <= start || colon > eol) return undefined;
    const name = text.slice(start, colon);
    const value = text.slice(colon + 1, eol);
    if (!FIELD_NAME.test(name) || !FIELD_VALUE.test(value)) return undefined;
    const lower = name.toLowerCase();
    if (lower === 'host') hosts++;
    else if (lower === 'connection') {
      if (value.trim().toLowerCase() !== 'keep-alive') return undefined;
    }
    else if (lower === 'authorization') {
      if (authorization !== undefined) return undefined;
      authorization = value.replace(OWS_AROUND, '');
    } else if (lower === REQUEST_ID_HEADER) {
      if (requestId !== undefined) return undefined; // node joins the two: left to it
      requestId = value.replace(OWS_AROUND, '');
    } else if (TO_ROUTES.has(lower)) return undefined;
  }
}
