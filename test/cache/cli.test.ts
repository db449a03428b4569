// `fleetcache cache` as a real process: config file plus overriding flags, the
// "listening" line, serving, a clean stop on SIGTERM.
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { startUpstream } from './upstream-fixture.js';

t.test('fleetcache cache --config FILE with flags; its upstream answers, and nothing is said of it', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(50_000);
  const dir = t.testdir();
  const file = path.join(dir, 'cache.yaml');
  writeFileSync(file, `region: flagged\nupstream: http://127.0.0.1:9/unused\nmaxSize: 1GiB\n`);
  const server = await startServerProcess(t, ['cache', '--config', file, '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', path.join(dir, 'data'), '--region', 'r1'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  t.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const res = await request(`${server.url}/cas/sha256/${hex}`);
  t.same(Buffer.from(await res.body.arrayBuffer()), body, '--upstream overrides the file');
  const health = await request(`${server.url}/-/healthz`);
  t.same(await health.body.json(), { status: 'ok', role: 'cache', region: 'r1' }, 'the origin\'s shape, with the region');
  await eventually('the probe', () => up.count('/-/healthz') === 1);
  await server.stop();
  t.equal(server.child.exitCode, 0, 'SIGTERM stops it cleanly');
  t.notMatch(server.stderr(), /upstream does not answer/, 'a live upstream: nothing said');
});

t.test('an upstream that does not answer is warned about as the cache starts', async (t) => {
  const dir = t.testdir();
  const dead = await startServerProcess(t, ['cache', '--upstream', 'http://user:secret@127.0.0.1:9', '--listen', '127.0.0.1:0', '--data', path.join(dir, 'dead')], { FLEETCACHE_LOG_LEVEL: 'warn' });
  await eventually('the warning', () => /the upstream does not answer/.test(dead.stderr()));
  const line = JSON.parse(dead.stderr().split('\n').find((l) => l.includes('the upstream does not answer'))!) as Record<string, unknown>;
  t.match(line, { level: 40, upstream: 'http://***:***@127.0.0.1:9', err: /ECONNREFUSED/, msg: 'the upstream does not answer: misses will fail until it does; check the upstream URL' });
  const health = await request(`${dead.url}/-/healthz`);
  t.equal(health.statusCode, 200, 'the cache serves all the same (what it holds)');
  await health.body.dump();
});

t.test('an upstream that accepts and never answers: asked once, by the primary, not by each worker; the start-up probe does not keep a stopped cache alive', async (t) => {
  // One silent upstream for each cache, both at once: each probe seen by its own.
  const dir = t.testdir(); // once: a second call would empty the first's
  await Promise.all(['1', '2'].map(async (workers) => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => { sockets.add(socket); });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t.teardown(() => { for (const s of sockets) s.destroy(); silent.close(); });
    const upstream = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const cache = await startServerProcess(t, ['cache', '--upstream', upstream, '--listen', '127.0.0.1:0', '--data', path.join(dir, `data-${workers}`), '--workers', workers], { FLEETCACHE_LOG_LEVEL: 'warn' });
    await eventually('the probe connected', () => sockets.size > 0);
    // An absence: a worker that probed would have connected as it started, before it
    // listened, so before the "listening" line; 500 ms more lets such a connection arrive.
    await new Promise((resolve) => setTimeout(resolve, 500));
    t.equal(sockets.size, 1, `--workers ${workers}: asked once, by the primary, not by each worker`);
    const asked = Date.now();
    await cache.stop();
    t.equal(cache.child.exitCode, 0, `--workers ${workers}: SIGTERM ends it cleanly (not killed after the wait)`);
    t.ok(Date.now() - asked < 4000, `--workers ${workers}: in ${Date.now() - asked} ms, not after the probe's 35 s`);
    t.notMatch(cache.stderr(), /upstream does not answer/, 'a probe cut by the stop is not a warning');
    for (const s of sockets) s.destroy();
    sockets.clear();
  }));
});
