// A GET pipelined behind the PUT of the same blob or name, on one connection, in one write:
// it runs once the PUT is answered (RFC 9112 §9.3.2), so it finds what the PUT stored. It
// ran as soon as it was parsed, while the PUT was still storing: a 404, or the previous
// content of a name. On the origin, and on a cache in front of it.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startCache } from '../cache/harness.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { exchange } from '../helpers/raw-http.js';
import { BodyWriter } from '../../src/http/body-writer.js';
import { inPipelineOrder, MAX_WAITING } from '../../src/http/pipeline-order.js';
import { eventually } from '../helpers/wait.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

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
  const dir = t.testdir({ origin: {}, cache: {} }); // one call: a second would wipe the first's
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
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

t.test('a PUT pipelined behind a GET runs once the GET is answered (all must be safe to run side by side)', async (t) => {
  const events: string[] = [];
  // an upstream whose answer to the GET takes 300 ms: the PUT must not reach it meanwhile
  const upstream = createServer((req, res) => {
    events.push(`${req.method} arrives`);
    if (req.method === 'GET') setTimeout(() => { events.push('GET answered'); res.writeHead(200, { etag: '"v1"', 'cache-control': 'public, no-cache' }).end('first'); }, 300);
    else req.resume().on('end', () => res.writeHead(201, { 'cache-control': 'no-store' }).end('{}'));
  });
  const cache = await startCache(t, { upstream: await serveOnLoopback(t, upstream) }, t.testdir());
  const path = '/artifacts/run-1/job/order.txt';
  const answer = await exchange(cache.url, () => `GET ${path} HTTP/1.1\r\nHost: h\r\n\r\nPUT ${path} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer ${TEST_TOKEN}\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecond`);
  t.same(statuses(answer), [200, 201]);
  t.same(events, ['GET arrives', 'GET answered', 'PUT arrives'], 'the PUT went upstream after the GET was answered');
});

t.test('requests waiting behind one that is not safe are bounded: past MAX_WAITING the connection is closed', async (t) => {
  // an upstream that takes the PUT and never answers: everything behind it waits
  const upstream = createServer((req) => void req.resume());
  const cache = await startCache(t, { upstream: await serveOnLoopback(t, upstream) }, t.testdir());
  const { port } = new URL(cache.url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const put = `PUT /artifacts/run-1/job/slow.txt HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer any\r\nContent-Length: 1\r\n\r\nx`;
  socket.write(put + 'GET /-/healthz HTTP/1.1\r\nHost: h\r\n\r\n'.repeat(MAX_WAITING + 10));
  const timeout = setTimeout(() => socket.destroy(new Error('still open')), 10_000);
  await closed;
  clearTimeout(timeout);
  t.ok(socket.destroyed && !/still open/.test(String(socket.errored)), 'closed by the server, not held open with every request waiting');
});

t.test('an answer queued behind another is closed when its client leaves (node gives it no close of its own): a writer attached before or after stops', async (t) => {
  let queued: ServerResponse | undefined;
  const server = createServer((req, res) => inPipelineOrder(req, res, () => {
    if (req.url === '/second') queued = res; // the first is never answered: the second waits behind it
  }));
  const socket = connect(Number(new URL(await serveOnLoopback(t, server)).port), '127.0.0.1');
  socket.on('error', () => undefined);
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.name);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  // with more answers queued than an emitter's default listener limit (10)
  socket.write('GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\n\r\n' + 'GET /more HTTP/1.1\r\nHost: h\r\n\r\n'.repeat(15));
  await eventually('the second request handled', () => queued !== undefined);
  const before = new BodyWriter(1024);
  before.attach(queued!);
  before.write(Buffer.from('never sent'));
  const settled = before.settled();
  t.equal(queued!.socket, null, 'queued: not given the connection');
  socket.destroy();
  await eventually('the writer attached before the client left stops', () => before.closed, 5000);
  t.equal(await settled, false, 'and what waited on its write is told');
  const after = new BodyWriter(1024);
  after.attach(queued!);
  t.ok(after.closed, 'a writer attached once the client has left stops at once');
  await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
  t.same(warnings, [], 'one listener per connection, however many answers wait on it');
});
