// The example configurations in config/ (one origin, one cache per region, a fleet) load
// with the real schemas and resolve, so that the files users start from stay valid.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadCacheConfig, resolveCacheConfig } from '../../src/cache/config.js';
import { originOptionsFrom } from '../../src/cli/origin.js';
import { loadConfigFile } from '../../src/config/load.js';
import { DEFAULT_MAX_CONNECTIONS } from '../../src/http/connection-limits.js';
import { OriginConfigSchema } from '../../src/origin/config.js';
import { REPO_ROOT } from '../helpers/processes.js';

const CONFIG = join(REPO_ROOT, 'config');

t.test('one cache per region, each in front of the origin', async (t) => {
  const files = readdirSync(CONFIG).filter((f) => /^cache-.*\.yaml$/.test(f)).sort();
  t.ok(files.length >= 2, `${files.length} regions`);
  const caches = files.map((f) => resolveCacheConfig(loadCacheConfig(join(CONFIG, f))));
  t.same(caches.map((c) => `cache-region-${c.region}.yaml`), files, 'each file is named after its region');
  t.equal(new Set(caches.map((c) => c.upstream)).size, 1, 'one origin');
});

t.test('the origin', async (t) => {
  const config = loadConfigFile(OriginConfigSchema, join(CONFIG, 'origin.yaml'));
  const { options, listen } = originOptionsFrom(config, { tokenFile: join(t.testdir({ tokens: 'a-write-token-of-32-characters!\n' }), 'tokens') });
  t.equal(listen, '127.0.0.1:8080', 'loopback unless configured');
  t.same(options.tokens, ['a-write-token-of-32-characters!']);
  t.same([options.maxBlobSize, options.maxHeaders, options.runArtifacts], [20 * 1024 ** 3, 64, { maxBytes: 50 * 1024 ** 3, maxFiles: 100_000 }], 'its limits');
  t.same([options.clientHeaderTimeoutMs, options.maxConnections], [15_000, DEFAULT_MAX_CONNECTIONS], 'its connection limits: 15 s for a head, the default cap');
});
