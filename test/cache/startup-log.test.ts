// Credentials in an upstream or mirror URL (http://user:password@host/) never reach the
// logs: the "cache starting" line shows them as ***, in one process and with workers. A
// worker's own line names its private socket as such, not as an address to use.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { redactUrl } from '../../src/redact-url.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

t.test('redactUrl', async (t) => {
  t.equal(redactUrl('http://user:pw@127.0.0.1:1/x?y'), 'http://***:***@127.0.0.1:1/x?y');
  t.equal(redactUrl('https://token@mirror.example/pub/'), 'https://***@mirror.example/pub/');
  t.equal(redactUrl('http://127.0.0.1:1/x?y'), 'http://127.0.0.1:1/x?y', 'no credentials: as it is');
  t.equal(redactUrl('http://u:pw@[::1'), 'http://***@[::1', 'no URL: still nothing before an @');
});

t.test('the startup log line has no credentials', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'cache.yaml'), 'upstream: http://user:s3cret-up@127.0.0.1:1/x\nmirrors:\n  pypi:\n    url: http://mirror:s3cret-mirror@127.0.0.1:1/simple\n');
  const caches = await Promise.all(['1', '2'].map((workers) =>
    startServerProcess(t, ['cache', '-c', join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', join(dir, `data-${workers}`), '--workers', workers], { FLEETCACHE_LOG_LEVEL: 'info' })));
  for (const [i, cache] of caches.entries()) {
    await eventually('the "cache starting" line', () => cache.stderr().includes('"msg":"cache starting"'));
    const line = cache.stderr().split('\n').find((l) => l.includes('"msg":"cache starting"')) ?? '';
    t.match(line, '"upstream":"http://***:***@127.0.0.1:1/x"', `workers ${i + 1}: the upstream, redacted`);
    t.match(line, '"mirrors":{"pypi":"http://***:***@127.0.0.1:1/simple"}', `workers ${i + 1}: the mirrors, redacted`);
    t.notMatch(cache.stderr(), /s3cret/, `workers ${i + 1}: no password anywhere in the logs`);
    if (i === 1) {
      // fastify's "Server listening at <socket>" would read as the cache's address
      const serving = () => cache.stderr().match(/"msg":"serving the connections the primary hands over \(private socket \/\S+\/h[01]\.sock\)"/g) ?? [];
      await eventually('each worker says it serves', () => serving().length === 2);
      t.notMatch(cache.stderr(), /Server listening/, 'no worker logs a listening address');
    }
    await cache.stop();
  }
});
