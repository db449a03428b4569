// Answering clients: conditional GET (304), single byte ranges (206/416), HEAD,
// X-Cache and Age, and accounting of the bytes actually sent.
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { sendFileRange } from '../http/send-file.js';
import type { CacheMetrics, Kind } from './metrics.js';
import type { HeaderMap } from './upstream.js';

export type CacheStatus = 'HIT' | 'MISS' | 'COLLAPSED';

export interface Body {
  readonly status: number;
  /** Headers without content-length (set here). */
  readonly headers: HeaderMap;
  /** Undefined while a fill without Content-Length is still running. */
  readonly size: number | undefined;
  /** Opens [start, end] (inclusive; undefined = to the end): a stream, or the bytes themselves when small. */
  readonly open: (start: number, end: number | undefined) => Readable | Buffer;
  /** Resolves to the final size once known (fills without Content-Length). */
  readonly finalSize?: () => Promise<number>;
  /** Releases what `open` would have used when no body is sent (HEAD, 304, 416). */
  readonly discard?: () => void;
  /** A stored body's file: sent through recycled buffers (send-file.ts), then closed. */
  readonly file?: FileHandle;
}

export interface SendContext {
  readonly kind: Kind;
  readonly cache: CacheStatus;
  readonly ageSeconds: number;
  readonly metrics: CacheMetrics;
}

type Range = { start: number; end: number } | 'unsatisfiable' | undefined;

/** One `bytes=` range against `size`; multiple or malformed ranges are ignored (full body). */
export function parseRange(header: string | undefined, size: number): Range {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1) };
}

function etagMatches(header: string, etag: string | undefined): boolean {
  if (!etag) return false;
  if (header.trim() === '*') return true;
  const bare = etag.replace(/^W\//, '');
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === bare);
}

function countOnFinish(reply: FastifyReply, ctx: SendContext, bytes: number): void {
  if (bytes > 0) reply.raw.once('finish', () => ctx.metrics.served(ctx.kind, bytes));
}

/** Sends the answer (never awaits the reply itself: a FastifyReply is a thenable). */
export async function sendBody(req: FastifyRequest, reply: FastifyReply, body: Body, ctx: SendContext): Promise<void> {
  reply.headers(body.headers);
  reply.header('x-cache', ctx.cache);
  if (body.headers.age === undefined) reply.header('age', String(Math.max(0, Math.floor(ctx.ageSeconds))));
  const head = req.method === 'HEAD';
  if (body.status !== 200) {
    reply.code(body.status);
    if (body.size !== undefined) reply.header('content-length', String(body.size));
    if (head) return void done(reply, body);
    countOnFinish(reply, ctx, body.size ?? 0);
    reply.send(body.open(0, undefined));
    return;
  }
  const inm = req.headers['if-none-match'];
  if (typeof inm === 'string' && etagMatches(inm, body.headers.etag)) {
    reply.removeHeader('content-type');
    return void done(reply.code(304), body);
  }
  reply.header('accept-ranges', 'bytes');
  const rangeHeader = req.headers.range;
  const ifRange = req.headers['if-range'];
  const wantsRange = typeof rangeHeader === 'string' && (typeof ifRange !== 'string' || ifRange === body.headers.etag || ifRange === body.headers['last-modified']);
  let size = body.size;
  if (wantsRange && size === undefined && body.finalSize) size = await body.finalSize();
  const range = wantsRange && size !== undefined ? parseRange(rangeHeader, size) : undefined;
  if (range === 'unsatisfiable') {
    reply.header('content-range', `bytes */${size}`);
    return void done(reply.code(416).type('application/json'), body, JSON.stringify({ code: 'FC_ERR_RANGE', message: `range ${rangeHeader} not satisfiable (size ${size})` }));
  }
  if (range) {
    const len = range.end - range.start + 1;
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', String(len));
    if (head) return void done(reply, body);
    countOnFinish(reply, ctx, len);
    if (body.file) return sendFileRange(reply, body.file, range.start, len, () => undefined);
    reply.send(body.open(range.start, range.end));
    return;
  }
  reply.code(200);
  if (size !== undefined) reply.header('content-length', String(size));
  if (head) return void done(reply, body);
  if (body.file && size !== undefined && size > 0) {
    countOnFinish(reply, ctx, size);
    return sendFileRange(reply, body.file, 0, size, () => undefined);
  }
  const stream = body.open(0, undefined);
  if (size !== undefined) countOnFinish(reply, ctx, size);
  else reply.raw.once('finish', () => body.finalSize?.().then((n) => ctx.metrics.served(ctx.kind, n), () => undefined));
  reply.send(stream);
}

function done(reply: FastifyReply, body: Body, payload?: string): void {
  body.discard?.();
  reply.send(payload);
}
