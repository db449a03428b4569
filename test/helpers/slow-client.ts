// Clients on raw sockets that are slow where a server must not wait for them: silent
// connections, request heads sent a byte at a time (slowloris), and connections over a cap.
import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Test } from 'tap';
import { Client, request } from 'undici';
import { KEEP_ALIVE_MARGIN_MS } from '../../src/http/connection-limits.js';

/** How a slow connection ended: when (ms after it was opened), and what the server sent. */
interface Ending {
  readonly ms: number;
  readonly answer: string;
}

/** A connection to the server of `url`, resolved once open, with when it was opened. */
function open(url: string): Promise<{ socket: Socket; opened: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => resolve({ socket, opened: Date.now() }));
    socket.once('error', reject);
  });
}

/** What `socket` receives until the server closes it (an error counts as closing), and when, after `since`. */
function untilClosed(socket: Socket, since: number): Promise<Ending> {
  return new Promise((resolve) => {
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => { answer += chunk; });
    const done = (): void => {
      socket.destroy();
      resolve({ ms: Date.now() - since, answer });
    };
    socket.once('end', done).once('close', done).once('error', done);
  });
}

/**
 * Opens a connection, stays silent `silentMs`, then sends the start of a request head and
 * one more byte of it every `everyMs` (the head never ends), until the server closes it.
 * `before`: whole requests sent first, answered before the slow one starts (a kept-alive
 * connection); `ms` then counts from the slow head's first byte.
 */
export async function dribbleHead(url: string, { silentMs = 0, everyMs = 200, before = '' }: { silentMs?: number; everyMs?: number; before?: string } = {}): Promise<Ending> {
  const { socket, opened } = await open(url);
  const host = new URL(url).host;
  let since = opened;
  if (before !== '') {
    const answered = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write(before.replaceAll('{host}', host));
    await answered;
    since = Date.now();
  }
  const ending = untilClosed(socket, since);
  let timer: NodeJS.Timeout | undefined;
  const start = (): void => {
    socket.write(`GET /-/healthz HTTP/1.1\r\nHost: ${host}\r\nX-Slow: `);
    timer = setInterval(() => socket.writable && socket.write('a'), everyMs);
  };
  const wait = setTimeout(start, silentMs);
  const end = await ending;
  clearTimeout(wait);
  clearInterval(timer);
  return end;
}

/** Opens a connection and sends nothing until the server closes it. */
export async function silent(url: string): Promise<Ending> {
  const { socket, opened } = await open(url);
  return untilClosed(socket, opened);
}

