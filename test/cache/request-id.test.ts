// The cache's request ids (http/request-id.ts newRequestId) name one request among all the
// processes of a multi-process cache: each worker numbers its requests from 1, so the
// numbers alone repeat from worker to worker, and a log line's reqId would not say which.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { newRequestId } from '../../src/http/request-id.js';
import { request } from 'undici';
import { startOrigin } from '../helpers/origin.js';
import { REPO_ROOT, SOURCE_LOADER, startServerProcess, treeModule } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { randomish, sha256, startUpstream } from './upstream-fixture.js';
import { startCache } from './harness.js';

const run = promisify(execFile);

/** The first request ids of a new process, as a worker takes them. */
async function firstIdsOfAProcess(): Promise<string[]> {
  const script = `const { newRequestId } = await import('${treeModule('src/http/request-id')}'); console.log(JSON.stringify([newRequestId(), newRequestId()]))`;
  const { stdout } = await run(process.execPath, [...SOURCE_LOADER, '--input-type=module', '-e', script], { cwd: REPO_ROOT });
  return JSON.parse(stdout) as string[];
}

t.test('request ids differ between processes, and within one', async (t) => {
  const [a, b] = await Promise.all([firstIdsOfAProcess(), firstIdsOfAProcess()]);
  t.equal(new Set([...a!, ...b!]).size, 4, `two processes: ${[...a!, ...b!].join(', ')}`);
  const here = Array.from({ length: 1000 }, () => newRequestId());
  t.equal(new Set(here).size, here.length, 'one process: each its own');
  for (const id of [...a!, ...b!, here[0]!]) t.match(id, /^req-[0-9a-z]+-[0-9a-z]+$/, `${id}: req-<process>-<number>`);
});

t.test("a request's id joins the cache's error answer, its log line and its upstream request; one brought is kept when plausible", async (t) => {
  const { up, upUrl } = await startUpstream(t);
  // every blob's fill fails: a 502
  up.handler = (req, res) => {
    if (!req.url!.startsWith('/cas/')) return false;
    res.destroy();
    return true;
  };
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', t.testdir()], { FLEETCACHE_LOG_LEVEL: 'error' });
  // A plain GET (the fast miss path), and one with a Range (the routes); with a plausible
  // id, with none, and with ones too long or with characters a log line must not get.
  const brought: [string | undefined, boolean][] = [['ci-job.42:7', true], [undefined, false], ['x'.repeat(65), false], ['a b', false], ['a"b', false]];
  for (const range of [undefined, 'bytes=0-9']) {
    for (const [id, kept] of brought) {
      const hex = sha256(randomish(64 + up.requests.length));
      const res = await request(`${cache.url}/cas/sha256/${hex}`, { headers: { ...(id === undefined ? {} : { 'x-request-id': id }), ...(range ? { range } : {}) } });
      const answer = (await res.body.json()) as { code: string; requestId?: string };
      const what = `${range ? 'a Range GET' : 'a plain GET'}, ${id === undefined ? 'no id' : JSON.stringify(id.slice(0, 10))}`;
      t.equal(res.statusCode, 502, what);
      t.ok(answer.requestId !== undefined && (kept ? answer.requestId === id : /^req-[0-9a-z]+-[0-9a-z]+$/.test(answer.requestId)), `${what}: the answer's id is ${answer.requestId}`);
      t.same(up.requests.filter((r) => r.url.includes(hex)).map((r) => r.headers['x-request-id']), [answer.requestId], `${what}: sent upstream`);
      await eventually('the log line', () => cache.stderr().includes(`"reqId":"${answer.requestId}"`), 5000);
    }
  }
  await cache.stop();
});

t.test('the origin takes the id a cache sends: its error answer, passed on, names it', async (t) => {
  const origin = await startOrigin(t, { dataDir: t.testdir() });
  const res = await request(`${origin.url}/cas/sha256/${'0'.repeat(64)}`, { headers: { 'x-request-id': 'req-cache-1' } });
  t.equal(res.statusCode, 404);
  t.match(await res.body.json(), { code: 'FC_ERR_NOT_FOUND', requestId: 'req-cache-1' });
});

t.test("a PUT through the cache carries its id to the origin: the origin's refusal, passed on, names the id brought, else the cache's own", async (t) => {
  const origin = await startOrigin(t, { dataDir: t.testdir() });
  const cache = await startServerProcess(t, ['cache', '--upstream', origin.url, '--listen', '127.0.0.1:0', '--data', t.testdir()]);
  // the cache's ids, req-<its pid in base 36>-<n>: not the origin's, which runs in this process
  const ofTheCache = new RegExp(`^req-${cache.child.pid!.toString(36)}-[0-9a-z]+$`);
  t.not(cache.child.pid, process.pid);
  const body = randomish(1000);
  for (const brought of ['ci-put.7', undefined]) {
    // a token the origin refuses: its 403, with its requestId, is passed on as it is
    const res = await request(`${cache.url}/cas/sha256/${sha256(body)}`, { method: 'PUT', body, headers: { authorization: 'Bearer not-a-token', ...(brought ? { 'x-request-id': brought } : {}) } });
    const answer = (await res.body.json()) as { code: string; requestId?: string };
    t.same([res.statusCode, answer.code], [403, 'FC_ERR_FORBIDDEN'], JSON.stringify(answer));
    if (brought) t.equal(answer.requestId, brought, 'the id the client brought');
    else t.match(answer.requestId, ofTheCache, "none brought: the cache's own");
  }
  await cache.stop();
});

t.test('a mirror is sent no request id of the cache\'s, a tooltool one\'s blobs neither; the upstream is', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { app, url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl }, tt: { url: upUrl, tooltool: true } } }, t.testdir());
  const { hex, body } = up.addBlob(1000);
  const idsSentTo = (path: string): (string | string[] | undefined)[] => up.requests.filter((r) => r.url === path).map((r) => r.headers['x-request-id']);
  for (const mirror of ['tt', 'm']) {
    const res = await request(`${url}/mirror/${mirror}/sha256/${hex}`);
    t.same([res.statusCode, Buffer.compare(Buffer.from(await res.body.arrayBuffer()), body)], [200, 0], `/mirror/${mirror}: served`);
    await app.cache.fills.drain();
  }
  t.same(idsSentTo(`/sha256/${hex}`), [undefined, undefined], 'neither mirror got an id');
  const { hex: other } = up.addBlob(1000);
  t.equal((await request(`${url}/cas/sha256/${other}`).then(async (res) => (await res.body.dump(), res.statusCode))), 200);
  t.match(idsSentTo(`/cas/sha256/${other}`), [/^req-[0-9a-z]+-[0-9a-z]+$/], 'the upstream got the miss\'s id');
});
