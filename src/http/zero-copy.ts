// Zero-copy response bodies: the rest of a large body goes from the file to the socket by
// sendfile(2) in a native thread (src/native/sendfile.c, built by scripts/build-native.mjs),
// never through JavaScript. Reading a file into buffers and writing them to a socket
// copies every byte twice; on a cached 256 MiB object served to 8 clients that was 0.35 s
// of CPU per GB against nginx's 0.09 with sendfile (bench/RESULTS.md, run 39).
//
// Without the addon (no C compiler where it was built), with FLEETCACHE_SENDFILE=0, on a
// socket that is not plain TCP, for a chunked body, or past MAX_TRANSFERS at once, the
// callers (BodyWriter.sendFile) write from buffers instead: same bytes, same accounting.
import { existsSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, type Registry } from 'prom-client';
import { errorMessage } from '../errors.js';

interface SendfileAddon {
  start(socketFd: number, fileFd: number, offset: number, length: number, idleMs: number, done: (error: string | null, sent: number) => void): object;
  cancel(handle: object): void;
}

/** Where scripts/build-native.mjs puts the addon (from src/http/ and dist/http/ alike). */
const ADDON_PATH = fileURLToPath(new URL('../../dist/native/sendfile.node', import.meta.url));

/** Transfers at once, each a thread; past it, bodies go through buffers. */
const MAX_TRANSFERS = 256;

/** The addon, or why there is none. */
type Loaded = { addon: SendfileAddon; reason?: undefined } | { addon?: undefined; reason: string };

let loaded: Loaded | undefined;
let active = 0;
/** Bytes this process sent by sendfile. */
let sentBytes = 0;

function load(): Loaded {
  if (loaded) return loaded;
  if (process.env.FLEETCACHE_SENDFILE === '0') loaded = { reason: 'FLEETCACHE_SENDFILE=0' };
  else if (process.platform !== 'linux') loaded = { reason: `not on ${process.platform}` };
  else if (!existsSync(ADDON_PATH)) loaded = { reason: `${ADDON_PATH} was not built` };
  else {
    try {
      loaded = { addon: createRequire(import.meta.url)(ADDON_PATH) as SendfileAddon };
    } catch (err) {
      loaded = { reason: `loading ${ADDON_PATH}: ${errorMessage(err)}` };
    }
  }
  return loaded;
}

/** Whether bodies go out by sendfile, and why not: for the server's start-up log. */
export function zeroCopyStatus(): { enabled: true } | { enabled: false; reason: string } {
  const { addon, reason } = load();
  return addon ? { enabled: true } : { enabled: false, reason };
}

/** Adds this process's sendfile figures to `registry`: bytes sent, transfers running. */
export function registerZeroCopyMetrics(registry: Registry): void {
  new Counter({
    name: 'fleetcache_sendfile_bytes_total',
    help: 'Body bytes sent by sendfile(2), without a copy through the process (a part of the bytes sent).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(sentBytes);
    },
  });
  new Gauge({
    name: 'fleetcache_sendfile_transfers',
    help: `Transfers by sendfile(2) running now, a thread each (at most ${MAX_TRANSFERS} per process: past it, bodies go through buffers).`,
    registers: [registry],
    collect() {
      this.set(active);
    },
  });
}

/** The descriptor of a plain TCP socket (not TLS), which sendfile can write to. */
function socketFd(res: ServerResponse): number | undefined {
  const socket = res.socket as (ServerResponse['socket'] & { _handle?: { fd?: unknown }; encrypted?: boolean }) | null;
  if (!socket || socket.encrypted || socket.destroyed) return undefined;
  const fd = socket._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

interface ZeroCopyResult {
  readonly sent: number;
  /** Undefined when all `length` bytes went out. */
  readonly error?: Error;
}

/**
 * Sends `length` bytes of `file` from `offset` on the socket of `res`, whose headers and
 * earlier body bytes must all have reached the socket (nothing buffered in node), or
 * returns undefined when it cannot (then nothing was sent). The response is left open: the
 * caller ends it, or destroys it on an error. Node's idle timeout of the socket is held
 * off meanwhile and applied by the transfer itself.
 */
export function sendZeroCopy(res: ServerResponse, file: FileHandle, offset: number, length: number): Promise<ZeroCopyResult> | undefined {
  const { addon } = load();
  if (!addon || active >= MAX_TRANSFERS) return undefined;
  // Bytes as they are: not a chunked body (a fill of unknown size), whose framing node writes.
  if (res.getHeader('content-length') === undefined || res.getHeader('transfer-encoding') !== undefined) return undefined;
  const fd = socketFd(res);
  if (fd === undefined || res.socket!.writableLength > 0) return undefined;
  const socket = res.socket!;
  const idleMs = socket.timeout ?? 0;
  let finish!: (result: ZeroCopyResult) => void;
  const finished = new Promise<ZeroCopyResult>((resolve) => (finish = resolve));
  let handle: object;
  try {
    handle = addon.start(fd, file.fd, offset, length, idleMs, (error, sent) => {
      active--;
      sentBytes += sent;
      res.off('close', cancel);
      res.off('timeout', busy);
      if (idleMs > 0 && !socket.destroyed) socket.setTimeout(idleMs);
      finish(error === null ? { sent } : { sent, error: transferError(error, sent, length) });
    });
  } catch {
    return undefined; // no descriptor or no thread to spare: the caller writes from buffers
  }
  active++;
  if (idleMs > 0) socket.setTimeout(0);
  const cancel = (): void => addon.cancel(handle);
  res.once('close', cancel);
  // A socket timeout armed meanwhile (a request pipelined behind this one re-arms it) sees
  // no traffic from node: with a listener on the answer, node leaves the socket alone.
  res.on('timeout', busy);
  return finished;
}

/** Listens for a socket timeout during a transfer: the transfer applies the idle limit itself. */
function busy(): void {}

function transferError(code: string, sent: number, length: number): Error {
  const err: Error & { code?: string } =
    code === 'ESHORT' ? new Error(`blob file ended ${length - sent} bytes early`) : code === 'ETIMEDOUT' ? new Error('the client took no bytes for the idle timeout') : new Error(`sendfile: ${code} after ${sent} of ${length} bytes`);
  err.code = code;
  return err;
}
