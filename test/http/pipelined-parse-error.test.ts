// Bytes Node's parser refuses behind a request it took, on one connection (a body longer
// than its Content-Length, garbage after a GET): the request is answered first, then the
// parse error, then the connection is closed. The error went out at once, ahead of the
// answer in flight, which was cut with the connection: the client read the 501 as the
// PUT's answer, and the PUT stored nothing. On the origin, and on a cache in front of it.
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startCache } from '../cache/harness.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
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
