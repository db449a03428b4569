// The upstream client's breaker: after repeated refused connections the upstream is marked
// down for a pause (misses fail at once), then tried again; the connections it opens to an
// upstream are bounded. Real sockets on loopback.
import http from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { Upstream } from '../../src/cache/upstream.js';
import { UpstreamError } from '../../src/errors.js';
import { eventually } from '../helpers/wait.js';
import { startCache } from './harness.js';
import { randomish, sha256 } from './upstream-fixture.js';
import { deadUrl, serveOnLoopback } from '../helpers/loopback-server.js';

t.test('refused connections mark the upstream down for a pause, then it is tried again', async (t) => {
  const dead = await deadUrl();
  const upstream = new Upstream('origin', dead, DEFAULT_TIMEOUTS, { breaker: { failures: 3, openMs: 400 } });
  t.teardown(() => upstream.close());
  const attempt = () => upstream.request('/cas/x', { method: 'GET', headers: {} }).then(() => 'answered', (err: unknown) => err);

  for (let i = 0; i < 3; i++) {
    const refused = String(await attempt());
    t.match(refused, /upstream origin: connect ECONNREFUSED$/, `refused ${i + 1}`);
    t.notMatch(refused, /127\.0\.0\.1|:\d+/, 'the address is not told to clients');
  }
  // The upstream comes back at once, but the breaker is open: no connection is tried.
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(Number(new URL(dead).port), '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const down = await attempt();
  t.ok(down instanceof UpstreamError, 'fails as an upstream error (502)');
  t.match(String((down as Error).message), /marked down after 3 failed connections in a row/);
  await new Promise((r) => setTimeout(r, 450));
  const res = await upstream.request('/cas/x', { method: 'GET', headers: {} });
  t.equal(res.statusCode, 200);
  t.equal(await res.body.text(), 'ok', 'after the pause the upstream is tried again');
});

t.test('a burst of different misses opens no more connections to the upstream than upstreamConnections; the rest wait their turn', async (t) => {
  const bodies = new Map(Array.from({ length: 24 }, () => randomish(4096)).map((body) => [`/cas/sha256/${sha256(body)}`, body]));
  const held: (() => void)[] = [];
  let holding = true;
  const server = http.createServer((req, res) => {
    const answer = () => res.writeHead(200, { 'content-length': String(bodies.get(req.url!)!.length) }).end(bodies.get(req.url!));
    if (holding) held.push(answer);
    else answer();
  });
  let connections = 0;
  server.on('connection', () => connections++);
  const upstreamUrl = await serveOnLoopback(t, server);
  const cap = 4;
  const { url } = await startCache(t, { upstream: upstreamUrl, upstreamConnections: cap }, t.testdir());
  const answers = Promise.all([...bodies.keys()].map(async (path) => {
    const res = await request(`${url}${path}`);
    return { status: res.statusCode, hash: sha256(Buffer.from(await res.body.arrayBuffer())), path };
  }));
  await eventually(`${cap} requests upstream`, () => held.length === cap);
  await new Promise((r) => setTimeout(r, 200)); // time for more to come, if they could
  t.same([connections, held.length], [cap, cap], `${bodies.size} misses at once: ${cap} connections, one request on each`);
  holding = false;
  for (const answer of held.splice(0)) answer();
  const got = await answers;
  t.ok(got.every((g) => g.status === 200 && `/cas/sha256/${g.hash}` === g.path), 'every miss answered, each with its blob');
  t.equal(connections, cap, 'on those connections');
});
