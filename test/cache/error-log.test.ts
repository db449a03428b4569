// A failed request's log line ("request failed") says which request failed: its method,
// its path (never the query string, which may carry a token) and its request id, on the
// fast paths (fast-miss.ts) as on the routes; never the Authorization header. Each is counted
// in fleetcache_cache_errors_total.
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

interface Line { msg?: string; reqId?: string; method?: string; url?: string; code?: string }

t.test('request failed: method, path and request id, no secrets', async (t) => {
  const dir = t.testdir();
  // Nothing listens on port 1: every fill fails (502 FC_ERR_UPSTREAM).
  writeFileSync(join(dir, 'cache.yaml'), 'upstream: http://127.0.0.1:1/\n');
  const cache = await startServerProcess(t, ['cache', '-c', join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', join(dir, 'data')], { FLEETCACHE_LOG_LEVEL: 'info' });
  const hex = 'b'.repeat(64);
  const paths = [
    [`/cas/sha256/${hex}`, 'fast path'],
    [`/cas/sha256/${hex.toUpperCase()}`, 'routes'],
    ['/artifacts/r1/j1/out.txt', 'a name'],
  ] as const;
  for (const [path, what] of paths) {
    const res = await request(`${cache.url}${path}?token=s3cret-query`, { headers: { authorization: 'Bearer s3cret-auth' } });
    const body = await res.body.text();
    t.equal(res.statusCode, 502, `${what}: 502`);
    t.match(body, /FC_ERR_UPSTREAM/);
  }
  const failed = (): Line[] => cache.stderr().split('\n').filter((l) => l.includes('"msg":"request failed"')).map((l) => JSON.parse(l) as Line);
  await eventually('three "request failed" lines', () => failed().length >= paths.length);
  const lines = failed();
  for (const [i, [path, what]] of paths.entries()) {
    t.match(lines[i], { method: 'GET', url: path, code: 'FC_ERR_UPSTREAM', reqId: /^req-/ }, `${what}: method, path, request id`);
  }
  t.equal(new Set(lines.map((l) => l.reqId)).size, lines.length, 'a request id each');
  t.notMatch(cache.stderr(), /s3cret/, 'no token from the query string or the Authorization header');
  // and counted, fast path and routes alike, for an alert on a region whose misses fail
  const metrics = await (await request(`${cache.url}/-/metrics`)).body.text();
  t.match(metrics, /^fleetcache_cache_errors_total\{code="FC_ERR_UPSTREAM",status="502",role="cache",region="default"\} 3$/m);
  await cache.stop();
});

t.test('an only-if-cached request the cache answers with a 504 (push asks so which bases it holds) is the answer asked for: neither logged nor counted as a failure', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'cache.yaml'), 'upstream: http://127.0.0.1:1/\n');
  const cache = await startServerProcess(t, ['cache', '-c', join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', join(dir, 'data')], { FLEETCACHE_LOG_LEVEL: 'info' });
  const blob = `/cas/sha256/${'c'.repeat(64)}`;
  for (const method of ['HEAD', 'GET'] as const) {
    const res = await request(`${cache.url}${blob}`, { method, headers: { 'cache-control': 'only-if-cached' } });
    await res.body.dump();
    t.equal(res.statusCode, 504, `${method} only-if-cached: 504`);
  }
  // a miss that does fail (nothing listens upstream), logged after the probes were answered
  await (await request(`${cache.url}${blob}`)).body.dump();
  const failed = (): Line[] => cache.stderr().split('\n').filter((l) => l.includes('"msg":"request failed"')).map((l) => JSON.parse(l) as Line);
  await eventually('the failed miss logged', () => failed().length >= 1);
  t.same(failed().map((l) => l.code), ['FC_ERR_UPSTREAM'], 'only the failed miss is a "request failed" line');
  const metrics = await (await request(`${cache.url}/-/metrics`)).body.text();
  t.notMatch(metrics, /^fleetcache_cache_errors_total\{code="FC_ERR_UPSTREAM_TIMEOUT"/m, 'the 504s asked for are not counted as errors');
  t.match(metrics, /^fleetcache_cache_errors_total\{code="FC_ERR_UPSTREAM",status="502",role="cache",region="default"\} 1$/m);
  await cache.stop();
});

t.test('warnings about a mirror upstream name the path, never its query (a signature, a token)', async (t) => {
  const dir = t.testdir();
  let calls = 0;
  const upstream = createServer((_req, res) => {
    if (calls++ === 0) return void res.writeHead(200, { 'cache-control': 'max-age=0, stale-if-error=600', etag: '"v1"' }).end('kept');
    res.writeHead(500).end('down');
  });
  const upstreamUrl = await serveOnLoopback(t, upstream);
  writeFileSync(join(dir, 'cache.yaml'), `upstream: http://127.0.0.1:1/\nmirrors:\n  m:\n    url: ${upstreamUrl}/\n`);
  const cache = await startServerProcess(t, ['cache', '-c', join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', join(dir, 'data')], { FLEETCACHE_LOG_LEVEL: 'info' });
  const get = async (): Promise<string> => (await request(`${cache.url}/mirror/m/obj?X-Amz-Signature=s3cret-sig`)).body.text();
  t.equal(await get(), 'kept', 'filled');
  // The commit follows the answer: the entry is on disk once the store counts it.
  await eventually('the entry stored', async () => ((await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { objects: number } }).store.objects === 1);
  t.equal(await get(), 'kept', 'served stale while upstream fails');
  await eventually('the stale-if-error warning', () => cache.stderr().includes('serving stale'));
  const line = JSON.parse(cache.stderr().split('\n').find((l) => l.includes('serving stale'))!) as Line;
  t.equal(line.url, '/obj', 'the path only');
  t.notMatch(cache.stderr(), /s3cret/, 'no query string in any log line');
  await cache.stop();
});
