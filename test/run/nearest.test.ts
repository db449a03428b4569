// region: auto: the machine measures each cache with curl in a shell; the cache URLs come
// from configuration and must reach curl as they are written, never as shell syntax.
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createProvider } from '../../src/backends/registry.js';
import { measuredOrder, pullingCaches } from '../../src/run/nearest.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

t.test('cache URLs holding a quote, $( ), a space or a glob run nothing on the machine, and are measured as written', async (t) => {
  const dir = t.testdir();
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(decodeURIComponent(req.url ?? ''));
    res.end('ok');
  });
  const base = await serveOnLoopback(t, server);
  const mark = join(dir, 'ran');
  // no space in it (curl refuses a URL with one): were it shell syntax, `id` would write the file
  const quoted = `${base}/q'$(id>${mark})'`;
  const globbed = `${base}/g[1-2]{a,b}`;
  const spaced = `${base}/s; touch ${mark}`;
  const machines = await createProvider('local', 'local', {}, { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'state') });
  const machine = await machines.allocate({ name: 'alpha-1' });
  t.teardown(() => machine.discard());
  const choice = await measuredOrder(machine, { origin: `${base}/origin`, regions: { a: { caches: [quoted] }, b: { caches: [globbed] }, c: { caches: [spaced] } } });
  t.notOk(existsSync(mark), 'no command of a URL ran');
  t.ok(paths.includes(`/q'$(id>${mark})'/-/healthz`), `the quoted URL reached the cache as written: ${JSON.stringify(paths)}`);
  t.ok(paths.includes('/g[1-2]{a,b}/-/healthz'), 'the URL with glob characters reached the cache as written, once');
  t.match(choice.how, /^auto: .* answered in/, 'the caches answered the measure');
  t.same(new Set(choice.urls.slice(0, 2)), new Set([quoted, globbed]), 'both measured first');
});

/** Whether the command line of any process of this host holds `text`. */
function onSomeCommandLine(text: string): boolean {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).some((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(text);
    } catch {
      return false; // gone meanwhile
    }
  });
}

t.test("a cache URL's password is on no command line of the machine while it is measured", async (t) => {
  const dir = t.testdir();
  const password = `pw${Date.now()}${process.pid}`;
  let seen: boolean | undefined;
  let authorization: string | undefined;
  // looked for while the machine's curl waits for this answer
  const server = createServer((req, res) => {
    seen = onSomeCommandLine(password);
    authorization = req.headers.authorization;
    res.end('ok');
  });
  const url = (await serveOnLoopback(t, server)).replace('http://', `http://cacheuser:${password}@`);
  const machines = await createProvider('local', 'local', {}, { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'state') });
  const machine = await machines.allocate({ name: 'alpha-1' });
  t.teardown(() => machine.discard());
  const choice = await measuredOrder(machine, { origin: 'http://127.0.0.1:1', regions: { a: { caches: [url] } } });
  t.equal(seen, false, 'not on a command line');
  t.equal(authorization, `Basic ${Buffer.from(`cacheuser:${password}`).toString('base64')}`, 'curl sent the credentials');
  t.equal(choice.urls[0], url, 'the cache measured');
});

t.test("pullingCaches: the first cache of each region the jobs' machines are in; defaultRegion for a job naming none, every region's for auto", async (t) => {
  const fleet = { origin: 'http://origin', regions: { a: { caches: ['http://a1', 'http://a2'] }, b: { caches: ['http://b1'] }, c: { caches: ['http://c1'] } }, defaultRegion: 'c', startupLimit: 4, dispatchDelay: '1s', cacheTimeout: '30s' };
  t.same(pullingCaches(fleet, ['b', 'b']), ['http://b1'], 'one region: its first cache, once');
  t.same(pullingCaches(fleet, ['a', undefined]), ['http://a1', 'http://c1'], 'a job naming no region: the default region');
  t.same(pullingCaches(fleet, ['nowhere']), ['http://a1'], 'a region without caches pulls through the first region listed');
  t.same(pullingCaches(fleet, ['auto']), ['http://a1', 'http://b1', 'http://c1'], 'auto: any region');
  t.same(pullingCaches({ ...fleet, defaultRegion: 'auto' }, [undefined]), ['http://a1', 'http://b1', 'http://c1'], 'a default of auto: any region');
  t.same(pullingCaches({ ...fleet, regions: {} }, [undefined, 'a']), [], 'no caches: none (never the origin)');
});
