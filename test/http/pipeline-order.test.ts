// A GET pipelined behind the PUT of the same blob or name, on one connection, in one write:
// it runs once the PUT is answered (RFC 9112 §9.3.2), so it finds what the PUT stored. It
// ran as soon as it was parsed, while the PUT was still storing: a 404, or the previous
// content of a name. On the origin, and on a cache in front of it.
import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { request } from 'undici';
import { startCache } from '../cache/harness.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { exchange } from '../helpers/raw-http.js';

/** The status lines of the answers in `answer`, in order. */
function statuses(answer: string): number[] {
  return [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** PUT `body` to `path`, then GET and HEAD of it, pipelined in one write; the three answers' statuses and the GET's body. */
async function putThenRead(url: string, path: string, body: Buffer): Promise<{ statuses: number[]; got: string }> {
  const put = `PUT ${path} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Length: ${body.length}\r\n\r\n`;
  const reads = `GET ${path} HTTP/1.1\r\nHost: h\r\n\r\nHEAD ${path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`;
  const answer = await exchange(url, () => put + body.toString('latin1') + reads);
  const get = answer.split(/(?=HTTP\/1\.1 \d{3} )/)[1] ?? '';
  return { statuses: statuses(answer), got: get.slice(get.indexOf('\r\n\r\n') + 4) };
}

t.test('a GET pipelined behind a PUT finds what the PUT stored: origin and cache', async (t) => {
  const origin = await startOrigin(t);
  const cache = await startCache(t, { upstream: origin.url }, t.testdir());
  for (const [side, url] of [['origin', origin.url], ['cache', cache.url]] as const) {
    // a blob: latin1 bytes, so that the answer text holds them one for one
    const blob = Buffer.from(randomBytes(200_000).toString('hex').slice(0, 200_000), 'latin1');
    const hex = createHash('sha256').update(blob).digest('hex');
    const cas = await putThenRead(url, `/cas/sha256/${hex}`, blob);
    t.same(cas.statuses, [201, 200, 200], `${side}: blob stored, then read`);
    t.equal(cas.got.length, blob.length, `${side}: the whole blob`);
    t.ok(cas.got === blob.toString('latin1'), `${side}: its bytes`);

    // a name written over
    const path = `/artifacts/run-1/job-${side}/pipe.txt`;
    const first = await request(`${url}${path}`, { method: 'PUT', body: 'first content', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    await first.body.dump();
    t.equal(first.statusCode, 201);
    const named = await putThenRead(url, path, Buffer.from('second content'));
    t.same(named.statuses, [200, 200, 200], `${side}: name written over, then read`);
    t.equal(named.got, 'second content', `${side}: the new content, not the previous one`);
  }
});
