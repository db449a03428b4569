// The floor under a download's rate (src/client/speed-floor.ts) against real servers: a body
// the reader itself holds back is not taken for a slow server.
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpGet } from '../../src/client/http.js';

const FLOOR = { minBytesPerSecond: 16 * 1024, windowMs: 1000 };

t.test('a fast server whose body the reader takes at half the floor, for three windows, is not given up on', async (t) => {
  const body = Buffer.alloc(8 << 20, 0x61);
  const server = createServer((_req, res) => res.writeHead(200, { 'content-length': String(body.length) }).end(body));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const res = await httpGet(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { speedFloor: FLOOR });
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
