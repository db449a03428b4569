// Secondary compression of a VCDIFF with node:zlib (xdelta3-wasm has none of its own), file to
// file: streamed to compress (push: a delta can be as large as the tar) and to decompress
// (every machine that pulls).
// Brotli and gzip were measured on real package deltas (bench/delta.ts, bench/RESULTS.md);
// DEFAULT_COMPRESSION is the winner. Reading auto-detects: raw VCDIFF and gzip have magic
// numbers, anything else is tried as brotli.
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, open, stat } from 'node:fs/promises';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants, createBrotliCompress, createBrotliDecompress, createGunzip, createGzip } from 'node:zlib';
import { errorMessage, FleetError, SizeMismatchError } from '../errors.js';
import { isVcdiff } from './vcdiff.js';

export const COMPRESSIONS = ['none', 'gzip', 'brotli'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
export const DEFAULT_COMPRESSION: Compression = 'brotli';

export function isCompression(value: string): value is Compression {
  return (COMPRESSIONS as readonly string[]).includes(value);
}

/** Brotli's fast pass: about 100 MB/s, where quality 11 does 1 MB/s on what does not compress. */
const FAST_QUALITY = 5;
/**
 * The slow pass is quality 11 up to this many bytes of VCDIFF, else LARGE_QUALITY: a push
 * waits for it. Measured on 8 MB of a project tar (new files, as a delta of new content
 * carries them): quality 11 took 12.8 s for 1.28 MB, 10 10.3 s, 9 1.35 s for 12% more, 5
 * 0.65 s for 16% more. Small deltas (the benchmark's: 47-535 KB) get quality 11 in under a
 * second; a delta of several MB would spend more time compressing than it saves on the way.
 */
const SLOW_PASS_MAX_BYTES = 1024 * 1024;
const LARGE_QUALITY = 9;

/** A compressing stream; undefined for `none`. `quality` (brotli): FAST_QUALITY or the maximum. */
function compressor(compression: Compression, size: number, quality: number): Transform | undefined {
  switch (compression) {
    case 'none':
      return undefined;
    case 'gzip':
      return createGzip({ level: 9 });
    case 'brotli':
      return createBrotliCompress({
        params: {
          [constants.BROTLI_PARAM_QUALITY]: quality,
          [constants.BROTLI_PARAM_LGWIN]: constants.BROTLI_MAX_WINDOW_BITS,
          [constants.BROTLI_PARAM_SIZE_HINT]: size,
        },
      });
  }
}

/** Writes `input` compressed into `output` (created or replaced); resolves to its size. */
async function compressFile(input: string, output: string, compression: Compression, size: number, quality: number): Promise<number> {
  const stream = compressor(compression, size, quality);
  if (stream) await pipeline(createReadStream(input), stream, createWriteStream(output));
  else await copyFile(input, output);
  return (await stat(output)).size;
}

/** What compressDelta wrote. */
interface CompressedDelta {
  /** Bytes of the compressed delta. */
  readonly size: number;
  /** Compression passes run over the VCDIFF: 1, or 2 when brotli's fast pass was run before its slow one. */
  readonly passes: number;
}

/**
 * Compresses the VCDIFF file `input` into `output` (created or replaced), streamed. Brotli
 * runs a fast pass first; when it saves under 1% the content does not compress (new random
 * or already compressed data) and the slow pass is skipped. The slow pass is quality 11 up
 * to SLOW_PASS_MAX_BYTES, LARGE_QUALITY above. `fastPassSize`: the fast pass's size when the
 * caller counted it already (QuickSizeCounter, as push does while the VCDIFF is written):
 * the fast pass is then run only when its output is the one kept.
 */
export async function compressDelta(input: string, output: string, compression: Compression, fastPassSize?: number): Promise<CompressedDelta> {
  const size = (await stat(input)).size;
  if (compression !== 'brotli') return { size: await compressFile(input, output, compression, size, 0), passes: 1 };
  const quick = fastPassSize ?? (await compressFile(input, output, compression, size, FAST_QUALITY));
  const fastPassRun = fastPassSize === undefined ? 1 : 0;
  const compresses = quick <= 0.99 * size;
  if (!compresses && fastPassRun) return { size: quick, passes: 1 };
  // a fast pass counted by the caller is run only when its output is the one kept
  const quality = !compresses ? FAST_QUALITY : size <= SLOW_PASS_MAX_BYTES ? constants.BROTLI_MAX_QUALITY : LARGE_QUALITY;
  return { size: await compressFile(input, output, compression, size, quality), passes: fastPassRun + 1 };
}

/** What a QuickSizeCounter answers to a write or end once destroy() gave its count up. */
function givenUpError(): FleetError {
  return new FleetError('FC_ERR_INTERNAL', 'the fast-pass size count of a VCDIFF was given up (destroyed): nothing more can be written to it or counted');
}

/**
 * The size of a VCDIFF after the fast pass (brotli's; gzip's and none's only pass), counted
 * as the VCDIFF is written, for ranking candidates before the slow pass of the one kept;
 * nothing is kept. A compressor only ever adds to what it wrote, so `counted` at any time is
 * a lower bound of the final size: a candidate already past what could be chosen can stop
 * its encode there, whatever its remaining bytes would compress to.
 */
export class QuickSizeCounter {
  readonly #stream: Transform | undefined;
  #counted = 0;
  /**
   * The compressor's error, kept for the next write or end: it may come between them, where
   * an 'error' event nothing listens to would end the process.
   */
  #error: Error | undefined;
  /** destroy() was called: nothing more is counted. */
  #givenUp = false;

  /** `sizeHint`: what the VCDIFF's size may come to (brotli tunes its pass to it). */
  constructor(compression: Compression, sizeHint: number) {
    this.#stream = compressor(compression, sizeHint, FAST_QUALITY);
    this.#stream?.on('data', (chunk: Buffer) => (this.#counted += chunk.length));
    this.#stream?.on('error', (err) => (this.#error ??= err));
  }

  /** Compressed bytes so far (raw bytes for `none`). */
  get counted(): number {
    return this.#counted;
  }

  /** Compresses `bytes` (copied: the caller may reuse its buffer once this resolves). */
  async write(bytes: Uint8Array): Promise<void> {
    const stream = this.#stream;
    if (this.#givenUp) throw givenUpError();
    if (!stream) {
      this.#counted += bytes.length;
      return;
    }
    if (this.#error) throw this.#error;
    // resolves once the compressor took the chunk in: `counted` then trails by its pending block only
    await new Promise<void>((resolve, reject) => stream.write(Buffer.from(bytes), (err) => (err ? reject(this.#givenUp ? givenUpError() : err) : resolve())));
  }

  /** The final size, once the compressor flushed what it held. */
  async end(): Promise<number> {
    const stream = this.#stream;
    if (this.#givenUp) throw givenUpError();
    if (this.#error) throw this.#error; // a stream that failed ends no more
    // a stream destroyed meanwhile closes without 'end' or 'error'
    if (stream) await new Promise<void>((resolve, reject) => stream.once('error', reject).once('end', resolve).once('close', () => reject(givenUpError())).end());
    return this.#counted;
  }

  /**
   * Frees the compressor of a count given up (an encode stopped or failed). A write or end
   * after it, or pending at the time, rejects with FC_ERR_INTERNAL (push never makes one: it
   * destroys a counter once its encode is over or restarted with a new one); without that, an
   * end would never settle and a write would fail with Node's bare ERR_STREAM_DESTROYED.
   */
  destroy(): void {
    this.#givenUp = true;
    this.#stream?.destroy();
  }
}

export function detectCompression(bytes: Uint8Array): Compression {
  if (isVcdiff(bytes)) return 'none';
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return 'gzip';
  return 'brotli';
}

/**
 * The raw VCDIFF of the delta file `file` (any of our compressions, detected from its first
 * bytes unless given), read and decompressed as it is consumed: a delta is never whole in
 * memory. `size`: the VCDIFF's size as a run manifest states it: decompression stops past it
 * (a few compressed bytes can stand for gigabytes), and any other size is refused.
 */
export async function* deltaChunks(file: string, compression?: Compression, size?: number): AsyncGenerator<Buffer> {
  const kind = compression ?? detectCompression(await firstBytes(file, 4));
  const source = createReadStream(file);
  const inflate = kind === 'gzip' ? createGunzip() : kind === 'brotli' ? createBrotliDecompress() : undefined;
  let readError: Error | undefined;
  source.once('error', (err) => {
    readError = err;
    inflate?.destroy(err);
  });
  let total = 0;
  try {
    for await (const chunk of (inflate ? source.pipe(inflate) : source) as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (size !== undefined && total > size) throw new SizeMismatchError(size, total);
      yield chunk;
    }
  } catch (err) {
    if (inflate && err !== readError && !(err instanceof FleetError)) {
      throw new FleetError('FC_ERR_DELTA', `delta is not valid ${kind} data: ${errorMessage(err)}`, { cause: err });
    }
    throw err;
  } finally {
    source.destroy();
    inflate?.destroy();
  }
  if (size !== undefined && total !== size) throw new SizeMismatchError(size, total);
}

async function firstBytes(file: string, n: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(n), 0, n, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
