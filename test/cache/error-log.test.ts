// A failed request's log line ("request failed") says which request failed: its method,
// its path (never the query string, which may carry a token) and its request id, on the
// fast paths (fast-miss.ts) as on the routes; never the Authorization header.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

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
  await cache.stop();
});
