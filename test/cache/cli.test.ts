// `fleetcache cache` as a real process: config file plus overriding flags, the
// "listening" line, serving, a clean stop on SIGTERM.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { UpstreamFixture } from './upstream-fixture.js';

t.test('fleetcache cache --config FILE with flags', async (t) => {
  const up = new UpstreamFixture();
  const upUrl = await up.start();
  t.teardown(() => up.stop());
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
  await server.stop();
  t.equal(server.child.exitCode, 0, 'SIGTERM stops it cleanly');
});
