// A real node:http upstream for the cache tests, with controllable failures: a rate
// limit, a connection killed after N bytes, hanging, per-path request counts.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { Test } from 'tap';
import { closeWithConnections, listenOnLoopback } from '../helpers/loopback-server.js';

interface Obj {
  body: Buffer;
  headers?: Record<string, string>;
  status?: number;
  /** Sent without Content-Length (chunked): a body of unknown length. */
  lengthUnstated?: boolean;
}

interface FixtureOptions {
  /** Bytes per second per response (0 = unlimited). */
  rate?: number;
  /** Close the socket after sending this many body bytes of the next GET (of every GET with `keepDying`). */
  dieAfter?: number;
  keepDying?: boolean;
  /** Never answer. */
  hang?: boolean;
}

/** A fixture listening on 127.0.0.1 (`upUrl`), stopped in `t`'s teardown. */
export async function startUpstream(t: Test): Promise<{ up: UpstreamFixture; upUrl: string }> {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  return { up, upUrl };
}

export class UpstreamFixture {
  readonly objects = new Map<string, Obj>();
  readonly requests: { method: string; url: string; headers: http.IncomingHttpHeaders }[] = [];
  readonly puts = new Map<string, Buffer>();
  /** When the last body answered for each URL closed, and whether it was cut before its end. */
  readonly closes = new Map<string, { at: number; cut: boolean }>();
  readonly #sent = new Map<string, number>();
  options: FixtureOptions = {};
  /** Cache-Control of PUT answers (as the origin's: how a GET of the object may be cached); undefined sends none. */
  putCacheControl: string | undefined = 'public, no-cache';
  /** Custom handler, tried first; returns true when it answered. */
  handler: ((req: http.IncomingMessage, res: http.ServerResponse) => boolean) | undefined;
  #server = http.createServer((req, res) => this.#handle(req, res));
  readonly #holds = new Map<string, Promise<void>>();

  start(): Promise<string> {
    return listenOnLoopback(this.#server);
  }

  stop(): Promise<void> {
    return closeWithConnections(this.#server);
  }

  /** Body bytes handed to the socket so far by the last answer for `url` (how far a fill got, give or take the socket's buffers). */
  sent(url: string): number {
    return this.#sent.get(url) ?? 0;
  }

  count(url: string, method = 'GET'): number {
    return this.requests.filter((r) => r.url === url && r.method === method).length;
  }

  /** Adds a random blob under /cas/sha256/<hex> and /sha256/<hex>; returns its hex digest. */
  addBlob(size: number, headers?: Record<string, string>, lengthUnstated = false): { hex: string; body: Buffer } {
    return this.serveBlob(randomBlob(size), headers, lengthUnstated);
  }

  /** Serves `blob` as addBlob does: one made once for the tests of a file (each with an upstream of its own). */
  serveBlob({ hex, body }: { hex: string; body: Buffer }, headers?: Record<string, string>, lengthUnstated = false): { hex: string; body: Buffer } {
    const obj = { body, headers: { etag: `"sha256:${hex}"`, ...headers }, lengthUnstated };
    this.objects.set(`/cas/sha256/${hex}`, obj);
    this.objects.set(`/sha256/${hex}`, obj);
    return { hex, body };
  }

  /** Makes requests of `url` wait (recorded as they arrive) until the returned function is called. */
  hold(url: string): () => void {
    let release!: () => void;
    this.#holds.set(url, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      this.#holds.delete(url);
      release();
    };
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const held = this.#holds.get(req.url ?? '');
    if (held) return void held.then(() => this.#answer(req, res));
    this.#answer(req, res);
  }

  #answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.handler?.(req, res)) return;
    if (this.options.hang) return;
    if (req.method === 'PUT') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        this.puts.set(req.url ?? '', body);
        const cc: Record<string, string> = this.putCacheControl === undefined ? {} : { 'cache-control': this.putCacheControl };
        res.writeHead(201, { 'content-type': 'application/json', etag: `"put-${body.length}"`, ...cc }).end('{"ok":true}');
      });
      return;
    }
    const obj = this.objects.get(req.url ?? '');
    if (!obj) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"FC_ERR_NOT_FOUND","message":"no such object"}');
      return;
    }
    const inm = req.headers['if-none-match'];
    if (inm && obj.headers?.etag && inm === obj.headers.etag) {
      res.writeHead(304, { etag: obj.headers.etag, ...pick(obj.headers, 'cache-control') }).end();
      return;
    }
    const length = obj.lengthUnstated ? {} : { 'content-length': String(obj.body.length) };
    res.writeHead(obj.status ?? 200, { 'content-type': 'application/octet-stream', ...length, ...obj.headers });
    if (req.method === 'HEAD') return void res.end();
    res.on('close', () => this.closes.set(req.url ?? '', { at: Date.now(), cut: !res.writableFinished }));
    const dieAfter = this.options.dieAfter;
    if (!this.options.keepDying) this.options.dieAfter = undefined;
    void this.#send(req.url ?? '', res, obj.body, this.options.rate ?? 0, dieAfter);
  }

  async #send(url: string, res: http.ServerResponse, body: Buffer, rate: number, dieAfter: number | undefined): Promise<void> {
    const chunk = 64 * 1024;
    const limit = dieAfter ?? body.length;
    const start = Date.now();
    for (let off = 0; off < limit; off += chunk) {
      if (res.destroyed) return;
      const end = Math.min(off + chunk, limit);
      const ok = res.write(body.subarray(off, end));
      this.#sent.set(url, end);
      if (!ok) await new Promise((r) => res.once('drain', r));
      if (rate > 0) {
        const due = start + ((off + chunk) / rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    }
    if (dieAfter !== undefined) res.socket?.destroy();
    else res.end();
  }
}

function pick(h: Record<string, string>, ...names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) if (h[n] !== undefined) out[n] = h[n]!;
  return out;
}

/**
 * Fast non-repeating filler (random bytes are slow to make at 64 MiB): xorshift32 words
 * stored through a typed array, half the CPU of a writeUInt32LE call per word. Not pooled
 * (allocUnsafeSlow): the words start at an aligned offset.
 */
export function randomish(size: number): Buffer {
  const buf = Buffer.allocUnsafeSlow(size); // never from the pool: at offset 0, so written a whole word at a time
  const words = new Uint32Array(buf.buffer, 0, size >>> 2); // three times faster than writeUInt32LE
  let x = (Math.random() * 0xffffffff) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    words[i] = x;
  }
  for (let i = words.length * 4; i < size; i++) buf[i] = i & 0xff;
  return buf;
}

/** A random body of `size` bytes and its sha256 (hex): what addBlob serves, or serveBlob for one made once per file. */
export function randomBlob(size: number): { hex: string; body: Buffer } {
  const body = randomish(size);
  return { hex: sha256(body), body };
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
