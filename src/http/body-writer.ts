// Writing a large response body straight to the socket, bypassing streams: at most `slots`
// writes in flight, and the bytes read from a file go into buffers recycled once the
// socket has taken them. A fresh buffer per chunk (what fs read streams and a Readable per
// reader do) makes V8 run a full collection every few dozen MiB under "external memory
// pressure"; at GB/s that was most of the CPU.
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';

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
    res.once('close', () => this.#close());
    this.#res = res;
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
    this.#res.write(bytes, () => {
      this.#inFlight--;
      if (lent) this.#free.push(lent);
      this.#ready();
    });
  }

  /** Waits until another write may go; false once the client has gone. */
  async ready(): Promise<boolean> {
    while (!this.#closed && this.#inFlight >= this.#slots) await new Promise<void>((resolve) => (this.#wake = resolve));
    return !this.#closed;
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
