// The upstream client's breaker: after repeated refused connections the upstream is marked
// down for a pause (misses fail at once), then tried again. Real sockets on loopback.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { Upstream } from '../../src/cache/upstream.js';
import { UpstreamError } from '../../src/errors.js';

t.test('refused connections mark the upstream down for a pause, then it is tried again', async (t) => {
  // A port nobody listens on (taken, then released).
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const upstream = new Upstream('origin', `http://127.0.0.1:${port}`, DEFAULT_TIMEOUTS, { failures: 3, openMs: 400 });
  t.teardown(() => upstream.close());
  const attempt = () => upstream.request('/cas/x', { method: 'GET', headers: {} }).then(() => 'answered', (err: unknown) => err);

  for (let i = 0; i < 3; i++) {
    const refused = String(await attempt());
    t.match(refused, /upstream origin: connect ECONNREFUSED$/, `refused ${i + 1}`);
    t.notMatch(refused, /127\.0\.0\.1|:\d+/, 'the address is not told to clients');
  }
  // The upstream comes back at once, but the breaker is open: no connection is tried.
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const down = await attempt();
  t.ok(down instanceof UpstreamError, 'fails as an upstream error (502)');
  t.match(String((down as Error).message), /marked down after 3 failed connections in a row/);
  await new Promise((r) => setTimeout(r, 450));
  const res = await upstream.request('/cas/x', { method: 'GET', headers: {} });
  t.equal(res.statusCode, 200);
  t.equal(await res.body.text(), 'ok', 'after the pause the upstream is tried again');
});
