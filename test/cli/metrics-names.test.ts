// /-/metrics of a real origin and cache (one process, and several) against Prometheus'
// naming rules, as `promtool check metrics` lints them: what an operator's CI would run.
import t from 'tap';
import { join } from 'node:path';
import { request } from 'undici';
import { lintMetricNames } from '../helpers/prom-lint.js';
import { startServerProcess } from '../helpers/processes.js';

t.test('the metrics of an origin and of caches follow the naming rules promtool checks', async (t) => {
  const dir = t.testdir();
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', join(dir, 'origin')], { FLEETCACHE_TOKEN: 'metrics-names-test-token' });
  const single = await startServerProcess(t, ['cache', '--upstream', origin.url, '--listen', '127.0.0.1:0', '--data', join(dir, 'cache')]);
  const workers = await startServerProcess(t, ['cache', '--upstream', origin.url, '--listen', '127.0.0.1:0', '--data', join(dir, 'workers'), '--workers', '2']);
  for (const [what, server] of [['origin', origin], ['cache', single], ['cache with workers', workers]] as const) {
    const res = await request(`${server.url}/-/metrics`);
    t.equal(res.statusCode, 200, `${what}: /-/metrics answers`);
    const text = await res.body.text();
    t.match(text, /^# TYPE fleetcache_\S+ counter$/m, `${what}: metrics were read`);
    t.same(lintMetricNames(text), [], `${what}: no problem`);
  }
});
