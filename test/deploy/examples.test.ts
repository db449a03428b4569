// The example configurations in config/ (one origin, one cache per region, a fleet) load
// with the real schemas and resolve, so that the files users start from stay valid, and
// name every key the schemas accept (set, or commented out), so that none goes unexplained.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { cacheConfigSchema, resolveCacheConfig } from '../../src/cache/config.js';
import { loadCacheConfig } from '../../src/cache/config-file.js';
import { originOptionsFrom } from '../../src/cli/origin.js';
import { loadConfigFile } from '../../src/config/load.js';
import { DEFAULT_MAX_CONNECTIONS } from '../../src/http/connection-limits.js';
import { OriginConfigSchema } from '../../src/origin/config.js';
import { FleetSchema } from '../../src/run/fleet.js';
import { REPO_ROOT } from '../helpers/processes.js';

const CONFIG = join(REPO_ROOT, 'config');

/** A JSON schema's keys, nested ones as `parent.key` (`*` for a map's entries), through if/then/else branches. */
function schemaKeys(schema: unknown, prefix = ''): string[] {
  if (typeof schema !== 'object' || schema === null) return [];
  const node = schema as { properties?: Record<string, unknown>; patternProperties?: Record<string, unknown>; then?: unknown; else?: unknown };
  const keys: string[] = [];
  for (const [key, value] of Object.entries(node.properties ?? {})) keys.push(`${prefix}${key}`, ...schemaKeys(value, `${prefix}${key}.`));
  for (const value of Object.values(node.patternProperties ?? {})) keys.push(...schemaKeys(value, `${prefix}*.`));
  return [...new Set([...keys, ...schemaKeys(node.then, prefix), ...schemaKeys(node.else, prefix)])];
}

/** The keys of `schema` whose last name is written nowhere in `files` as `name:` (in a line or a comment). */
function undocumentedKeys(schema: unknown, files: string[]): string[] {
  const text = files.map((f) => readFileSync(f, 'utf8')).join('\n');
  return schemaKeys(schema).filter((key) => !new RegExp(`(^|[\\s{,#])${key.split('.').at(-1)}:`, 'm').test(text));
}

t.test('every file in config/ is one the tests load: a cache-<region>.yaml, origin.yaml or fleet.yaml (test/run/fleet.test.ts)', async (t) => {
  t.same(readdirSync(CONFIG).filter((f) => !/^(cache-.+|origin|fleet)\.yaml$/.test(f)), [], 'no example left unchecked');
});

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

t.test('every key the schemas accept is named in the examples users copy', async (t) => {
  for (const file of readdirSync(CONFIG).filter((f) => /^cache-.*\.yaml$/.test(f))) {
    t.same(undocumentedKeys(cacheConfigSchema, [join(CONFIG, file)]), [], `config/${file}`);
  }
  // the S3 storage's keys are in the deployment's origin.yaml, which uses it
  t.same(undocumentedKeys(OriginConfigSchema, [join(CONFIG, 'origin.yaml'), join(REPO_ROOT, 'deploy/origin.yaml')]), [], 'config/origin.yaml, deploy/origin.yaml');
  t.same(undocumentedKeys(FleetSchema, [join(CONFIG, 'fleet.yaml')]), [], 'config/fleet.yaml');
});
