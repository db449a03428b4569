// Sending a large fill while it grows. Each client walks the fill with a FillCursor and
// writes what it gets straight to its socket (BodyWriter): slices of the windows the fill
// keeps in memory, shared by every reader, or, for a reader further behind, the fill's
// file: by sendfile when a MiB or more is there (zero-copy.ts), else chunks read into the
// writer's recycled buffers. No Readable, no buffer per read.
import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { UpstreamError } from '../errors.js';
import { BodyWriter } from '../http/body-writer.js';
import { WINDOW, WINDOW_WAIT_MS, type FillSource } from './fill-progress.js';

/** Reads from the file go this far at a time (readers behind the windows kept in memory). */
const FILE_CHUNK = 1024 * 1024;
/** Sent by sendfile (when it can) from this many bytes of the file on: less is read and written. */
const ZERO_COPY_MIN = FILE_CHUNK;
/** What `next` returns for bytes its `sendFile` sent. */
const SENT = Buffer.alloc(0);
/** Writes in flight per client: four windows (1 MiB), or four file chunks for a reader behind them. */
const SLOTS = 4;

/**
 * Walks bytes [start, last] of a growing fill. The last byte of the fill is held back
 * until the fill has ended, and a failed fill throws its error: a client never sees a
 * complete-looking body of a failed fill. For a verified fill (/cas) the last byte of a
 * range is held back too: a range is only complete once the whole body hashed right.
 */
export class FillCursor {
  readonly #fill: FillSource;
  readonly #file: FileHandle | undefined;
  #pos: number;
  readonly #last: number;
  #waitingSince: number | undefined;

  /** `file`: the fill's, from `acquireFile` (undefined for a fill in memory only). */
  constructor(fill: FillSource, file: FileHandle | undefined, start: number, last: number) {
    this.#fill = fill;
    this.#file = file;
    this.#pos = start;
    this.#last = last;
  }

  /**
   * The next bytes, once there are any: a slice of a window in memory, or read from the
   * file into `scratch()`, or sent from the file by `sendFile` (then an empty buffer; false
   * from it: not sent, read them). Null at the end.
   */
  async next(scratch: () => Buffer, sendFile?: (file: FileHandle, offset: number, length: number) => Promise<boolean>): Promise<Buffer | null> {
    const fill = this.#fill;
    for (;;) {
      if (fill.error) throw fill.error;
      if (this.#pos > this.#last || (fill.ended && this.#pos >= fill.written)) return null;
      const end = Math.min(fill.readable, fill.verified && !fill.ended ? this.#last : this.#last + 1);
      if (end <= this.#pos) {
        await fill.progress();
        continue;
      }
      const windowEnd = Math.min((Math.floor(this.#pos / WINDOW) + 1) * WINDOW, this.#last + 1);
      if (end < windowEnd && !fill.ended) {
        // At the tail of a running fill: wait for the rest of the window, unless that
        // takes long or upstream paused (bytes still go out as they arrive, in batches).
        const now = Date.now();
        this.#waitingSince ??= now;
        if (now - this.#waitingSince < WINDOW_WAIT_MS && !fill.paused) {
          await fill.progress();
          continue;
        }
      }
      this.#waitingSince = undefined;
      const n = Math.min(end, windowEnd) - this.#pos;
      const recent = fill.recentWindow(this.#pos, this.#pos + n);
      if (recent) {
        this.#pos += n;
        return recent;
      }
      // A fill in memory only (the disk refuses writes, or failed mid-fill) has dropped what
      // this reader needs, and its file (if any) does not hold it.
      const fileEnd = Math.min(end, fill.fileHolds);
      if (!this.#file || fileEnd <= this.#pos) throw new UpstreamError(`this client fell behind what the fill's file holds and its windows keep in memory (at ${this.#pos} of ${fill.written})`);
      // Behind the windows kept in memory: the file, as far as is readable.
      const behind = fileEnd - this.#pos;
      if (sendFile && behind >= ZERO_COPY_MIN && (await sendFile(this.#file, this.#pos, behind))) {
        this.#pos += behind;
        return SENT;
      }
      const buf = scratch();
      const { bytesRead } = await this.#file.read(buf, 0, Math.min(buf.length, behind), this.#pos);
      if (bytesRead === 0) throw new Error(`the fill's file ended at ${this.#pos} of ${fileEnd} bytes`);
      this.#pos += bytesRead;
      return buf.subarray(0, bytesRead);
    }
  }
}

/**
 * Counts the caller as a reader of `fill` (acquireFile) until it calls `release` or `res`
 * closes (its client gone), whichever comes first: a client that left must not keep a
 * fill nobody keeps going (see Fill.unread). `release` may be called more than once.
 */
export function readUntilClosed(fill: FillSource, res: ServerResponse): { file: FileHandle | undefined; release: () => void } {
  const file = fill.acquireFile();
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    fill.release();
  };
  // Closed before (its client left while the fill waited for upstream's head): its 'close' is past.
  if (res.destroyed) release();
  else res.once('close', release);
  return { file, release };
}

/**
 * Answers with bytes [start, last] of a large fill (last = Infinity: to the end), after the
 * status and headers set on `res`. A failure of the fill cuts the connection. A client
 * that goes away is noticed at the fill's next progress; it stops counting as a reader at
 * once (a fill nobody keeps stops when no reader is left: see Fill.unread). `sent` is told
 * each chunk handed to the socket.
 */
export async function sendFill(res: ServerResponse, fill: FillSource, start: number, last: number, sent: (bytes: number) => void): Promise<void> {
  const { file, release } = readUntilClosed(fill, res);
  const writer = new BodyWriter(FILE_CHUNK, SLOTS);
  writer.attach(res);
  // The head goes out now, not with the first byte: the cursor holds the fill's last byte
  // back, so a body that stalls early (upstream silent until its body timeout) would hold
  // the status too, and its cut would reach the client as an empty reply.
  if (!res.headersSent) res.flushHeaders();
  const cursor = new FillCursor(fill, file, start, last);
  const scratch = () => writer.scratch();
  const sendFile = (f: FileHandle, offset: number, length: number) => writer.sendFile(f, offset, length, sent);
  try {
    while (await writer.ready()) {
      const bytes = await cursor.next(scratch, sendFile);
      if (!bytes) break;
      if (bytes === SENT || writer.closed) continue;
      sent(bytes.length);
      writer.write(bytes);
    }
    writer.end();
  } catch (err) {
    writer.abort(err as Error);
  } finally {
    release();
  }
}
