// Small hits answered on the socket before node:http takes the connection
// (src/cache/early-hits.ts, early-head.ts): the same bytes node writes, and every other
// request, wherever it falls on a connection, handed to node and answered as before.
// Which side answered is read from the server's socket: node gives each connection it
// takes a `parser` property, which the early path never sets.
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { startCache } from './harness.js';
import { randomish, startUpstream, UpstreamFixture } from './upstream-fixture.js';
import { eventually } from '../helpers/wait.js';

interface Answer {
  status: number;
  /** Status line and header lines as sent, without the blank line. */
  head: string;
  headers: Map<string, string>;
  body: Buffer;
}

/** Splits what a connection received into answers (each with Content-Length; `heads`: the indexes of answers to HEAD). */
function parseAnswers(bytes: Buffer, heads: ReadonlySet<number> = new Set()): { answers: Answer[]; rest: number } {
  const answers: Answer[] = [];
  let at = 0;
  for (;;) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = bytes.toString('latin1', at, end);
    const lines = head.split('\r\n');
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    const status = Number(lines[0]!.split(' ')[1]);
    const length = heads.has(answers.length) || status === 304 ? 0 : Number(headers.get('content-length') ?? 0);
    if (bytes.length < end + 4 + length) break;
    answers.push({ status, head, headers, body: bytes.subarray(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return { answers, rest: bytes.length - at };
}

interface Exchange {
  readonly client: Socket;
  /** The server's side of the connection. */
  readonly server: Socket;
  received(): Buffer;
  /** Waits for `count` whole answers. */
  answers(count: number, heads?: ReadonlySet<number>): Promise<Answer[]>;
}

/** A raw connection to `app`, with the server's socket of it. */
async function open(t: Test, app: FastifyInstance): Promise<Exchange> {
  const accepted = new Promise<Socket>((resolve) => app.server.once('connection', resolve));
  const { port } = app.server.address() as { port: number };
  const client = connect(port, '127.0.0.1');
  t.teardown(() => void client.destroy());
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  client.on('error', () => undefined);
  const server = await accepted;
  const received = (): Buffer => Buffer.concat(chunks);
  return {
    client,
    server,
    received,
    async answers(count, heads) {
      let got: Answer[] = [];
      await eventually(`${count} answers`, () => (got = parseAnswers(received(), heads).answers).length >= count);
      return got;
    },
  };
}

const tookByNode = (socket: Socket): boolean => 'parser' in socket;
const get = (path: string, fields = 'Host: cache\r\n'): string => `GET ${path} HTTP/1.1\r\n${fields}\r\n`;
/** An answer's head without the fields that change with time (Date, Age). */
const timeless = (a: Answer): string => a.head.split('\r\n').filter((l) => !/^(date|age):/i.test(l)).join('\r\n');

async function cacheWithBlobs(t: Test, count: number) {
  const { up, upUrl } = await startUpstream(t);
  const blobs = Array.from({ length: count }, () => up.addBlob(4096));
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  for (const b of blobs) {
    const res = await fetch(`${url}/cas/sha256/${b.hex}`);
    await res.arrayBuffer();
  }
  await app.cache.fills.drain();
  return { up, app, url, blobs };
}

t.test('an early hit is the bytes node writes for it, counted as a hit', async (t) => {
  const { app, url, blobs } = await cacheWithBlobs(t, 1);
  const path = `/cas/sha256/${blobs[0]!.hex}`;
  const early = await open(t, app);
  // As undici asks: Connection: keep-alive changes nothing in HTTP/1.1, and is taken.
  early.client.write(get(path) + get(`/sha256/${blobs[0]!.hex}?region=x`, 'host: cache\r\nconnection: Keep-Alive\r\nAuthorization: Bearer x\r\n'));
  const [a, alias] = await early.answers(2);
  t.notOk(tookByNode(early.server), 'answered before node took the connection');
  t.equal(a!.status, 200);
  t.same(a!.body, blobs[0]!.body);
  t.same(alias!.body, blobs[0]!.body, 'the tooltool alias, query ignored');

  // A HEAD hands the connection to node: the GET after it is node's serveSmallHit.
  const byNode = await open(t, app);
  byNode.client.write(`HEAD ${path} HTTP/1.1\r\nHost: cache\r\n\r\n` + get(path));
  const [, b] = await byNode.answers(2, new Set([0]));
  t.ok(tookByNode(byNode.server), 'a HEAD is node\'s');
  t.equal(timeless(a!), timeless(b!), 'status line and fields as node writes them, in its order');
  t.match(a!.head, /\r\nage: \d+\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n/);
  t.same(a!.body, b!.body);

  const stats = await (await fetch(`${url}/-/stats`)).json() as { kinds: Record<string, { hits: number; bytesServed: number }> };
  // The early GET, the HEAD and node's GET; bytes: the fill's, then the two GETs'.
  t.match(stats.kinds.cas, { hits: 3, bytesServed: 4096 * 3 }, 'early and node hits counted alike');
  t.match(stats.kinds.tooltool, { hits: 1, bytesServed: 4096 });
});

t.test('requests the early path leaves to node, alone on a connection', async (t) => {
  const { app, blobs } = await cacheWithBlobs(t, 1);
  const hex = blobs[0]!.hex;
  const path = `/cas/sha256/${hex}`;
  const etag = `"sha256:${hex}"`;
  const many = Array.from({ length: 64 }, (_, i) => `X-${i}: y\r\n`).join('');
  const cases: [string, string, number][] = [
    ['HTTP/1.0', `GET ${path} HTTP/1.0\r\nHost: cache\r\n\r\n`, 200],
    ['a Range', get(path, 'Host: cache\r\nRange: bytes=0-9\r\n'), 206],
    ['If-None-Match', get(path, `Host: cache\r\nIf-None-Match: ${etag}\r\n`), 304],
    ['Cache-Control', get(path, 'Host: cache\r\nCache-Control: no-cache\r\n'), 200],
    ['two Authorization fields', get(path, 'Host: cache\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n'), 400],
    ['65 fields', get(path, `Host: cache\r\n${many}`), 431],
    ['no Host', `GET ${path} HTTP/1.1\r\n\r\n`, 400],
    ['uppercase hex', get(`/cas/sha256/${hex.toUpperCase()}`), 200],
    ['Connection: close', get(path, 'Host: cache\r\nConnection: close\r\n'), 200],
    ['a body by Content-Length', `GET ${path} HTTP/1.1\r\nHost: cache\r\nContent-Length: 5\r\n\r\nhello`, 200],
    ['a chunked body', `GET ${path} HTTP/1.1\r\nHost: cache\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 200],
    ['a folded field', get(path, 'Host: cache\r\nX-A: b\r\n c\r\n'), 400],
    ['a field with a space before its colon', get(path, 'Host : cache\r\n'), 400],
    ['a space in a field name', get(path, 'Host: cache\r\nX A: b\r\n'), 400],
    ['a control character in a value', get(path, 'Host: cache\r\nX-A: b\x01c\r\n'), 400],
  ];
  for (const [what, request, status] of cases) {
    const c = await open(t, app);
    c.client.write(request);
    const [a] = await c.answers(1);
    t.ok(tookByNode(c.server), `${what}: node's`);
    t.equal(a!.status, status, `${what}: ${status}`);
  }
  // Node's own answer closes these.
  const close = await open(t, app);
  close.client.write(get(path, 'Host: cache\r\nConnection: close\r\n'));
  await eventually('the connection closed', () => close.client.readableEnded);
  t.equal((await close.answers(1))[0]!.headers.get('connection'), 'close');
});

t.test('a connection handed over mid-way: every answer in order, bytes after the handover included', async (t) => {
  const { app, blobs, up } = await cacheWithBlobs(t, 3);
  const cold = up.addBlob(4096);
  const [x, y, z] = blobs.map((b) => `/cas/sha256/${b.hex}`);
  const c = await open(t, app);
  // One write: two early hits, a miss (node's from here on), then hits again.
  c.client.write(get(x!) + get(y!) + get(`/cas/sha256/${cold.hex}`) + get(z!) + `HEAD ${x} HTTP/1.1\r\nHost: cache\r\n\r\n` + get(y!));
  const answers = await c.answers(6, new Set([4]));
  t.ok(tookByNode(c.server));
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200]);
  t.same(answers.map((a) => a.headers.get('x-cache')), ['HIT', 'HIT', 'MISS', 'HIT', 'HIT', 'HIT']);
  t.same(answers[0]!.body, blobs[0]!.body);
  t.same(answers[1]!.body, blobs[1]!.body);
  t.same(answers[2]!.body, cold.body);
  t.same(answers[3]!.body, blobs[2]!.body);
  t.equal(answers[4]!.body.length, 0);
  t.same(answers[5]!.body, blobs[1]!.body);
  t.equal(parseAnswers(c.received(), new Set([4])).rest, 0, 'nothing more');

  // A request cut between two writes: handed to node at once, which reads it whole.
  const split = await open(t, app);
  const request = get(x!);
  split.client.write(get(y!) + request.slice(0, 20));
  const [first] = await split.answers(1);
  t.same(first!.body, blobs[1]!.body, 'the whole request before the cut answered');
  t.ok(tookByNode(split.server), 'the cut one given to node');
  split.client.write(request.slice(20));
  const [, second] = await split.answers(2);
  t.same(second!.body, blobs[0]!.body, 'and answered once whole');
});

t.test('a client that does not read: handed to node once the socket holds back, all answered once read', async (t) => {
  const { app, blobs } = await cacheWithBlobs(t, 2);
  const c = await open(t, app);
  c.client.pause();
  const paths = blobs.map((b) => `/cas/sha256/${b.hex}`);
  // One whole request per read of the server (each sent once the last one was read), so
  // that only the socket's buffers, never a cut request, can end the early path.
  let sent = 0;
  while (!tookByNode(c.server) && sent < 20_000) {
    const request = get(paths[sent++ % 2]!);
    const before = c.server.bytesRead;
    c.client.write(request);
    while (c.server.bytesRead < before + request.length) await new Promise((resolve) => setImmediate(resolve));
  }
  t.ok(tookByNode(c.server), `handed to node after ${sent} requests (${sent * 4} KiB of answers), not read`);
  t.ok(c.server.writableLength < 1024 * 1024, `what waits in the server's socket is bounded (${c.server.writableLength} bytes)`);
  c.client.resume();
  const answers = await c.answers(sent);
  t.equal(answers.length, sent);
  t.ok(answers.every((a, i) => a.status === 200 && a.body.equals(blobs[i % 2]!.body)), 'every answer whole and in order');
});

t.test('early connections: closed when idle past keepAliveTimeout, ended by a closing server, half-closed clients answered', async (t) => {
  const { app, blobs } = await cacheWithBlobs(t, 1);
  const path = `/cas/sha256/${blobs[0]!.hex}`;

  const ended = await open(t, app);
  ended.client.end(get(path));
  const [a] = await ended.answers(1);
  t.same(a!.body, blobs[0]!.body, 'a request then the client\'s end: answered');
  await eventually('closed after it', () => ended.server.destroyed);

  // As node: the timeout announced, and the close a second after it (node's margin).
  app.server.keepAliveTimeout = 300;
  const idle = await open(t, app);
  idle.client.write(get(path));
  const [announced] = await idle.answers(1);
  t.equal(announced!.headers.get('keep-alive'), 'timeout=0', 'the timeout as node announces it (whole seconds), at once');
  const t0 = Date.now();
  await eventually('the idle connection closed', () => idle.client.readableEnded || idle.client.destroyed);
  const idleMs = Date.now() - t0;
  t.ok(idleMs > 1100 && idleMs < 5000, `closed a second after keepAliveTimeout (${idleMs} ms)`);
  t.notOk(tookByNode(idle.server));

  // No keep-alive timeout: node's, which announces none.
  app.server.keepAliveTimeout = 0;
  const unlimited = await open(t, app);
  unlimited.client.write(get(path));
  const [plain] = await unlimited.answers(1);
  t.ok(tookByNode(unlimited.server), 'keepAliveTimeout 0: node\'s');
  t.equal(plain!.headers.get('keep-alive'), undefined);

  // As a stopping server drains (cli/listen.ts): node's close ends idle connections.
  app.server.keepAliveTimeout = 30_000;
  const kept = await open(t, app);
  kept.client.write(get(path) + get(path));
  await kept.answers(2);
  t.notOk(tookByNode(kept.server));
  const closing = Date.now();
  await new Promise<void>((resolve) => app.server.close(() => resolve()));
  t.ok(Date.now() - closing < 5000, 'the server closes without waiting for the idle early connection (keepAliveTimeout 30 s)');
  await eventually('the client saw a clean end', () => kept.client.readableEnded);
  t.notOk(kept.client.destroyed && !kept.client.readableEnded, 'not a reset');
});

t.test('a large upload on a fresh connection: read as fast as upstream takes it, its bytes in order', async (t) => {
  const up = new UpstreamFixture();
  let slow = true;
  let upstreamRead = 0;
  const upstreamHash = createHash('sha256');
  up.handler = (req, res) => {
    if (req.method !== 'PUT') return false;
    // A slow reader until told otherwise: 64 KiB every 20 ms.
    const take = (): void => {
      let chunk: Buffer | null;
      while ((chunk = req.read(slow ? 65536 : undefined) as Buffer | null) !== null) {
        upstreamRead += chunk.length;
        upstreamHash.update(chunk);
        if (slow) break;
      }
    };
    const timer = setInterval(take, 20);
    req.on('readable', () => void (slow || take()));
    req.on('end', () => {
      clearInterval(timer);
      res.writeHead(201, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end('{}');
    });
    t.teardown(() => clearInterval(timer));
    return true;
  };
  const upUrl = await up.start();
  t.teardown(() => up.stop());
  const { app } = await startCache(t, { upstream: upUrl }, t.testdir());
  const c = await open(t, app);
  const size = 64 * 1024 * 1024;
  const body = randomish(size);
  c.client.write(`PUT /artifacts/run1/job1/big.bin HTTP/1.1\r\nHost: cache\r\nAuthorization: Bearer x\r\nContent-Length: ${size}\r\n\r\n`);
  let sent = 0;
  const pump = (): void => {
    while (sent < size) {
      const piece = body.subarray(sent, sent + 256 * 1024);
      sent += piece.length;
      if (!c.client.write(piece)) return void c.client.once('drain', pump);
    }
  };
  pump();
  await eventually('upstream read 2 MiB', () => upstreamRead >= 2 * 1024 * 1024);
  t.ok(tookByNode(c.server), 'a PUT is node\'s');
  t.ok(c.server.bytesRead < 24 * 1024 * 1024, `the cache reads as upstream takes it (${c.server.bytesRead} bytes read, upstream ${upstreamRead})`);
  slow = false;
  await eventually('upstream read it all', () => upstreamRead >= size, 30_000);
  const [answer] = await c.answers(1);
  t.equal(answer!.status, 201);
  t.equal(upstreamHash.digest('hex'), createHash('sha256').update(body).digest('hex'), 'upstream got the bytes in order');
});

// Cold misses (src/cache/fast-miss.ts, leadEarlyMiss): taken for later on a connection node
// has not taken, answered when the fill tells, the connection read no further meanwhile.

/** An answer's head without Date and Age, the digests of `blobs` spelled `<hex>`. */
const general = (a: Answer, hexes: readonly string[]): string => hexes.reduce((head, hex) => head.replaceAll(hex, '<hex>'), timeless(a));

/** A fresh connection that asked `path` of `app`, its answer held by `up` until `release()`. */
async function askHeld(t: Test, app: FastifyInstance, up: UpstreamFixture, path: string): Promise<{ c: Exchange; release: () => void }> {
  const release = up.hold(path);
  const asked = up.count(path);
  const c = await open(t, app);
  c.client.write(get(path));
  await eventually('upstream asked', () => up.count(path) === asked + 1);
  return { c, release };
}

t.test('a cold miss on a fresh connection: answered early, the bytes node writes for it, counted as a miss', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const [x, y] = [up.addBlob(4096), up.addBlob(4096)];
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const early = await open(t, app);
  early.client.write(get(`/cas/sha256/${x.hex}`));
  const [a] = await early.answers(1);
  t.notOk(tookByNode(early.server), 'answered before node took the connection');
  t.equal(a!.status, 200);
  t.equal(a!.headers.get('x-cache'), 'MISS');
  t.same(a!.body, x.body);
  early.client.write(get(`/cas/sha256/${x.hex}`));
  const [, again] = await early.answers(2);
  t.equal(again!.headers.get('x-cache'), 'HIT', 'then a hit on the same connection');
  t.notOk(tookByNode(early.server), 'still early');

  // A HEAD hands the connection to node: the cold GET after it is node's leadMiss.
  const byNode = await open(t, app);
  byNode.client.write(`HEAD /cas/sha256/${x.hex} HTTP/1.1\r\nHost: cache\r\n\r\n` + get(`/cas/sha256/${y.hex}`));
  const [, b] = await byNode.answers(2, new Set([0]));
  t.ok(tookByNode(byNode.server));
  t.equal(b!.headers.get('x-cache'), 'MISS');
  t.equal(general(a!, [x.hex]), general(b!, [y.hex]), 'status line and fields as node writes them, in its order');
  t.match(a!.head, /\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=\d+$/);
  t.equal(up.count(`/cas/sha256/${x.hex}`), 1, 'upstream asked once');
  const stats = await (await fetch(`${url}/-/stats`)).json() as { kinds: Record<string, { misses: number; hits: number; bytesServed: number }> };
  // The early miss and hit, node's HEAD (a hit) and miss.
  t.match(stats.kinds.cas, { misses: 2, hits: 2, bytesServed: 4096 * 3 }, 'early and node misses counted alike');
});

t.test('an answer owed: the connection waits past its idle timeout, what the client sends meanwhile is answered after it', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const [cold, warm] = [up.addBlob(4096), up.addBlob(4096)];
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  await (await fetch(`${url}/cas/sha256/${warm.hex}`)).arrayBuffer();
  app.server.keepAliveTimeout = 300; // an idle early connection is closed after 1.3 s
  const { c, release } = await askHeld(t, app, up, `/cas/sha256/${cold.hex}`);
  c.client.write(get(`/cas/sha256/${warm.hex}`));
  await new Promise((r) => setTimeout(r, 1800));
  t.notOk(c.client.destroyed || c.client.readableEnded, 'not closed while its answer is owed');
  t.equal(c.received().length, 0, 'nothing answered before the owed answer');
  release();
  const [a, b] = await c.answers(2);
  t.same([a!.headers.get('x-cache'), b!.headers.get('x-cache')], ['MISS', 'HIT'], 'in order');
  t.same(a!.body, cold.body);
  t.same(b!.body, warm.body);
  t.notOk(tookByNode(c.server), 'both early');
  await eventually('idle again: closed', () => c.client.readableEnded || c.client.destroyed);
});

t.test('an early miss handed to node: a large body streamed, an upstream error answered as the routes answer it', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const large = up.addBlob(3 * 1024 * 1024);
  const { app } = await startCache(t, { upstream: upUrl }, t.testdir());
  const c = await open(t, app);
  c.client.write(get(`/cas/sha256/${large.hex}`));
  const [a] = await c.answers(1);
  t.ok(tookByNode(c.server), 'node\'s once the fill told a large body');
  t.equal(a!.headers.get('x-cache'), 'MISS');
  t.same(a!.body, large.body);
  t.equal(up.count(`/cas/sha256/${large.hex}`), 1, 'upstream asked once');

  // Handed over with a request the client sent meanwhile: both answered, in order.
  const later = up.addBlob(3 * 1024 * 1024);
  const { c: w, release } = await askHeld(t, app, up, `/cas/sha256/${later.hex}`);
  w.client.write(get(`/cas/sha256/${large.hex}`));
  await new Promise((r) => setTimeout(r, 50));
  release();
  const both = await w.answers(2);
  t.ok(tookByNode(w.server));
  t.same(both.map((b) => b.headers.get('x-cache')), ['MISS', 'HIT']);
  t.ok(both[0]!.body.equals(later.body) && both[1]!.body.equals(large.body), 'each its body');

  // An upstream 404, passed through (chunked: its head only is compared) as node's path does.
  const missing = createHash('sha256').update('nowhere').digest('hex');
  const alone = await open(t, app);
  alone.client.write(get(`/cas/sha256/${missing}`));
  const [notFound] = await alone.answers(1);
  t.ok(tookByNode(alone.server), 'an error: node\'s');
  t.equal(notFound!.status, 404);
  await app.cache.fills.drain(); // not joined: asked anew
  const byNode = await open(t, app);
  byNode.client.write(`HEAD /cas/sha256/${large.hex} HTTP/1.1\r\nHost: cache\r\n\r\n` + get(`/cas/sha256/${missing}`));
  const [, nodes] = await byNode.answers(2, new Set([0]));
  t.equal(timeless(notFound!), timeless(nodes!), 'the answer node\'s path gives');
  await eventually('the whole error', () => alone.received().includes('FC_ERR_NOT_FOUND'));
});

