// Sending a byte range of a local file as a response body through two recycled buffers.
// A fresh buffer per chunk (what fs read streams do) makes V8 run a full collection every
// few dozen MiB under "external memory pressure"; at GB/s that was most of the CPU.
import type { FileHandle } from 'node:fs/promises';
import type { FastifyReply } from 'fastify';

const CHUNK = 1024 * 1024;
const BUFFERS = 2;

/**
 * Answers with `length` bytes of `file` from `start`, using the status and headers already
 * set on `reply`, and closes the file. The first chunk is read before the reply is taken
 * over, so a file that cannot be read still gets fastify's error answer. A buffer is
 * reused only once the socket has taken it (the write callback). `sent` is told each chunk.
 */
export async function sendFileRange(
  reply: FastifyReply,
  file: FileHandle,
  start: number,
  length: number,
  sent: (bytes: number) => void,
): Promise<void> {
  const size = Math.min(CHUNK, length);
  const free: Buffer[] = [];
  let allocated = 1;
  let position = start;
  let remaining = length;
  let first: Buffer;
  try {
    first = Buffer.allocUnsafeSlow(size);
    await readExactly(file, first, Math.min(size, remaining), position);
  } catch (err) {
    await file.close();
    throw err;
  }
  reply.hijack();
  const res = reply.raw;
  res.statusCode = reply.statusCode;
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) res.setHeader(name, value);

  let closed = false;
  let wake: (() => void) | undefined;
  const ready = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  res.once('close', () => {
    closed = true;
    ready();
  });
  const write = (buf: Buffer, n: number) => {
    position += n;
    remaining -= n;
    sent(n);
    res.write(n === buf.length ? buf : buf.subarray(0, n), () => {
      free.push(buf);
      ready();
    });
  };

  try {
    write(first, Math.min(size, remaining));
    while (remaining > 0 && !closed) {
      let buf = free.pop();
      if (!buf && allocated < BUFFERS) {
        allocated++;
        buf = Buffer.allocUnsafeSlow(size);
      }
      if (!buf) {
        await new Promise<void>((resolve) => { wake = resolve; });
        continue;
      }
      const n = Math.min(size, remaining);
      await readExactly(file, buf, n, position);
      if (!closed) write(buf, n);
    }
    if (!closed) res.end();
  } catch (err) {
    // Headers are out: all that is left is to cut the connection, as for a failing stream.
    reply.log.warn({ err }, 'reading a blob failed mid-response');
    res.destroy(err as Error);
  } finally {
    await file.close();
  }
}

/** Fills buf[0, n) from `position`; a short file is an error, not a short body. */
async function readExactly(file: FileHandle, buf: Buffer, n: number, position: number): Promise<void> {
  let done = 0;
  while (done < n) {
    const { bytesRead } = await file.read(buf, done, n - done, position + done);
    if (bytesRead === 0) throw new Error(`blob file ended ${n - done} bytes early at offset ${position + done}`);
    done += bytesRead;
  }
}
