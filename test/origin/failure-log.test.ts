// A request the origin refuses or fails has a log line that says which request it was: its
// method, its path (never the query string, which may carry a token), its status, code and
// request id, as the cache's "request failed" lines (test/cache/error-log.test.ts); a path no
// route takes, or one that does not decode (refused before routing), too. Never a token: the
// Authorization header's, the query string's (which fastify's message for the latter quoted).
import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

interface Line { msg?: string; reqId?: string; method?: string; url?: string; status?: number; code?: string }

const TOKEN = `origin-failure-log-token-${randomBytes(8).toString('hex')}`;
const WRONG = `wrong-token-${randomBytes(8).toString('hex')}`;
const IN_QUERY = `query-secret-${randomBytes(8).toString('hex')}`;

t.test('a failed request: method, path, status, code and request id, no token', async (t) => {
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', t.testdir()], { FLEETCACHE_TOKEN: TOKEN, FLEETCACHE_LOG_LEVEL: 'info' });
  const body = randomBytes(512);
  const blob = `/cas/sha256/${createHash('sha256').update(body).digest('hex')}`;
  const failures = [
    { method: 'PUT', url: blob, token: WRONG, status: 403, code: 'FC_ERR_FORBIDDEN', what: 'an upload with a token not accepted' },
    { method: 'PUT', url: '/artifacts/r1/j1/out.txt', token: undefined, status: 401, code: 'FC_ERR_UNAUTHORIZED', what: 'an upload without a token' },
    { method: 'GET', url: `/cas/sha256/${'0'.repeat(64)}`, token: TOKEN, status: 404, code: 'FC_ERR_NOT_FOUND', what: 'a blob the origin lacks' },
    { method: 'GET', url: '/no/such/route', token: TOKEN, status: 404, code: 'FC_ERR_NOT_FOUND', what: 'a path no route takes' },
    { method: 'GET', url: '/artifacts/r1/j1/%zz', token: TOKEN, status: 400, code: 'FC_ERR_BAD_NAME', what: 'a path that does not decode, refused before routing' },
  ] as const;
  for (const f of failures) {
    const res = await request(`${origin.url}${f.url}?token=${IN_QUERY}`, {
      method: f.method,
      headers: f.token === undefined ? {} : { authorization: `Bearer ${f.token}` },
      ...(f.method === 'PUT' ? { body } : {}),
    });
    await res.body.dump();
    t.equal(res.statusCode, f.status, `${f.what}: ${f.status}`);
  }
  const failed = (): Line[] => origin.stderr().split('\n').filter((l) => l.includes('"code":"FC_ERR_')).map((l) => JSON.parse(l) as Line);
  await eventually('a line per failed request', () => failed().length >= failures.length);
  const lines = failed();
  for (const [i, f] of failures.entries()) {
    t.match(lines[i], { method: f.method, url: f.url, status: f.status, code: f.code, reqId: /\S/ }, `${f.what}: which request it was`);
  }
  t.equal(new Set(lines.map((l) => l.reqId)).size, lines.length, 'a request id each');
  for (const secret of [TOKEN, WRONG, IN_QUERY]) t.notOk(origin.stderr().includes(secret), 'no token, from the Authorization header or the query string, in the log');
  await origin.stop();
});

t.test('a long path (a bad name of kilobytes) is quoted by its start and its length, in the line\'s url and its message', async (t) => {
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', t.testdir()], { FLEETCACHE_TOKEN: TOKEN, FLEETCACHE_LOG_LEVEL: 'info' });
  // 8000 characters: a line quoting one whole twice still fits the 20,000 characters of stderr the helper keeps
  for (const [url, status] of [[`/artifacts/r1/j1/${'a'.repeat(8000)}`, 400], [`/no/such/${'b'.repeat(8000)}`, 404]] as const) {
    const res = await request(`${origin.url}${url}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    await res.body.dump();
    t.equal(res.statusCode, status, `${url.slice(0, 20)}…: refused`);
    const start = url.slice(0, 40);
    const line = (): string | undefined => origin.stderr().split('\n').findLast((l) => l.includes('"code":"FC_ERR_') && l.includes(`"url":"${start}`));
    await eventually(`the line of ${start}…`, () => line() !== undefined);
    const logged = JSON.parse(line()!) as Line;
    t.equal(logged.url, `${url.slice(0, 256)}… (${url.length} characters)`, `${start}…: its start and its length`);
    t.ok((logged.msg ?? '').length < 512, `${start}…: its message quotes no more (${logged.msg?.length} characters)`);
    t.ok(line()!.length < 1024, `${start}…: the line is short (${line()!.length} characters)`);
  }
  await origin.stop();
});
