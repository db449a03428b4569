// Bytes Node's parser refuses behind a request it took, on one connection (a body longer
// than its Content-Length, garbage after a GET): the request is answered first, then the
// parse error, then the connection is closed. The error went out at once, ahead of the
// answer in flight, which was cut with the connection: the client read the 501 as the
// PUT's answer, and the PUT stored nothing. On the origin, and on a cache in front of it.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { request } from 'undici';
import { startCache } from '../cache/harness.js';
import { startOrigin, TEST_TOKEN, uploadBlob } from '../helpers/origin.js';
import { exchange } from '../helpers/raw-http.js';

/** The status lines of the answers in `answer`, in order. */
function statuses(answer: string): number[] {
  return [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** The answers in `answer`, each from its status line on. */
function answers(answer: string): string[] {
  return answer.split(/(?=HTTP\/1\.1 \d{3} )/);
}

t.test('bytes the parser refuses behind a request: the request is answered first, then the error, then the connection closes', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  for (const [side, url] of [['origin', origin.url], ['cache', cache.url]] as const) {
    // a body longer than its Content-Length: the rest parses as a request, and is not one
    const body = randomBytes(5).toString('hex');
    const hex = createHash('sha256').update(body).digest('hex');
    const put = `PUT /cas/sha256/${hex} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Length: ${body.length}\r\n\r\n`;
    const putAnswer = await exchange(url, () => `${put}${body}EXTRA-BYTES-GARBAGE\r\n\r\n`);
    t.same(statuses(putAnswer), [201, 501], `${side}: the PUT's answer, then the parse error`);
    t.match(answers(putAnswer)[1], /"code":"FC_ERR_NOT_IMPLEMENTED"/, `${side}: the error is the catalogued one`);
    const head = await request(`${url}/cas/sha256/${hex}`, { method: 'HEAD' });
    await head.body.dump();
    t.equal(head.statusCode, 200, `${side}: the blob was stored`);

    const getAnswer = await exchange(url, () => 'GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n');
    t.same(statuses(getAnswer), [200, 501], `${side}: the GET's answer, then the parse error`);
    t.match(answers(getAnswer)[1], /^HTTP\/1\.1 501 [^]*Connection: close[^]*"code":"FC_ERR_NOT_IMPLEMENTED"/, `${side}: the error closes the connection`);
  }
});

t.test('an error that cuts the body of the request being answered is still its answer (400), as before', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  for (const [side, url] of [['origin', origin.url], ['cache', cache.url]] as const) {
    const put = `PUT /artifacts/run-1/job-${side}/cut.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const answer = await exchange(url, () => `${put}3\r\nabc\r\nnot-a-chunk-size\r\n`);
    t.same(statuses(answer), [400], `${side}: one answer, the parse error`);
    t.match(answer, /"code":"FC_ERR_BAD_REQUEST"[^]*HPE_INVALID_CHUNK_SIZE/, `${side}: naming the cause`);
  }
});

t.test('an error that cuts the body of a request pipelined behind another: that one is answered, then the error', async (t) => {
  const origin = await startOrigin(t, { dataDir: t.testdir() });
  // a first request whose answer takes a while (the blob is stored first)
  const body = randomBytes(5).toString('hex');
  const first = `PUT /cas/sha256/${createHash('sha256').update(body).digest('hex')} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const cut = `PUT /artifacts/run-1/job/cut.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nnot-a-chunk-size\r\n`;
  const answer = await exchange(origin.url, () => first + cut);
  t.same(statuses(answer), [201, 400], 'the first one\'s answer, then the error');
  t.match(answers(answer)[1], /HPE_INVALID_CHUNK_SIZE/, 'naming the cause');
});

interface StillSending {
  /** All that arrived, as bytes. */
  received: Buffer;
  /** Whether the server closed its side (a FIN, after its answer). */
  closed: boolean;
  /** The error the connection failed with (a reset: EPIPE, ECONNRESET), or 'none'. */
  failure: string;
  /** From the first write to that failure. */
  failedAfterMs: number;
}

/**
 * Writes `head` on a raw connection, then 16 KiB every 10 ms for `sendMs` or until the
 * connection fails, as a client still sending a body does, and reads nothing for the first
 * `readAfterMs` (a slow link, a client busy writing). Resolves once sending stopped and the
 * server closed its side (or failed, or 8 s passed).
 */
async function stillSending(url: string, head: string, readAfterMs: number, sendMs: number): Promise<StillSending> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true });
  await once(socket, 'connect');
  const started = Date.now();
  const chunks: Buffer[] = [];
  const got: StillSending = { received: Buffer.alloc(0), closed: false, failure: 'none', failedAfterMs: 0 };
  socket.pause();
  socket.on('data', (chunk: Buffer) => void chunks.push(chunk));
  socket.on('end', () => void (got.closed = true));
  socket.on('error', (err: Error) => {
    got.failure = err.message;
    got.failedAfterMs = Date.now() - started;
  });
  socket.write(head);
  const sending = (async () => {
    while (Date.now() - started < sendMs && got.failure === 'none') {
      socket.write(Buffer.alloc(16 * 1024, 1));
      await sleep(10);
    }
  })();
  await sleep(readAfterMs);
  socket.resume();
  await sending;
  const deadline = started + 8000;
  while (!got.closed && got.failure === 'none' && Date.now() < deadline) await sleep(10);
  socket.destroy();
  return { ...got, received: Buffer.concat(chunks) };
}

t.test('a parse error while the client is still sending: it reads the whole answer, then the connection closes, not reset', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  for (const [side, url] of [['origin', origin.url], ['cache', cache.url]] as const) {
    const put = `PUT /artifacts/run-1/job-${side}/cut.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nnot-a-chunk-size\r\n`;
    const got = await stillSending(url, put, 300, 500);
    const answer = got.received.toString('latin1');
    t.same(statuses(answer), [400], `${side}: the 400 arrived`);
    t.match(answer, /"code":"FC_ERR_BAD_REQUEST"[^]*HPE_INVALID_CHUNK_SIZE\)"}$/, `${side}: whole`);
    t.same([got.closed, got.failure], [true, 'none'], `${side}: the connection was closed, not reset, while the client still sent`);
  }
});

t.test('a parse error behind a large answer the client reads late: the answer arrives whole, then the error', async (t) => {
  const origin = await startOrigin(t, { dataDir: t.testdir() });
  const blob = randomBytes(8 * 1024 ** 2);
  const hex = await uploadBlob(origin.url, blob);
  const got = await stillSending(origin.url, `GET /cas/sha256/${hex} HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n`, 300, 200);
  const head = got.received.indexOf('\r\n\r\n') + 4;
  t.ok(got.received.subarray(head, head + blob.length).equals(blob), 'the blob arrived whole');
  const rest = got.received.subarray(head + blob.length).toString('latin1');
  t.same(statuses(rest), [501], 'then the parse error');
  t.same([got.closed, got.failure], [true, 'none'], 'then the connection was closed, not reset');
});

t.test('a client that keeps sending after a parse error cannot hold its connection open', async (t) => {
  const origin = await startOrigin(t, { dataDir: t.testdir() });
  const got = await stillSending(origin.url, 'GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n', 0, 6000);
  t.same(statuses(got.received.toString('latin1')), [200, 501], 'answered, then the error');
  t.not(got.failure, 'none', `the server closed the connection (${got.failure})`);
  t.ok(got.failedAfterMs < 3000, `within ${got.failedAfterMs} ms`);
});
