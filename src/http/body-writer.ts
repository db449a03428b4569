// Writing a large response body straight to the socket, bypassing streams: at most `slots`
// writes in flight, and the bytes read from a file go into buffers recycled once the
// socket has taken them. A fresh buffer per chunk (what fs read streams and a Readable per
// reader do) makes V8 run a full collection every few dozen MiB under "external memory
// pressure"; at GB/s that was most of the CPU. Bytes of a file can also go by sendfile
// (`sendFile`, zero-copy.ts), once the writes before them are done.
import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { sendZeroCopy } from './zero-copy.js';

/** How a zero-copy transfer ends when the client went or stalled: cut, not logged. */
const CLIENT_GONE = new Set(['EPIPE', 'ECONNRESET', 'ECANCELED', 'ETIMEDOUT', 'ENOTCONN']);
/** A file sendfile cannot read (a filesystem without splice): written from buffers instead. */
const UNSUPPORTED = new Set(['EINVAL', 'ENOSYS', 'EOPNOTSUPP']);

/**
 * Takes the response over from fastify, with the status and headers set on `reply`. Until
 * then a failure (the first read of a file, say) can still get fastify's error answer.
 */
export function takeOver(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const res = reply.raw;
  res.statusCode = reply.statusCode;
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) res.setHeader(name, value);
  return res;
}

export class BodyWriter {
  readonly #chunkSize: number;
  readonly #slots: number;
  #res: ServerResponse | undefined;
  #free: Buffer[] = [];
  /** The buffer `scratch` lent since the last write: recycled once that write is done. */
  #lent: Buffer | undefined;
  #inFlight = 0;
  /** Whether a write went out: node writes the headers with the first one. */
  #started = false;
  #closed = false;
  #wake: (() => void) | undefined;

  /** `chunkSize`: the size of a scratch buffer; `slots`: writes in flight at most. */
  constructor(chunkSize: number, slots = 2) {
    this.#chunkSize = chunkSize;
    this.#slots = slots;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Writes the body of `res`, whose status and headers are set (see `takeOver`). */
  attach(res: ServerResponse): void {
    // (one queued behind others of a pipelining client that left is closed by pipeline-order.ts)
    res.once('close', () => this.#close());
    this.#res = res;
    // Closed before this answer was ready (its client left meanwhile): nothing to read or write.
    if (res.destroyed) this.#close();
  }

  /**
   * A buffer of `chunkSize` bytes to read the next chunk into. There always is one once
   * `ready` said so: each write in flight holds at most one, and fewer than `slots` are.
   */
  scratch(): Buffer {
    if (!this.#lent) {
      this.#lent = this.#free.pop() ?? Buffer.allocUnsafeSlow(this.#chunkSize);
    }
    return this.#lent;
  }

  /** Writes `bytes` (a slice of the scratch buffer, or of a buffer nobody changes). */
  write(bytes: Buffer): void {
    const lent = this.#lent;
    this.#lent = undefined;
    if (this.#closed || !this.#res) {
      if (lent) this.#free.push(lent);
      return;
    }
    this.#inFlight++;
    this.#started = true;
    this.#res.write(bytes, () => {
      this.#inFlight--;
      if (lent) this.#free.push(lent);
      this.#ready();
    });
  }

  /** Waits until another write may go; false once the client has gone. */
  ready(): Promise<boolean> {
    return this.#fewerInFlightThan(this.#slots);
  }

  /** Waits until every write is done (nothing of the body left in node); false once the client has gone. */
  settled(): Promise<boolean> {
    return this.#fewerInFlightThan(1);
  }

  async #fewerInFlightThan(limit: number): Promise<boolean> {
    while (!this.#closed && this.#inFlight >= limit) await new Promise<void>((resolve) => (this.#wake = resolve));
    return !this.#closed;
  }

  /**
   * Sends `length` bytes of `file` from `offset` by sendfile (zero-copy.ts) once every
   * earlier write is done, telling `sent` how many went. False when it cannot (then
   * nothing was sent: write them instead), as before the first write, which carries the
   * headers. A client gone or stalled cuts the response; any other failure (a short
   * file) throws.
   */
  async sendFile(file: FileHandle, offset: number, length: number, sent: (bytes: number) => void): Promise<boolean> {
    if (!this.#res || !this.#started) return false;
    if (!(await this.settled())) return true; // the client has gone: nothing more to send
    const transfer = sendZeroCopy(this.#res, file, offset, length);
    if (!transfer) return false;
    const { sent: n, error } = await transfer;
    const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
    if (n === 0 && UNSUPPORTED.has(code)) return false;
    sent(n);
    if (error) {
      if (!CLIENT_GONE.has(code)) throw error;
      this.abort(error);
    }
    return true;
  }

  end(): void {
    if (!this.#closed) this.#res?.end();
    this.#close();
  }

  /** Cuts the connection: the client sees an aborted body, never a clean end. */
  abort(err: Error): void {
    if (!this.#closed) this.#res?.destroy(err);
    this.#close();
  }

  #close(): void {
    this.#closed = true;
    this.#ready();
  }

  #ready(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }
}
