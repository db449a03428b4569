// Sending a byte range of a local file as a response body: the first chunk through a
// recycled buffer, the rest by sendfile (zero-copy.ts), or through recycled buffers where
// it cannot (body-writer.ts says why not a read stream).
import type { FileHandle } from 'node:fs/promises';
import type { FastifyReply } from 'fastify';
import { BodyWriter, takeOver } from './body-writer.js';
import { readFully } from '../read-fully.js';

const CHUNK = 1024 * 1024;
/** The first chunk goes with the headers and proves the file readable; the rest by sendfile, mostly. */
const FIRST_CHUNK = 64 * 1024;

/**
 * Answers with `length` bytes of `file` from `start`, using the status and headers already
 * set on `reply`, and closes the file. The first chunk is read before the reply is taken
 * over, so a file that cannot be read still gets fastify's error answer. `sent` is told
 * each chunk handed to the socket.
 */
export async function sendFileRange(
  reply: FastifyReply,
  file: FileHandle,
  start: number,
  length: number,
  sent: (bytes: number) => void,
): Promise<void> {
  const writer = new BodyWriter(Math.min(CHUNK, length));
  let position = start;
  const end = start + length;
  const next = async (max = CHUNK): Promise<Buffer> => {
    const buf = writer.scratch();
    const n = Math.min(buf.length, max, end - position);
    // A short file is an error, not a short body.
    const got = await readFully(file, buf.subarray(0, n), position);
    if (got < n) throw new Error(`blob file ended ${n - got} bytes early at offset ${position + got}`);
    position += n;
    return n === buf.length ? buf : buf.subarray(0, n);
  };
  let first: Buffer;
  try {
    first = await next(FIRST_CHUNK);
  } catch (err) {
    await file.close();
    throw err;
  }
  writer.attach(takeOver(reply));
  try {
    const send = (chunk: Buffer): void => {
      if (writer.closed) return;
      sent(chunk.length);
      writer.write(chunk);
    };
    send(first);
    // The rest by sendfile, once the first chunk (and the headers) reached the socket.
    if (position < end && (await writer.sendFile(file, position, end - position, sent))) position = end;
    while (position < end && (await writer.ready())) send(await next());
    writer.end();
  } catch (err) {
    // Headers are out: all that is left is to cut the connection, as for a failing stream.
    reply.log.warn({ err }, 'reading a blob failed mid-response');
    writer.abort(err as Error);
  } finally {
    await file.close();
  }
}
