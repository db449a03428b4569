// HTTP/1.1 messages read back from the bytes a relay kept (byte-relay.ts): each request's
// method and target, and the body bytes each way, without headers or chunked framing, so
// that they compare with the servers' counters, which count bodies. A message cut short
// (an aborted download, a server dying mid-body) counts the body bytes that crossed.
import type { RelayedConnection } from './byte-relay.js';

export interface WireExchange {
  readonly method: string;
  readonly target: string;
  /** Bytes of the request's body (an upload's). */
  readonly requestBody: number;
  /** undefined: no answer came back. */
  readonly status: number | undefined;
  /** Bytes of the answer's body. */
  readonly answerBody: number;
  /** Every byte of the exchange, heads and framing included. */
  readonly wireBytes: number;
}

interface Message {
  readonly head: string;
  readonly body: number;
  readonly bytes: number;
}

/** The messages in `data`; `bodiless(i, status)` tells an answer that has no body whatever its fields (a HEAD's, a 304). */
function messages(data: Buffer, bodiless: (index: number, head: string) => boolean): Message[] {
  const out: Message[] = [];
  let at = 0;
  while (at < data.length) {
    const headEnd = data.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const head = data.subarray(at, headEnd).toString('latin1');
    const start = at;
    at = headEnd + 4;
    if (/^HTTP\/1\.1 1\d\d /.test(head)) continue; // an interim answer (100 Continue)
    const field = (name: string): string | undefined => new RegExp(`\\r\\n${name}:\\s*([^\\r]*)`, 'i').exec(head)?.[1];
    let body = 0;
    if (!bodiless(out.length, head)) {
      const length = field('content-length');
      if (/chunked/i.test(field('transfer-encoding') ?? '')) {
        for (;;) {
          const lineEnd = data.indexOf('\r\n', at);
          if (lineEnd < 0) { body += data.length - at; at = data.length; break; }
          const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
          at = lineEnd + 2;
          if (size === 0) {
            const trailerEnd = data.indexOf('\r\n', at); // no trailers here: the blank line
            at = trailerEnd < 0 ? data.length : trailerEnd + 2;
            break;
          }
          const got = Math.min(size, data.length - at);
          body += got;
          at += got + 2;
        }
      } else if (length !== undefined) {
        body = Math.min(Number(length), data.length - at);
        at += body;
      } else if (/^HTTP/.test(head)) {
        body = data.length - at; // an answer that ends with the connection
        at = data.length;
      }
    }
    out.push({ head, body, bytes: Math.min(at, data.length) - start });
  }
  return out;
}

/** The exchanges of one connection, in order (one at a time on a connection: no pipelining here). */
function wireExchanges(c: RelayedConnection): WireExchange[] {
  const requests = messages(Buffer.concat(c.toServer), () => false);
  const methodOf = (i: number): string => requests[i]?.head.split(' ')[0] ?? '';
  const answers = messages(Buffer.concat(c.toClient), (i, head) => methodOf(i) === 'HEAD' || /^HTTP\/1\.1 (204|304) /.test(head));
  return requests.map((r, i) => {
    const [method = '', target = ''] = r.head.split(' ');
    const a = answers[i];
    return {
      method, target, requestBody: r.body,
      status: a ? Number(a.head.split(' ')[1]) : undefined,
      answerBody: a?.body ?? 0,
      wireBytes: r.bytes + (a?.bytes ?? 0),
    };
  });
}

/** Every exchange the relay saw, over all its connections. */
export function allExchanges(connections: readonly RelayedConnection[]): WireExchange[] {
  return connections.flatMap(wireExchanges);
}