/** A GET of `path` on `socket`, answered whole: resolves with the status line's code. */
export function getOn(socket: Socket, url: string, path: string, headerLines = ''): Promise<number> {
  return new Promise((resolve, reject) => {
    if (!socket.writable) return reject(new Error(`closed before GET ${path}`));
    let answer = '';
    const onData = (chunk: Buffer | string): void => {
      answer += chunk.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n/.exec(answer);
      const length = /\r\ncontent-length: (\d+)/i.exec(answer);
      if (!m || !length || answer.length < m[0].length + Number(length[1])) return;
      socket.off('data', onData).off('close', onClose);
      resolve(Number(m[1]));
    };
    const onClose = (): void => reject(new Error(`closed before an answer to GET ${path}; got ${JSON.stringify(answer)}`));
    socket.on('data', onData).once('close', onClose);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${new URL(url).host}\r\n${headerLines}\r\n`);
  });
}

/**
 * Opens `count` connections one after another, sending nothing, and looks at them `waitMs`
 * after the last: how many the server closed meanwhile, and the ones still open (to close).
 */
export async function openMany(url: string, count: number, waitMs = 300): Promise<{ closed: number; open: Socket[]; answers: string[] }> {
  const sockets: Socket[] = [];
  const closed = new Set<Socket>();
  const received = new Map<Socket, string>();
  for (let i = 0; i < count; i++) {
    const { socket } = await open(url);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => received.set(socket, (received.get(socket) ?? '') + chunk.toString('latin1')));
    socket.once('close', () => closed.add(socket)).once('end', () => closed.add(socket));
    sockets.push(socket);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  return { closed: closed.size, open: sockets.filter((s) => !closed.has(s)), answers: [...closed].map((s) => received.get(s) ?? '') };
}

/**
 * PUTs `body` as a sha256 blob (with `token`) on a connection of its own, a byte at a time
 * over `overMs`: resolves with the answer once the server closes the connection.
 */
export async function slowPut(url: string, token: string, body: Buffer, overMs: number): Promise<Ending> {
  const digest = createHash('sha256').update(body).digest('hex');
  const { socket, opened } = await open(url);
  const ending = untilClosed(socket, opened);
  socket.write(`PUT /cas/sha256/${digest} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
  for (const byte of body) {
    await new Promise((resolve) => setTimeout(resolve, overMs / body.length));
    if (socket.writable) socket.write(Buffer.of(byte));
  }
  return ending;
}

/** GETs `url`, stopping to read for `pauseMs` after the first chunk: resolves with the body's sha256. */
export async function slowGet(url: string, pauseMs: number): Promise<string> {
  const res = await request(url, { highWaterMark: 16 * 1024 });
  const h = createHash('sha256');
  let first = true;
  for await (const chunk of res.body) {
    h.update(chunk as Buffer);
    if (first) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    first = false;
  }
  return h.digest('hex');
}

/**
 * Opens a connection, has `first` answered whole on it (sent with `firstHeaderLines`, each
 * ending in CRLF), stays silent `idleMs` (longer than the head limit: the first head came in
 * time, and an idle kept-alive connection waits for its next request as long as keep-alive
 * allows), then GETs `path`: resolves with both statuses.
 */
async function idleBetween(url: string, first: string, idleMs: number, path = '/-/healthz', firstHeaderLines = ''): Promise<[number, number]> {
  const { socket } = await open(url);
  try {
    const answered = await getOn(socket, url, first, firstHeaderLines);
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    return [answered, await getOn(socket, url, path)];
  } finally {
    socket.destroy();
  }
}

/** How much sooner than the limit a connection silent first starts its head. */
const SILENT_FIRST_MARGIN_MS = 50;

/**
 * When a connection silent for the limit less SILENT_FIRST_MARGIN_MS, then sending a head a
 * byte at a time, must be closed by: node alone, counting from the head's first byte, cuts
 * it at 2 × limit − SILENT_FIRST_MARGIN_MS at the earliest.
 */
export function silentFirstLatest(limitMs: number): number {
  return 2 * limitMs - SILENT_FIRST_MARGIN_MS - 150;
}

/** The silence of such a connection, for a limit of `limitMs`. */
export const silentFirstMs = (limitMs: number): number => limitMs - SILENT_FIRST_MARGIN_MS;

/** node looks for late heads every second: a cut comes within that after the limit, plus slack for a loaded machine. */
const CHECK_SLACK_MS = 2000;

/**
 * Starts, all at once, the slow-head clients every server must cut within `limitMs` (a
 * silent connection, a head a byte at a time, one silent nearly the limit first, the next
 * head on connections kept alive after each of `firsts`: named GETs answered whole first),
 * and one that must not be cut (idle past the limit after an answer to firsts[0]), and
 * checks each in a subtest of `t` as it ends.
 */
export function checkSlowHeads(t: Test, url: string, limitMs: number, firsts: Record<string, string>): void {
  const latest = limitMs + CHECK_SLACK_MS;
  const nothing = silent(url);
  const dribbled = dribbleHead(url);
  const silentFirst = dribbleHead(url, { silentMs: silentFirstMs(limitMs) });
  const keptAlive = Object.entries(firsts).map(([what, path]) => [what, dribbleHead(url, { before: `GET ${path} HTTP/1.1\r\nHost: {host}\r\n\r\n` })] as const);
  const [firstWhat, firstPath] = Object.entries(firsts)[0]!;
  const idle = idleBetween(url, firstPath, limitMs + 500);
  const idleAfter417 = idleBetween(url, firstPath, limitMs + 500, '/-/healthz', 'Expect: x-unknown\r\n');

  t.test('a connection that sends nothing', async (t) => {
    const { ms } = await nothing;
    t.ok(ms >= limitMs - 100 && ms <= latest, `closed after ${ms} ms`);
  });
  t.test('a head sent a byte at a time', async (t) => {
    const { ms, answer } = await dribbled;
    t.ok(ms >= limitMs - 100 && ms <= latest, `closed after ${ms} ms`);
    t.match(answer, /^HTTP\/1\.1 408 .*FC_ERR_REQUEST_TIMEOUT/s, 'answered 408');
  });
  t.test('silent, then a head a byte at a time: the limit counts from the connection', async (t) => {
    const { ms } = await silentFirst;
    t.ok(ms <= silentFirstLatest(limitMs), `closed after ${ms} ms`);
  });
  for (const [what, ending] of keptAlive) {
    t.test(`the next head on a connection kept alive after ${what}`, async (t) => {
      const { ms, answer } = await ending;
      t.ok(ms <= latest, `closed ${ms} ms after its first byte`);
      t.match(answer, /HTTP\/1\.1 408 /, 'answered 408');
    });
  }
  t.test(`a connection idle past the limit after ${firstWhat} (no head in progress)`, async (t) => {
    t.equal((await idle)[1], 200, 'its next request is served');
  });
  t.test('a connection idle past the limit after a 417 (an Expect the server does not know)', async (t) => {
    t.same(await idleAfter417, [417, 200], 'its next request is served');
  });
}

/** The keep-alive limit checkEmptyLines gives a server: its tests last seconds, not the default's minutes. */
const SHORT_KEEP_ALIVE_MS = 1000;

/**
 * Has GET `path` answered on a new connection, then sends an empty line (CRLF, which a
 * server skips before a request line) every 200 ms, and nothing else, until the server closes
 * the connection or `boundMs` passed (`ms` is then -1): `ms` counts from the answer.
 */
async function emptyLinesAfter(url: string, path: string, boundMs: number): Promise<Ending> {
  const { socket } = await open(url);
  await getOn(socket, url, path);
  const answered = Date.now();
  const ending = untilClosed(socket, answered);
  const timer = setInterval(() => socket.writable && socket.write('\r\n'), 200);
  const bound = setTimeout(() => socket.emit('bound'), boundMs);
  const end = await Promise.race([ending, new Promise<Ending>((resolve) => socket.once('bound', () => resolve({ ms: -1, answer: '' })))]);
  clearInterval(timer);
  clearTimeout(bound);
  socket.destroy();
  return end;
}

/**
 * Checks that `server` (at `url`, its head limit `limitMs`; its keepAliveTimeout made
 * SHORT_KEEP_ALIVE_MS) answers 408 and closes a connection that, after an answer to each of
 * `firsts` (named GETs), sends empty lines only: by the keep-alive limit, with node's margin,
 * plus the head limit (sooner is right too: the cache's early path hands such a connection
 * to node, which times its head from then). Node skips them without timing them, and they reset its idle timers.
 * A stray empty line before a next request (RFC 9112 §2.2) is no reason to refuse it.
 */
export function checkEmptyLines(t: Test, server: Server, url: string, limitMs: number, firsts: Record<string, string>): void {
  server.keepAliveTimeout = SHORT_KEEP_ALIVE_MS;
  const deadline = SHORT_KEEP_ALIVE_MS + KEEP_ALIVE_MARGIN_MS + limitMs;
  for (const [what, path] of Object.entries(firsts)) {
    const ending = emptyLinesAfter(url, path, deadline + 2 * CHECK_SLACK_MS);
    t.test(`empty lines only after ${what}`, async (t) => {
      const { ms, answer } = await ending;
      t.ok(ms >= 0 && ms <= deadline + CHECK_SLACK_MS, `closed ${ms} ms after the answer (deadline ${deadline} ms)`);
      t.match(answer, /^HTTP\/1\.1 408 .*FC_ERR_REQUEST_TIMEOUT/s, 'answered 408');
    });
  }
  const [, firstPath] = Object.entries(firsts)[0]!;
  t.test('an empty line before the next request', async (t) => {
    const { socket } = await open(url);
    try {
      t.equal(await getOn(socket, url, firstPath), 200);
      await new Promise((resolve) => setTimeout(resolve, 300));
      socket.write('\r\n');
      await new Promise((resolve) => setTimeout(resolve, 300));
      t.equal(await getOn(socket, url, '/-/healthz'), 200, 'the next request is served');
    } finally {
      socket.destroy();
    }
  });
}

/**
 * Checks that a server with maxConnections 2 answers a third connection 503 and closes it as
 * it comes (also one whose request is sent at once), and takes one again once one closed.
 */
export async function checkCapOfTwo(t: Test, url: string): Promise<void> {
  const { closed, open: kept, answers } = await openMany(url, 3);
  t.equal(closed, 1, 'the third closed');
  t.match(answers[0], /^HTTP\/1\.1 503 .*\r\nRetry-After: 1\r\n.*"code":"FC_ERR_UNAVAILABLE"/s, 'answered 503 before anything was read');
  t.equal(kept.length, 2);
  const client = new Client(url);
  try {
    // an upload: 4 MiB on its way, which the server reads and drops after its answer (on
    // loopback the answer arrives first even when the server closes without reading it)
    const body = Buffer.alloc(4 << 20, 1);
    const res = await client.request({ path: `/cas/sha256/${createHash('sha256').update(body).digest('hex')}`, method: 'PUT', body });
    t.match({ status: res.statusCode, body: await res.body.json() }, { status: 503, body: { code: 'FC_ERR_UNAVAILABLE' } }, 'an HTTP client whose request body is on its way reads the 503');
  } finally {
    await client.close();
  }
  t.equal(await getOn(kept[0]!, url, '/-/healthz'), 200, 'the ones within it are served');
  kept[1]!.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const again = await openMany(url, 1);
  t.equal(again.closed, 0, 'one closed makes room');
  t.equal(await getOn(again.open[0]!, url, '/-/healthz'), 200);
  for (const s of [...kept, ...again.open]) s.destroy();
}
