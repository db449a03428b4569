// An upstream that closes its connection after each answer (HTTP/1.0 servers, Python's
// http.server, `Connection: close`) while the cache reads its body slower than it comes:
// undici 7 paused its parser under backpressure and, at the peer's close, asserted it was
// not paused, an uncaught AssertionError that took the whole cache down (nodejs/undici#5360,
// fixed in undici 8, which needs Node 22). patches/undici+7.30.2.patch, applied by npm's
// postinstall, finishes such an answer instead. Without it this file's process dies.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { Upstream } from '../../src/cache/upstream.js';
import { fetchHash, startCache } from './harness.js';

type Framing = 'length' | 'chunked' | 'close';

/** Answers every request with `body` framed as asked, then closes the connection. */
async function closingServer(t: Test, body: Buffer, framing: Framing | ((path: string) => Framing), cut = 0): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => undefined);
    let head = '';
    sock.on('data', (chunk) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const path = head.split(' ')[1] ?? '/';
      const how = typeof framing === 'function' ? framing(path) : framing;
      const sent = body.subarray(0, body.length - cut);
      const fields = ['HTTP/1.1 200 OK', 'Connection: close', 'Cache-Control: max-age=600'];
      if (how === 'length') fields.push(`Content-Length: ${body.length}`);
      if (how === 'chunked') fields.push('Transfer-Encoding: chunked');
      sock.write(`${fields.join('\r\n')}\r\n\r\n`);
      if (how === 'chunked') sock.write(`${sent.length.toString(16)}\r\n`);
      sock.write(sent);
      if (how === 'chunked' && cut === 0) sock.write('\r\n0\r\n\r\n');
      sock.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const sha256 = (b: Buffer | Uint8Array): string => createHash('sha256').update(b).digest('hex');
const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reads `body` only after a pause, so that the socket's end comes while the parser is paused. */
async function readLate(body: AsyncIterable<Buffer>): Promise<Buffer> {
  await later(150);
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

t.test('an answer read after its connection closed arrives whole, however it is framed', async (t) => {
  // 64 KiB is undici's high-water mark: bodies around it end with the parser paused.
  // Each size and framing has its server and upstream: they wait out their pauses at once.
  const cases = [65_536, 65_537, 100_000].flatMap((size) => (['length', 'chunked', 'close'] as const).map((framing) => ({ size, framing })));
  await Promise.all(cases.map(async ({ size, framing }) => {
    const body = randomBytes(size);
    const upstream = new Upstream('closing', await closingServer(t, body, framing), DEFAULT_TIMEOUTS);
    t.teardown(() => upstream.close());
    const res = await upstream.request('/x', { method: 'GET', headers: {} });
    t.equal(sha256(await readLate(res.body as AsyncIterable<Buffer>)), sha256(body), `request, ${size} bytes, ${framing}`);
    const answer = await upstream.fetch('/y', {}, 1024);
    t.ok(answer.body, 'a stream');
    t.equal(sha256(await readLate(answer.body!)), sha256(body), `fetch (a fill's), ${size} bytes, ${framing}`);
  }));
});

t.test('an answer its server cut short is still an error, not a clean end', async (t) => {
  const body = randomBytes(100_000);
  for (const framing of ['length', 'chunked'] as const) {
    const upstream = new Upstream('closing', await closingServer(t, body, framing, 30_000), DEFAULT_TIMEOUTS);
    t.teardown(() => upstream.close());
    const res = await upstream.request('/x', { method: 'GET', headers: {} });
    await t.rejects(readLate(res.body as AsyncIterable<Buffer>), `request, ${framing}`);
    const answer = await upstream.fetch('/y', {}, 1024);
    await t.rejects(readLate(answer.body!), `fetch, ${framing}`);
  }
});

t.test('a mirror on such a server: the cache serves every client and stays up', async (t) => {
  const body = randomBytes(4 << 20);
  const framings: Framing[] = ['length', 'chunked', 'close'];
  const upUrl = await closingServer(t, body, (path) => framings[Number(path.match(/(\d+)/)?.[1] ?? 0) % 3]!);
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { old: { url: upUrl } } }, t.testdir());
  const got = await Promise.all(Array.from({ length: 24 }, (_, i) => fetchHash(`${url}/mirror/old/f${i % 6}.bin`)));
  for (const [i, g] of got.entries()) t.same([g.status, g.size, g.hash], [200, body.length, sha256(body)], `client ${i}`);
  t.equal((await fetchHash(`${url}/-/healthz`)).status, 200, 'still up');
});
