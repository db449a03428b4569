// Secondary compression of a VCDIFF with node:zlib (xdelta3-wasm has none of its own): whole
// in memory to compress (push), streamed to decompress (every machine that pulls).
// Brotli and gzip were measured on real package deltas (bench/delta.ts, bench/RESULTS.md);
// DEFAULT_COMPRESSION is the winner. Reading auto-detects: raw VCDIFF and gzip have magic
// numbers, anything else is tried as brotli.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { brotliCompressSync, constants, createBrotliDecompress, createGunzip, gzipSync } from 'node:zlib';
import { FleetError, SizeMismatchError } from '../errors.js';
import { isVcdiff } from './vcdiff.js';

export const COMPRESSIONS = ['none', 'gzip', 'brotli'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
export const DEFAULT_COMPRESSION: Compression = 'brotli';

export function isCompression(value: string): value is Compression {
  return (COMPRESSIONS as readonly string[]).includes(value);
}

function brotli(vcdiff: Uint8Array, quality: number): Buffer {
  return brotliCompressSync(vcdiff, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: quality,
      [constants.BROTLI_PARAM_LGWIN]: constants.BROTLI_MAX_WINDOW_BITS,
      [constants.BROTLI_PARAM_SIZE_HINT]: vcdiff.length,
    },
  });
}

/** Brotli's fast pass: about 100 MB/s, where quality 11 does 1 MB/s on what does not compress. */
const FAST_QUALITY = 5;

/**
 * Deltas are small by construction (the caller re-bases when they are not), so sync is fine.
 * Brotli runs a fast pass first; when it saves under 1% the content does not compress (new
 * random or already compressed data) and the slow pass is skipped. `fast`: only that pass,
 * for ranking and bounding candidates before the slow pass of the one kept.
 */
export function compressDelta(vcdiff: Uint8Array, compression: Compression, { fast = false } = {}): Buffer {
  switch (compression) {
    case 'none':
      return Buffer.from(vcdiff);
    case 'gzip':
      return gzipSync(vcdiff, { level: 9 });
    case 'brotli': {
      const quick = brotli(vcdiff, FAST_QUALITY);
      if (fast || quick.length > 0.99 * vcdiff.length) return quick;
      return brotli(vcdiff, constants.BROTLI_MAX_QUALITY);
    }
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
      throw new FleetError('FC_ERR_DELTA', `delta is not valid ${kind} data: ${(err as Error).message}`, { cause: err });
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
