// An upload refused before its body is read (no or a wrong token, a false precondition, a
// declared size over the limit, a malformed path) is answered with `Connection: close` and
// the connection closed a second after the answer at most (unread-body.ts), by the origin and by the cache.
// Kept alive, the connection needs the rest of the body read first: node reads none of it
// and the client's upload stalls until the server's keep-alive timeout (72 s), with a body
// of several GB still to send.
import { Agent, request as httpRequest, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t, { type Test } from 'tap';
import { startOrigin } from '../helpers/origin.js';
import { startCache } from '../cache/harness.js';

const BODY = 256 * 1024 ** 2;
const CHUNK = 64 * 1024;
/** What may still be in flight when the server closes: socket buffers and a few chunks. */
const BOUND = 32 * 1024 ** 2;

interface Answer {
  status: number;
  connection: string | undefined;
  /** From the request to the end of the answer. */
  ms: number;
}

interface Refused extends Answer {
  /** Bytes the server read on the connection. */
  serverRead: number;
  /** Bytes the client's body generator handed out. */
  pulled: number;
  /** How the client's sending ended: 'the whole body', 'stalled', or its error (EPIPE, ECONNRESET). */
  sending: string;
}

/**
 * PUTs a lazily generated body of BODY bytes with node's http client, which sends it
 * whatever the answer, on a keep-alive connection as curl's is (without keep-alive, node's
 * client asks the server to close).
 */
async function refusedUpload(t: Test, server: Server, url: string, path: string, headers: Record<string, string>): Promise<Refused> {
  const sockets: Socket[] = [];
  const onConnection = (s: Socket) => void sockets.push(s);
  server.on('connection', onConnection);
  t.teardown(() => void server.off('connection', onConnection));
  let pulled = 0;
  const body = Readable.from((function* () {
    const chunk = Buffer.alloc(CHUNK, 7);
    while (pulled < BODY) {
      pulled += CHUNK;
      yield chunk;
    }
  })());
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const req = httpRequest(`${url}${path}`, { method: 'PUT', agent, headers: { 'content-length': String(BODY), ...headers } });
  const started = Date.now();
  const answered = new Promise<Answer>((resolve, reject) => {
    req.once('response', (res) => {
      res.resume();
      res.once('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, ms: Date.now() - started }));
    });
    req.once('error', reject);
  });
  // Ends with EPIPE or ECONNRESET once the server closed, or when the whole body went.
  const sent = pipeline(body, req).then(() => 'the whole body', (err: Error) => err.message);
  const answer = await answered;
  // A stalled upload is cut after 5 s rather than at the server's keep-alive timeout
  // (req.setTimeout no longer applies once the answer has ended).
  let stalled = false;
  const stall = setTimeout(() => {
    stalled = true;
    req.destroy();
  }, 5000);
  const ended = await sent;
  clearTimeout(stall);
  agent.destroy(); // a connection the server kept open is closed from this end
  await Promise.all(sockets.map((s) => s.closed || new Promise((resolve) => s.once('close', resolve))));
  return { ...answer, sending: stalled ? 'stalled' : ended, serverRead: sockets.reduce((n, s) => n + s.bytesRead, 0), pulled };
}

function checkRefused(t: Test, what: string, got: Refused, status: number): void {
  t.equal(got.status, status, `${what}: ${status}`);
  t.equal(got.connection, 'close', `${what}: Connection: close`);
  t.ok(got.ms < 5000, `${what}: answered in ${got.ms} ms`);
  t.notMatch(got.sending, /whole body|stalled/, `${what}: sending ended with ${got.sending}`);
  t.ok(got.serverRead < BOUND, `${what}: the server read ${got.serverRead} bytes of ${BODY}`);
  t.ok(got.pulled < BOUND, `${what}: the client sent ${got.pulled} bytes of ${BODY}`);
}

t.test('origin: an upload refused before its body is read is not read', async (t) => {
  const origin = await startOrigin(t, { maxBlobSize: 1024 ** 3, maxRecordSize: 1024 ** 2 });
  const hex = 'a'.repeat(64);
  const bearer = { authorization: `Bearer ${origin.token}` };
  const cases: [what: string, path: string, headers: Record<string, string>, status: number][] = [
    ['/cas without a token', `/cas/sha256/${hex}`, {}, 401],
    ['/cas with a wrong token', `/cas/sha256/${hex}`, { authorization: 'Bearer wrong' }, 403],
    ['/cas with a malformed digest', '/cas/sha256/xyz', bearer, 400],
    ['/cas with a false If-Match', `/cas/sha256/${hex}`, { ...bearer, 'if-match': '"sha256:other"' }, 412],
    ['an artifact without a token', '/artifacts/run/job/big.bin', {}, 401],
    ['an artifact with a false If-Match', '/artifacts/run/job/big.bin', { ...bearer, 'if-match': '"sha256:other"' }, 412],
    ['a project base with a wrong token', '/projects/p/bases/b1', { authorization: 'Bearer wrong' }, 403],
    ['a run manifest over the record limit', '/projects/p/runs/r1', bearer, 413],
    ['a tooltool path (uploads go to /cas)', `/sha512/${'b'.repeat(128)}`, bearer, 405],
    ['no such path', '/nowhere', bearer, 404],
  ];
  for (const [what, path, headers, status] of cases) checkRefused(t, what, await refusedUpload(t, origin.app.server, origin.url, path, headers), status);
});

t.test('origin: a body declared over the size limit is refused unread', async (t) => {
  const origin = await startOrigin(t, { maxBlobSize: 1024 ** 2 });
  const got = await refusedUpload(t, origin.app.server, origin.url, `/cas/sha256/${'c'.repeat(64)}`, { authorization: `Bearer ${origin.token}` });
  checkRefused(t, 'over maxBlobSize', got, 413);
});

t.test('cache: refused by the cache itself, or by the origin behind it', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: `${dir}/origin` });
  const { app, url } = await startCache(t, { upstream: origin.url }, `${dir}/cache`);
  checkRefused(t, 'a malformed digest', await refusedUpload(t, app.server, url, '/cas/sha256/xyz', {}), 400);
  checkRefused(t, "the origin's 401", await refusedUpload(t, app.server, url, `/cas/sha256/${'d'.repeat(64)}`, {}), 401);
});

