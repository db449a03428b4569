// The base and target of an encode: a file read in pieces (one streaming pass that hashes
// and indexes it, then positioned reads of the ranges each window needs) or bytes already
// in memory. No whole file is ever read into memory.
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { DigestMismatchError, FleetError } from '../errors.js';
import { readFully } from '../read-fully.js';
import { indexTarBytes, TarIndexer, type TarIndex } from './tar-index.js';

/**
 * A file on disk or bytes already in memory. A file with a `digest` (sha256:<hex>) is hashed
 * in a streaming pass before anything is encoded and refused with FC_ERR_DIGEST_MISMATCH when
 * it does not match: a cached copy is checked without being held whole.
 */
export type DeltaInput = { readonly path: string; readonly digest?: string } | Uint8Array;

const SCAN_PIECE = 1 << 20;

/** An input opened for an encode: its size, its tar index, and positioned reads. */
export class OpenInput {
  private constructor(
    readonly size: number,
    readonly index: TarIndex | undefined,
    readonly name: string,
    readonly bytes: Uint8Array | undefined,
    readonly fh: FileHandle | undefined,
  ) {}

  /**
   * Opens `input`, reading it once from start to end: the tar index is built and the
   * digest, when there is one, checked (DigestMismatchError) before this returns.
   */
  static async open(input: DeltaInput, what: string): Promise<OpenInput> {
    if (input instanceof Uint8Array) return new OpenInput(input.length, indexTarBytes(input), what, input, undefined);
    const fh = await open(input.path, 'r');
    try {
      const size = (await fh.stat()).size;
      const hash = input.digest === undefined ? undefined : createHash('sha256');
      const indexer = new TarIndexer();
      const piece = Buffer.allocUnsafe(Math.min(SCAN_PIECE, Math.max(size, 1)));
      for (let done = 0; done < size; ) {
        const view = piece.subarray(0, Math.min(piece.length, size - done));
        await readAt(fh, view, done, input.path, size);
        hash?.update(view);
        indexer.update(view);
        done += view.length;
      }
      if (hash && input.digest !== undefined) {
        const got = `sha256:${hash.digest('hex')}`;
        if (got !== input.digest) throw new DigestMismatchError(input.digest, got);
      }
      return new OpenInput(size, indexer.finish(), input.path, undefined, fh);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Copies bytes [start, start + dst.length) into `dst` (a view into wasm memory). */
  async read(start: number, dst: Uint8Array): Promise<void> {
    if (this.bytes) {
      dst.set(this.bytes.subarray(start, start + dst.length));
      return;
    }
    await readAt(this.fh as FileHandle, dst, start, this.name, this.size);
  }

  async close(): Promise<void> {
    await this.fh?.close();
  }
}

/** Fills `dst` from `fh` at `position`; a file that ends first (it shrank) is FC_ERR_DELTA. */
async function readAt(fh: FileHandle, dst: Uint8Array, position: number, name: string, size: number): Promise<void> {
  const got = await readFully(fh, dst, position);
  if (got < dst.length) throw new FleetError('FC_ERR_DELTA', `${name}: file shrank while reading (${position + got} of ${size} bytes)`);
}
