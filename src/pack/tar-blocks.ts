// The bytes of a tar gathered into blocks of BLOCK_BYTES: headers, bodies and paddings are
// copied into one buffer, handed on when it is full, so the consumer (hashing, the file
// write) sees a few large chunks instead of three small ones per file.
import { TAR_BLOCK } from './tar-header.js';

/** The size of the blocks the tar is handed on in. */
const BLOCK_BYTES = 256 * 1024;

/** What ends a tar: two blocks of zeros. */
const END_OF_TAR = Buffer.alloc(2 * TAR_BLOCK);

export class TarBlocks {
  #block = Buffer.allocUnsafe(BLOCK_BYTES);
  #used = 0;
  #full: Buffer[] = [];

  /** Appends `bytes`. */
  write(bytes: Uint8Array): void {
    for (let from = 0; from < bytes.length; ) {
      const n = Math.min(bytes.length - from, BLOCK_BYTES - this.#used);
      this.#block.set(bytes.subarray(from, from + n), this.#used);
      this.#used += n;
      from += n;
      if (this.#used === BLOCK_BYTES) this.#handOn();
    }
  }

  /** Appends the zeros that pad a body of `size` bytes to a whole tar block. */
  pad(size: number): void {
    const rest = size % TAR_BLOCK;
    if (rest !== 0) this.write(END_OF_TAR.subarray(0, TAR_BLOCK - rest));
  }

  /** The blocks filled since the last call. */
  takeFull(): Buffer[] {
    const full = this.#full;
    this.#full = [];
    return full;
  }

  /** Ends the tar: the blocks not yet taken, the last one partly filled. */
  end(): Buffer[] {
    this.write(END_OF_TAR);
    if (this.#used > 0) this.#full.push(this.#block.subarray(0, this.#used));
    this.#used = 0;
    return this.takeFull();
  }

  #handOn(): void {
    this.#full.push(this.#block);
    this.#block = Buffer.allocUnsafe(BLOCK_BYTES);
    this.#used = 0;
  }
}
