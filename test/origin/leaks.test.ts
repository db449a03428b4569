// The origin runs for months: after a bounded mixed load (uploads whole, refused, or cut by
// their client; downloads whole, ranged, conditional, or left by a client half-way, reading
// or not; artifacts; pipelined requests; a head never finished), a real `fleetcache origin`
// holds no file of its data directory (nor a dashboard asset) open and no TCP connection,
// and no temp file is left. Checked to fail with a download's file left open.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import t from 'tap';
import { Agent, request } from 'undici';
import { checkReleased, held, plainGet, rawExchange, unreadLeave } from '../helpers/held.js';
import { startServerProcess } from '../helpers/processes.js';
import { failIfSlower } from '../helpers/wait.js';

const TOKEN = 'leaks-test-token-0123456789';
/** Where the dashboard's assets are read from, with a read stream each time (src/ui/dashboard.ts). */
const UI_ASSETS = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.min.css'));

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('after a mixed load, the origin holds no data file or TCP connection open, and no temp file is left', async (t) => {
  const dir = t.testdir();
  const data = join(dir, 'data');
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, `${TOKEN}\n`, { mode: 0o600 });
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', data, '--token-file', tokens]);
  const port = Number(new URL(origin.url).port);
  const pid = origin.child.pid!;
  const watched = [data, UI_ASSETS] as const;
  const before = new Map([[pid, held(pid, watched)]]);
  const busy = { tcp: 0, dataFiles: 0 };

  const agent = new Agent({ connections: 8 });
  t.teardown(() => agent.destroy());
  const auth = { authorization: `Bearer ${TOKEN}` };
  const call = async (method: 'GET' | 'HEAD' | 'PUT', p: string, headers: Record<string, string> = {}, body?: Buffer): Promise<number> => {
    const res = await request(`${origin.url}${p}`, { method, headers, dispatcher: agent, ...(body ? { body } : {}) });
    await res.body.dump();
    return res.statusCode;
  };
  const small = Array.from({ length: 16 }, () => randomBytes(4096));
  const large = Array.from({ length: 3 }, () => randomBytes(4 * 1024 * 1024));
  // More than a socket's buffers hold (up to 4 MiB to send here, 128 KiB to receive): a client that does not read stalls its answer.
  const huge = randomBytes(16 * 1024 * 1024);

  const load = async (): Promise<void> => {
    // Uploads: whole (small and large, side by side), refused (wrong digest, no token), cut by their client.
    const stored = await Promise.all([...small, ...large, huge].map((b) => call('PUT', `/cas/sha256/${sha256(b)}`, auth, b)));
    t.ok(stored.every((s) => s === 201), 'blobs uploaded');
    t.equal(await call('PUT', `/cas/sha256/${sha256(large[0]!)}`.replace(/.$/, '0'), auth, large[1]), 400, 'a digest that does not match: refused');
    t.equal(await call('PUT', `/cas/sha256/${'1'.repeat(64)}`, {}, large[1]).catch(() => 401), 401, 'no token: refused');
    const head = (coding: string) => `PUT /cas/sha256/${'2'.repeat(64)} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer ${TOKEN}\r\n${coding}\r\n\r\n`;
    await rawExchange(port, Buffer.concat([Buffer.from(head('Content-Length: 1048576')), randomBytes(65536)]), () => false, 200);
    await rawExchange(port, Buffer.concat([Buffer.from(head('Transfer-Encoding: chunked')), Buffer.from('10000\r\n'), randomBytes(65536), Buffer.from('\r\n10000\r\n')]), () => false, 200);
    t.equal(await call('PUT', '/artifacts/run-1/job-1/report.txt', auth, Buffer.from('a report')), 201, 'an artifact');
    // Downloads: whole, tooltool's alias, ranged, HEAD, conditional; artifacts.
    await Promise.all(small.map((b) => call('GET', `/cas/sha256/${sha256(b)}`)));
    await Promise.all(small.slice(0, 4).map((b) => call('GET', `/sha256/${sha256(b)}`)));
    const big = sha256(large[0]!);
    t.equal(await call('GET', `/cas/sha256/${big}`, { range: 'bytes=1000000-1999999' }), 206);
    t.equal(await call('HEAD', `/cas/sha256/${big}`), 200);
    t.equal(await call('GET', `/cas/sha256/${big}`, { 'if-none-match': `"sha256:${big}"` }), 304);
    t.equal(await call('GET', '/artifacts/run-1/job-1/report.txt'), 200);
    // Clients that leave a large download half-way: reading (the rest may be in the socket
    // buffers by then), and not reading a larger one (it is not: the answer waits on a full window).
    await Promise.all(large.map((b) => rawExchange(port, plainGet(`/cas/sha256/${sha256(b)}`), (got) => got > 100_000)));
    const stalled = [0, 1].map(() => unreadLeave(port, plainGet(`/cas/sha256/${sha256(huge)}`), 400));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const now = held(pid, watched);
    busy.tcp = now.tcp;
    busy.dataFiles = now.dataFiles.length;
    await Promise.all(stalled);
    // Pipelined requests, the client gone after its first bytes: answers sent from files, and
    // from streams (the dashboard's assets); a head never finished.
    await rawExchange(port, large.map((b) => plainGet(`/cas/sha256/${sha256(b)}`)).join(''), (got) => got > 100);
    await rawExchange(port, [plainGet(`/cas/sha256/${big}`), ...Array(3).fill(plainGet('/-/ui/assets/uPlot.iife.min.js'))].join(''), (got) => got > 100);
    await rawExchange(port, 'GET /cas/sha256/', () => false, 100);
  };
  await failIfSlower(t, 'the load', 60_000, load);
  t.ok(busy.tcp > 0 && busy.dataFiles > 0, `while busy, TCP connections (${busy.tcp}) and data files (${busy.dataFiles}) were seen open`);
  t.equal(await call('GET', `/cas/sha256/${sha256(small[0]!)}`), 200, 'the origin still serves');
  await agent.close();
  await checkReleased(t, before, watched, origin.stderr);
});
