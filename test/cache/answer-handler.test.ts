// Upstream.fetch (answer-handler.ts): a fill's GET through undici's dispatch API. Small
// bodies come whole, others as a stream with undici's backpressure and abort; a failure
// is never a clean end. A real node:http server on loopback plays upstream.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { Upstream } from '../../src/cache/upstream.js';
import { UpstreamError } from '../../src/errors.js';
import { eventually } from '../helpers/wait.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** An upstream answering by `routes[url]`, and the Upstream client to it. */
async function start(t: Test, routes: Record<string, Handler>): Promise<Upstream> {
  const server = http.createServer((req, res) => (routes[req.url ?? ''] ?? ((_q, s) => s.writeHead(404).end()))(req, res));
  const upstream = new Upstream('origin', await serveOnLoopback(t, server), DEFAULT_TIMEOUTS);
  t.teardown(() => upstream.close());
  return upstream;
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

t.test('a body announced within the limit comes whole with its head, anything else as a stream', async (t) => {
  const small = randomBytes(4096);
  const large = randomBytes(3 * 1024 * 1024 + 7);
  const upstream = await start(t, {
    '/small': (_q, s) => s.writeHead(200, { 'content-length': small.length, etag: '"s"' }).end(small),
    '/large': (_q, s) => s.writeHead(200, { 'content-length': large.length }).end(large),
    // No Content-Length: chunked, even when short.
    '/chunked': (_q, s) => { s.writeHead(200); s.write(small.subarray(0, 100)); s.end(small.subarray(100)); },
    '/empty': (_q, s) => s.writeHead(200, { 'content-length': 0 }).end(),
    '/missing': (_q, s) => s.writeHead(404, { 'content-type': 'application/json', 'content-length': 27 }).end('{"code":"FC_ERR_NOT_FOUND"}'),
  });

  const s = await upstream.fetch('/small', {}, 64 * 1024);
  t.equal(s.statusCode, 200);
  t.equal(s.headers.etag, '"s"', 'headers as undici parses them');
  t.ok(s.whole && s.whole.equals(small), 'the small body, whole');
  t.equal(s.body, undefined, 'and no stream made for it');

  const l = await upstream.fetch('/large', {}, 64 * 1024);
  t.equal(l.whole, undefined, 'past the limit: no gathering');
  t.equal(digest(await readAll(l.body!)), digest(large), 'the large body streamed, every byte');

  const c = await upstream.fetch('/chunked', {}, 64 * 1024);
  t.equal(c.whole, undefined, 'no Content-Length: streamed');
  t.ok((await readAll(c.body!)).equals(small));

  const e = await upstream.fetch('/empty', {}, 64 * 1024);
  t.equal(e.statusCode, 200);
  t.equal(e.whole?.length, 0, 'an empty body is an empty Buffer');

  const m = await upstream.fetch('/missing', {}, 64 * 1024);
  t.equal(m.statusCode, 404, 'error statuses are answers, not failures');
  t.equal(m.whole?.toString(), '{"code":"FC_ERR_NOT_FOUND"}');
});

t.test('an answer cut short fails: the promise for a small body, the stream for a large one', async (t) => {
  const cut = (announced: number, sent: number): Handler => (_q, s) => {
    s.writeHead(200, { 'content-length': announced });
    s.write(randomBytes(sent), () => s.socket?.destroy());
  };
  // The large one is cut before the stream holds its high-water mark: undici still reads its socket.
  const upstream = await start(t, { '/small': cut(4096, 1000), '/large': cut(8 * 1024 * 1024, 16 * 1024) });

  const small = await upstream.fetch('/small', {}, 64 * 1024).then(() => undefined, (err: unknown) => err);
  t.ok(small instanceof UpstreamError, 'a small body cut short rejects, as an upstream error (502)');

  const large = await upstream.fetch('/large', {}, 64 * 1024);
  // The failure comes while nobody reads yet (a fill opening its file): the stream keeps it
  // for its reader instead of throwing it at the process.
  await eventually('the stream failed', () => large.body!.errored !== null, 5000);
  const outcome = await readAll(large.body!).then((b) => `clean end after ${b.length} bytes`, (err: Error) => err.message);
  t.match(outcome, /other side closed|closed|aborted/i, 'the reader sees an error, never a clean end');
});

t.test('the stream holds little while its reader is slow (undici pauses), and destroying it aborts the request', async (t) => {
  const size = 32 * 1024 * 1024;
  let closed = false;
  let finished = false;
  const upstream = await start(t, {
    '/large': (_q, s) => {
      s.once('close', () => (closed = true));
      s.once('finish', () => (finished = true));
      s.writeHead(200, { 'content-length': size });
      const chunk = randomBytes(1024 * 1024);
      let sent = 0;
      const more = (): void => {
        while (sent < size) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', more);
        }
        s.end();
      };
      more();
    },
  });

  const answer = await upstream.fetch('/large', {}, 64 * 1024);
  const body = answer.body!;
  let most = 0;
  // A slow reader: 64 KiB every 2 ms, while loopback would deliver the whole body in tens of ms.
  for (let read = 0; read < 4 * 1024 * 1024; await sleep(2)) {
    read += (body.read(64 * 1024) as Buffer | null)?.length ?? 0;
    most = Math.max(most, body.readableLength);
  }
  body.destroy();
  t.ok(most <= 512 * 1024, `the stream never held more than its high-water mark and a chunk or so (most: ${most} bytes)`);
  await eventually('the upstream connection closed', () => closed, 5000);
  t.notOk(finished, 'the upstream never finished sending: the request was aborted');
});
