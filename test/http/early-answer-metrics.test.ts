// Answers given before a request is routed (a method Node's parser does not know, a URL that
// does not decode, a CONNECT, a connection over maxConnections) are counted as every other
// answer is: in the cache's fleetcache_cache_errors_total, the origin's fleetcache_requests_total.
import { connect } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startOrigin } from '../helpers/origin.js';
import { startCache } from '../cache/harness.js';
import { exchange, headOnlyPut, statusOf } from '../helpers/raw-http.js';
import { eventually } from '../helpers/wait.js';

/** The early answers asked for, each by its request line and the answer's status and code. */
const EARLY = [
  { line: 'FOO /x HTTP/1.1', status: 501, code: 'FC_ERR_NOT_IMPLEMENTED', method: 'unparsed' },
  { line: 'GET /% HTTP/1.1', status: 400, code: 'FC_ERR_BAD_NAME', method: 'GET' },
  { line: 'CONNECT elsewhere.example:443 HTTP/1.1', status: 501, code: 'FC_ERR_NOT_IMPLEMENTED', method: 'CONNECT' },
] as const;

async function metricsText(url: string): Promise<string> {
  const res = await request(`${url}/-/metrics`);
  return res.body.text();
}

/** The value of the series `name{labels…}` in a Prometheus text (0 when absent); `labels` in any order. */
function seriesValue(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    if (Object.entries(labels).every(([k, v]) => m[1]!.includes(`${k}="${v}"`))) sum += Number(m[2]);
  }
  return sum;
}

async function sendEach(url: string): Promise<void> {
  for (const { line, status } of EARLY) {
    const answer = await exchange(url, (host) => `${line}\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    if (statusOf(answer) !== status) throw new Error(`${line}: answered ${statusOf(answer)}, not ${status}`);
  }
}

t.test('the cache counts its answers given before routing in fleetcache_cache_errors_total', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  const before = await metricsText(cache.url);
  await sendEach(cache.url);
  const after = await metricsText(cache.url);
  for (const { status, code } of new Map(EARLY.map((e) => [e.code + e.status, e])).values()) {
    const labels = { code, status: String(status) };
    const sent = EARLY.filter((e) => e.code === code && e.status === status).length;
    t.equal(seriesValue(after, 'fleetcache_cache_errors_total', labels) - seriesValue(before, 'fleetcache_cache_errors_total', labels), sent, `${code} ${status}: each counted`);
  }
});

t.test('the origin counts its answers given before routing in fleetcache_requests_total', async (t) => {
  const origin = await startOrigin(t, { dataDir: t.testdir() });
  const before = await metricsText(origin.url);
  await sendEach(origin.url);
  const after = await metricsText(origin.url);
  for (const { line, status, method } of EARLY) {
    const labels = { method, status: String(status) };
    t.equal(seriesValue(after, 'fleetcache_requests_total', labels) - seriesValue(before, 'fleetcache_requests_total', labels), 1, `${line}: counted`);
  }
});

t.test('a connection over maxConnections is counted as the 503 it is answered', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin'), maxConnections: 1 });
  const cache = await startCache(t, { upstream: origin.url, maxConnections: 1 }, join(dir, 'cache'));
  for (const [server, url, name, labels] of [
    ['origin', origin.url, 'fleetcache_requests_total', { status: '503' }],
    ['cache', cache.url, 'fleetcache_cache_errors_total', { code: 'FC_ERR_UNAVAILABLE', status: '503' }],
  ] as const) {
    const { hostname, port } = new URL(url);
    const held = connect(Number(port), hostname);
    await new Promise<void>((resolve) => held.once('connect', () => resolve()));
    // the server may see the held connection a moment after the client: the next one is refused once it has
    const refused = await exchange(url, () => '');
    held.destroy();
    t.equal(statusOf(refused), 503, `${server}: refused`);
    // scraped once the server has seen the held connection close: until then a scrape is refused (and counted) too
    let refusals = 1;
    let scraped = '';
    await eventually(`${server}: a scrape within maxConnections`, async () => {
      const res = await request(`${url}/-/metrics`);
      scraped = await res.body.text();
      if (res.statusCode === 503) refusals++;
      return res.statusCode === 200;
    });
    t.equal(seriesValue(scraped, name, labels), refusals, `${server}: each refusal counted`);
  }
});

/**
 * An origin and a cache in front of it, each with the metric series a malformed request
 * would count in: [server, url, metric, labels].
 */
async function bothServers(t: Test) {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  const servers = [
    ['cache', cache.url, 'fleetcache_cache_errors_total', { code: 'FC_ERR_BAD_REQUEST' }],
    ['origin', origin.url, 'fleetcache_requests_total', { method: 'unparsed' }],
  ] as const;
  return { origin, cache, servers };
}

t.test('a PUT its client closes midway answered nor counted as a malformed request', async (t) => {
  const { origin, cache, servers } = await bothServers(t);
  for (const [server, url, name, malformed] of servers) {
    const put = await headOnlyPut(url, '/artifacts/r/j/x', origin.token, 100);
    const closed = new Promise<void>((resolve) => put.socket.once('close', () => resolve()));
    put.socket.write(Buffer.alloc(10));
    put.socket.end(); // the client stops sending (its request cut), and reads what it is answered
    await closed;
    t.equal(put.answer(), 'HTTP/1.1 100 Continue\r\n\r\n', `${server}: the cut request closed without a parse error's answer`);
    t.equal(seriesValue(await metricsText(url), name, malformed), 0, `${server}: nor counted as one`);
  }
  await eventually('the cache counts the PUT as aborted, once', async () => seriesValue(await metricsText(cache.url), 'fleetcache_cache_errors_total', { code: 'FC_ERR_ABORTED' }) === 1, 5000);
});

t.test('the origin counts a PUT its client closes midway as aborted, once', async (t) => {
  const origin = await startOrigin(t, { dataDir: t.testdir() });
  const put = await headOnlyPut(origin.url, '/artifacts/r/j/x', origin.token, 100);
  const closed = new Promise<void>((resolve) => put.socket.once('close', () => resolve()));
  put.socket.write(Buffer.alloc(10));
  put.socket.end(); // the request cut: never answered, so never seen by the hook that counts answers
  await closed;
  let scraped = '';
  await eventually('the origin counts the PUT as aborted', async () => {
    scraped = await metricsText(origin.url);
    return seriesValue(scraped, 'fleetcache_requests_total', { method: 'PUT', status: 'aborted' }) === 1;
  }, 5000);
  t.equal(seriesValue(scraped, 'fleetcache_requests_total', { method: 'PUT' }), 1, 'counted under no other status');
});

t.test('a connection its client closes in the middle of a request head is neither answered nor counted as a malformed request', async (t) => {
  const { servers } = await bothServers(t);
  for (const [server, url, name, malformed] of servers) {
    for (const head of ['GET /cas/sha256/ab HT', 'GET /cas/sha256/ab HTTP/1.1\r\nHost: x\r\nAccept: */']) {
      const { hostname, port } = new URL(url);
      const socket = connect(Number(port), hostname);
      let answer = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.end(head); // the client goes (it still reads what it is answered)
      await closed;
      t.equal(answer, '', `${server}, ${JSON.stringify(head)}: closed without an answer`);
    }
    t.equal(seriesValue(await metricsText(url), name, malformed), 0, `${server}: nor counted as malformed`);
  }
});