/**
 * A client still sending when it is refused: PUTs a head and part of a body on a raw
 * connection that stays writable after the server's FIN (as a client's does until it has
 * read the answer), reads the answer, then writes more 300 ms later. A server that closed
 * with the body unread has reset the connection by then: that write fails (EPIPE), and a
 * client that had not read the answer yet (a slow link) would never see it.
 */
async function writeAfterAnswer(url: string, path: string, headers: Record<string, string>): Promise<{ status: number; laterWrite: string }> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true });
  await once(socket, 'connect');
  let received = '';
  let failure = 'none';
  socket.on('data', (c: Buffer) => void (received += c.toString('latin1')));
  socket.on('error', (err: Error) => void (failure = err.message));
  const fields = Object.entries({ host: hostname, 'content-length': String(BODY), ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.write(`PUT ${path} HTTP/1.1\r\n${fields}\r\n`);
  socket.write(Buffer.alloc(256 * 1024, 1));
  const deadline = Date.now() + 5000;
  while (!received.includes('\r\n\r\n') && failure === 'none' && Date.now() < deadline) await sleep(10);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0);
  await sleep(300);
  const written = await new Promise<string>((resolve) => socket.write(Buffer.alloc(64 * 1024, 2), (err) => resolve(err?.message ?? 'none')));
  socket.destroy();
  return { status, laterWrite: written === 'none' ? failure : written };
}

t.test('an upload refused early: the connection is not reset at once, so that a client still sending reads the answer', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: `${dir}/origin` });
  const { url } = await startCache(t, { upstream: origin.url }, `${dir}/cache`);
  const path = `/cas/sha256/${'f'.repeat(64)}`;
  const cases = [
    ['the origin, a wrong token', origin.url, path, { authorization: 'Bearer wrong' }, 403],
    ["a cache, the origin's 403", url, path, { authorization: 'Bearer wrong' }, 403],
    ['a cache, its own 400', url, '/cas/sha256/xyz', {}, 400],
  ] as const;
  for (const [what, base, where, headers, status] of cases) {
    const got = await writeAfterAnswer(base, where, headers);
    t.same(got, { status, laterWrite: 'none' }, `${what}: ${status}, and a write 300 ms after it is not refused`);
  }
});

t.test('an answer to a request without a body keeps the connection', async (t) => {
  const origin = await startOrigin(t);
  const agent = new Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  for (const path of [`/cas/sha256/${'e'.repeat(64)}`, '/cas/sha256/xyz', '/nowhere']) {
    const connection = await new Promise<string | undefined>((resolve, reject) => {
      httpRequest(`${origin.url}${path}`, { agent }, (res) => {
        res.resume();
        res.once('end', () => resolve(res.headers.connection));
      }).once('error', reject).end();
    });
    t.equal(connection, 'keep-alive', `GET ${path}`);
  }
});