t.test('a miss with credentials: fetched with them, joined only by requests with the same', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blob = up.addBlob(4096);
  const { app } = await startCache(t, { upstream: upUrl }, t.testdir());
  const path = `/cas/sha256/${blob.hex}`;
  const release = up.hold(path);
  const [a, b, c] = [await open(t, app), await open(t, app), await open(t, app)];
  a.client.write(get(path, 'Host: cache\r\nAuthorization:  Bearer one \r\n'));
  await eventually('upstream asked', () => up.count(path) === 1);
  b.client.write(get(path, 'Host: cache\r\nAuthorization: Bearer one\r\n'));
  c.client.write(get(path, 'Host: cache\r\nAuthorization: Bearer two\r\n'));
  await eventually('upstream asked with the other credentials', () => up.count(path) === 2);
  release();
  const answers = [(await a.answers(1))[0]!, (await b.answers(1))[0]!, (await c.answers(1))[0]!];
  t.same(answers.map((x) => x.headers.get('x-cache')), ['MISS', 'COLLAPSED', 'MISS']);
  t.ok(answers.every((x) => x.body.equals(blob.body)));
  t.same(up.requests.filter((r) => r.url === path).map((r) => r.headers.authorization), ['Bearer one', 'Bearer two'], 'forwarded, one fetch per credential');
  t.notOk(tookByNode(a.server), 'the leader answered early');
});

t.test('an answer owed to a client that left, or on a closing server', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const [gone, last] = [up.addBlob(4096), up.addBlob(4096)];
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const { c: left, release } = await askHeld(t, app, up, `/cas/sha256/${gone.hex}`);
  left.client.destroy();
  await eventually('the server saw the client leave', () => left.server.destroyed);
  release();
  await app.cache.fills.drain();
  const res = await fetch(`${url}/cas/sha256/${gone.hex}`);
  t.equal(res.headers.get('x-cache'), 'HIT', 'the fill was kept all the same');
  t.same(Buffer.from(await res.arrayBuffer()), gone.body);

  const { c: owed, release: releaseLast } = await askHeld(t, app, up, `/cas/sha256/${last.hex}`);
  const closed = new Promise<void>((resolve) => app.server.close(() => resolve()));
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(owed.client.readableEnded || owed.client.destroyed, 'not ended while its answer is owed');
  releaseLast();
  const [a] = await owed.answers(1);
  t.same(a!.body, last.body, 'answered');
  await eventually('then ended', () => owed.client.readableEnded);
  await closed;
});
