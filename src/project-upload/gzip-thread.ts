// The gzip of a project tar, in a thread of its own, while push encodes the delta in this
// one (but for a small tar: see gzipFile). node:zlib compresses in libuv's threadpool, but each step of its stream needs a turn
// of the thread that runs it, and an encode holds this thread for a window at a time (xdelta3
// in wasm): here, the gzip of a 113 MB tar advanced by a piece per window and ended seconds
// after the encode. In a worker its streams run on their own: a push takes the longer of the
// two, not their sum, on a machine with two cores or more.
//
// The worker's code is source text (eval), not a module file: it then runs the same whether
// the CLI is bundled (dist/cli), compiled for the tests, or run from source by tsx, and it
// needs node's own modules only. Its tap is hashingTap's (src/store/hashing.ts), without the
// limit and the progress, written again on purpose: to import that module, the worker would
// need a module file of its own, which Node 20 does not load from source (a .ts worker under
// tsx fails with "Unknown file extension", even with --import tsx in its execArgv), and which
// the CLI bundle would need as an entry of its own (hashing.ts has no file there: it is in a
// shared chunk). The test checks the digest and size it reports against the bytes written.
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Worker } from 'node:worker_threads';
import { createGzip } from 'node:zlib';
import { hashingTap } from '../store/hashing.js';

const GZIP_LEVEL = 6;
/** Pieces of 1 MiB: fewer turns of the worker's loop per byte than 64 KiB streams. */
const PIECE = 1 << 20;
/**
 * The largest tar compressed in the calling thread: one piece, which zlib compresses in a few
 * ms of libuv's pool in one turn of the loop, where a thread's start costs ~0.15 s of CPU
 * (a new V8 isolate and Node's bootstrap in it): most of a small project's push.
 */
const IN_CALLER_MAX = PIECE;

const THREAD_SOURCE = `
const { createReadStream, createWriteStream } = require('node:fs');
const { createHash } = require('node:crypto');
const { Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const { createGzip } = require('node:zlib');
const { parentPort, workerData } = require('node:worker_threads');
const { file, out, level, piece } = workerData;
const hash = createHash('sha256');
let size = 0;
const tap = new Transform({ transform(chunk, _encoding, done) { size += chunk.length; hash.update(chunk); done(null, chunk); } });
pipeline(createReadStream(file, { highWaterMark: piece }), createGzip({ level, chunkSize: piece }), tap, createWriteStream(out)).then(
  () => parentPort.postMessage({ digest: 'sha256:' + hash.digest('hex'), size }),
  (err) => { throw err; },
);
`;

/**
 * Writes `file` gzip-compressed (level 6) to `out`, in a worker thread; resolves to the sha256
 * digest ("sha256:<hex>") and size of what it wrote. An abort of `signal` stops the worker
 * (and rejects with the signal's reason); `out` may then be partly written.
 */
export function gzipFileInThread(file: string, out: string, signal?: AbortSignal): Promise<{ digest: string; size: number }> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { file, out, level: GZIP_LEVEL, piece: PIECE } });
    const abort = (): void => {
      reject(signal?.reason);
      void worker.terminate();
    };
    signal?.addEventListener('abort', abort, { once: true });
    worker.once('message', (result: { digest: string; size: number }) => resolve(result));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      signal?.removeEventListener('abort', abort);
      reject(new Error(`the gzip thread ended (exit code ${code}) without a result`)); // nothing once settled
    });
  });
}

/** What gzipFileInThread writes and resolves to, written by the calling thread's streams. */
async function gzipFileHere(file: string, out: string, signal?: AbortSignal): Promise<{ digest: string; size: number }> {
  signal?.throwIfAborted();
  const { tap, result } = hashingTap();
  await pipeline(createReadStream(file, { highWaterMark: PIECE }), createGzip({ level: GZIP_LEVEL, chunkSize: PIECE }), tap, createWriteStream(out), signal ? { signal } : {}).catch((err: unknown) => {
    // rejected as the thread's is, with the signal's reason
    throw signal?.aborted ? signal.reason : err;
  });
  return result();
}

/**
 * gzipFileInThread for a file of `size` bytes: in the calling thread when it is at most a
 * piece (the same bytes, digest and size), else in a thread of its own.
 */
export function gzipFile(file: string, out: string, size: number, signal?: AbortSignal): Promise<{ digest: string; size: number }> {
  return size <= IN_CALLER_MAX ? gzipFileHere(file, out, signal) : gzipFileInThread(file, out, signal);
}
