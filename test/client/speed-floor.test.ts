// The floor under a download's rate (src/client/speed-floor.ts) against real servers: a body
// the reader itself holds back is not taken for a slow server; an upload the server takes
// a trickle at a time is given up on.
import t from 'tap';
import { createServer } from 'node:http';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpGet, httpPut } from '../../src/client/http.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

const FLOOR = { minBytesPerSecond: 16 * 1024, windowMs: 1000 };

t.test('a fast server whose body the reader takes at half the floor, for three windows, is not given up on', async (t) => {
  const body = Buffer.alloc(8 << 20, 0x61);
  const server = createServer((_req, res) => res.writeHead(200, { 'content-length': String(body.length) }).end(body));
  const url = await serveOnLoopback(t, server);
  const res = await httpGet(`${url}/`, { speedFloor: FLOOR });
  let failure: Error | undefined;
  res.body.once('error', (err) => (failure = err));
  // 8 KiB/s: 1 KiB every 125 ms, a few undici chunks into its buffer, then paused for want of room
  const started = Date.now();
  let read = 0;
  res.body.pause();
  while (Date.now() - started < 3 * FLOOR.windowMs && !failure) {
    await sleep(125);
    const chunk = res.body.read(1024) as Buffer | null;
    read += chunk?.length ?? 0;
  }
  t.equal(failure, undefined, `no error after ${Date.now() - started} ms (${read} bytes read)`);
  t.ok(read > 0 && read < body.length, 'the body was read slowly, part of it');
  res.body.destroy();
});

t.test('an upload the server takes below the floor, in chunks each within the idle timeout, is given up on', async (t) => {
  // 1 KiB every 100 ms (10 KiB/s) of what the socket buffered; never answers
  const server = createServer((req) => {
    const step = setInterval(() => req.read(Math.min(1024, req.readableLength)), 100);
    req.once('close', () => clearInterval(step));
  });
  const url = await serveOnLoopback(t, server);
  // small chunks, each written soon after the server made room: the idle timeout alone never fires
  const chunks = function* (): Generator<Buffer> {
    for (let i = 0; i < 32 * 1024; i++) yield Buffer.alloc(1024, 0x61);
  };
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const err = await Promise.race([
    httpPut(`${url}/up`, Readable.from(chunks()), { speedFloor: FLOOR, idleTimeout: 30_000 })
      .then(() => undefined, (e: unknown) => e as { code?: string; message?: string }),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('still uploading after 15 s')), 15_000))),
  ]).finally(() => clearTimeout(timer));
  t.equal(err?.code, 'FC_ERR_UPSTREAM_TIMEOUT');
  t.match(err?.message, /^PUT http:\/\/127\.0\.0\.1:\d+\/up: the server took the upload slower than 16 KiB\/s over 1 s \(\d+ bytes in the last 1 s\), given up on$/);
  t.ok(Date.now() - started < 8000, `within seconds (${Date.now() - started} ms)`);
});
