// Configuration values the schemas used to let through, or named badly: each refused with
// file:line:field and what is wanted. The example configurations listen on loopback.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { OriginConfigSchema } from '../../src/origin/config.js';
import { parseCacheConfig } from '../../src/cache/config-file.js';
import { DEFAULT_MAX_CONNECTIONS } from '../../src/http/connection-limits.js';
import { REPO_ROOT } from '../helpers/processes.js';

const originError = (text: string): string => {
  try {
    parseConfig(OriginConfigSchema, text, 'origin.yaml');
    return '(accepted)';
  } catch (err) {
    return (err as Error).message;
  }
};

t.test('origin', async (t) => {
  t.equal(originError("data: ''\n"), 'origin.yaml:1: data: must NOT have fewer than 1 characters', 'an empty data directory (else the working directory)');
  t.equal(originError('storage: {type: nfs}\n'), 'origin.yaml:1: storage.type: must be "disk" or "s3"', 'an unknown storage type names the types');
  t.equal(originError('storage: {type: s3}\n'), 'origin.yaml:1: storage: missing required field "bucket"', 's3 still needs its bucket');
  for (const zero of ['"0"', '0GiB', '0.0MiB']) {
    t.equal(originError(`limits:\n  maxBlobSize: ${zero}\n`), 'origin.yaml:2: limits.maxBlobSize: must be a size of at least 1 byte (e.g. 4096, 512MiB, 50GiB)', `maxBlobSize ${zero}, as 0 is`);
  }
  // half a byte is no number of bytes at all (config/units.ts: a fraction needs a unit)
  t.equal(originError('limits:\n  maxBlobSize: "0.5"\n'), 'origin.yaml:2: limits.maxBlobSize: must be a size (e.g. 4096, 512MiB, 50GiB)', 'maxBlobSize "0.5"');
  t.equal(originError('limits:\n  maxBlobSize: 0\n'), 'origin.yaml:2: limits.maxBlobSize: must be >= 1');
  t.equal(originError('limits:\n  maxRecordSize: many\n'), 'origin.yaml:2: limits.maxRecordSize: must be a size (e.g. 4096, 512MiB, 50GiB)', 'a malformed size says so');
  for (const ok of ['"1"', '0.5KiB', '20GiB', '1']) t.equal(originError(`limits:\n  maxBlobSize: ${ok}\n`), '(accepted)', `maxBlobSize ${ok}`);
  t.equal(originError('storage: {type: s3, bucket: b}\n'), '(accepted)');
  t.equal(originError('storage:\n  type: s3\n  bucket: fleetcache/origin\n'), 'origin.yaml:3: storage.bucket: must be letters, digits, ".", "_" and "-", starting with a letter or digit (e.g. eu-west)', 'a prefix written into the bucket is refused with its line (the SDK refused it at start, naming no file)');
  t.equal(originError('storage: {type: s3, bucket: my-bucket.example_1}\n'), '(accepted)');
  // as the cache's upstream (config/units.ts parseBaseUrl): the SDK dropped a query unsaid, and the start logged it whole
  const baseUrl = 'must be an http or https URL with no query or fragment (e.g. http://origin.example:8080)';
  t.equal(originError('storage:\n  type: s3\n  bucket: b\n  endpoint: https://minio.example:9000/?X-Amz-Security-Token=s3cret\n'), `origin.yaml:4: storage.endpoint: ${baseUrl}`, 'an S3 endpoint with a query');
  t.equal(originError('storage:\n  type: s3\n  bucket: b\n  endpoint: https://minio.example:9000#s3\n'), `origin.yaml:4: storage.endpoint: ${baseUrl}`, 'an S3 endpoint with a fragment');
  t.equal(originError('storage: {type: s3, bucket: b, endpoint: "https://minio.example:9000/s3"}\n'), '(accepted)', 'a path is kept');
  t.equal(originError("tokenFile: ''\n"), 'origin.yaml:1: tokenFile: must NOT have fewer than 1 characters', 'an empty token file (else the token would silently come from elsewhere)');
  for (const zero of ['0', '0s', '"0ms"']) {
    t.match(originError(`limits:\n  idleTimeout: ${zero}\n`), /^origin\.yaml:2: limits\.idleTimeout: must be (a duration longer than 0|> 0)/, `idleTimeout ${zero} (0 would turn the idle cut off)`);
  }
  for (const ok of ['2m', '0.5', '"250ms"']) t.equal(originError(`limits:\n  idleTimeout: ${ok}\n`), '(accepted)', `idleTimeout ${ok}`);
  t.equal(originError('limits:\n  clientHeaderTimeout: 0s\n'), 'origin.yaml:2: limits.clientHeaderTimeout: must be a duration longer than 0 (e.g. 250ms, 30s, 5m)', 'clientHeaderTimeout 0 (no limit on a head at all)');
  t.equal(originError('limits:\n  clientHeaderTimeout: 25d\n'), 'origin.yaml:2: limits.clientHeaderTimeout: must be a duration of at most 24 days (e.g. 250ms, 30s, 5m)');
  t.same(parseConfig(OriginConfigSchema, '{}', 'origin.yaml').limits.clientHeaderTimeout, '15s', 'clientHeaderTimeout: 15s by default');
  t.equal(parseConfig(OriginConfigSchema, '{}', 'origin.yaml').limits.maxConnections, DEFAULT_MAX_CONNECTIONS, 'maxConnections: a cap by default (security by default)');
  t.equal(originError('limits:\n  maxConnections: 0\n'), 'origin.yaml:2: limits.maxConnections: must be >= 1', 'maxConnections 0 (refusing every connection)');
  t.equal(originError('limits:\n  maxConnections: 1.5\n'), 'origin.yaml:2: limits.maxConnections: must be integer');
  t.equal(originError('limits:\n  clientHeaderTimeout: 10s\n  maxConnections: 5000\n'), '(accepted)');
  t.equal(originError('retention: {keepBases: 3}\n'), 'origin.yaml:1: retention: missing required field "maxAge"', 'a retention without its age');
  t.match(originError('retention:\n  maxAge: 0s\n'), /^origin\.yaml:2: retention\.maxAge: must be a duration longer than 0/, 'maxAge 0 would delete everything');
  // a number of seconds is told what it breaks, not every branch of a union ("must be string or > 0")
  t.equal(originError('retention:\n  maxAge: 30 days\n'), 'origin.yaml:2: retention.maxAge: must be a duration such as 250ms, 30s, 5m', 'a malformed age is told it is malformed');
  t.equal(originError('retention:\n  maxAge: 0\n'), 'origin.yaml:2: retention.maxAge: must be > 0', 'maxAge: 0 as a number');
  t.equal(originError('retention:\n  maxAge: -86400\n'), 'origin.yaml:2: retention.maxAge: must be > 0', 'a negative maxAge');
  t.match(originError('retention:\n  maxAge: 30d\n  keepBases: -1\n'), /^origin\.yaml:3: retention\.keepBases: must be >= 0/);
  t.match(originError('retention:\n  maxAge: 30d\n  every: 1h\n'), /^origin\.yaml:3: retention\.every: unknown field "every"/);
  t.equal(originError('retention:\n  maxAge: 30d\n  interval: 0s\n'), '(accepted)', 'interval 0: only when asked');
  // a timer waits 2^31-1 ms at most (longer fires at once); an age, ten years (dates overflow past)
  for (const [field, value] of [['limits:\n  idleTimeout', '.inf'], ['limits:\n  idleTimeout', '25d'], ['shutdownTimeout', '.inf'], ['shutdownTimeout', '30d'], ['shutdownTimeout', '9999999999']] as const) {
    t.match(originError(`${field}: ${value}\n`), /^origin\.yaml:\d: (limits\.idleTimeout|shutdownTimeout): must be (a duration of at most 24 days|<= 2147483\.647)/, `${field.trim()} ${value}`);
  }
  for (const value of ['.inf', '999999999d', '11y', '4000000000d']) {
    t.match(originError(`retention:\n  maxAge: ${value}\n`), /^origin\.yaml:2: retention\.maxAge: must be /, `maxAge ${value}`);
  }
  for (const ok of ['24d', '2147483']) t.equal(originError(`shutdownTimeout: ${ok}\n`), '(accepted)', `shutdownTimeout ${ok}`);
  t.equal(originError('retention:\n  maxAge: 365d\n'), '(accepted)', 'a year of history');
});

t.test('cache: mirror names are checked', async (t) => {
  t.throws(() => parseCacheConfig('upstream: http://127.0.0.1:1\nmirrors:\n  ok: {url: "http://127.0.0.1:2"}\n  sl/ash: {url: "http://127.0.0.1:3"}\n', 'cache.yaml'),
    { message: 'cache.yaml:4: mirrors.sl/ash: name "sl/ash" must be letters, digits, ".", "_" and "-", starting with a letter or digit (e.g. eu-west)' });
  t.same(Object.keys(parseCacheConfig('upstream: http://127.0.0.1:1\nmirrors:\n  pypi.org_1-x: {url: "http://127.0.0.1:2"}\n', 'cache.yaml').mirrors ?? {}), ['pypi.org_1-x']);
});

t.test('cache: an upstream timeout of 0 (none at all) is refused', async (t) => {
  t.throws(() => parseCacheConfig('upstream: http://127.0.0.1:1\ntimeouts:\n  headers: 0s\n', 'cache.yaml'),
    { message: 'cache.yaml:3: timeouts.headers: must be a duration longer than 0 (e.g. 250ms, 30s, 5m)' });
  t.throws(() => parseCacheConfig('upstream: http://127.0.0.1:1\ntimeouts:\n  body: 0\n', 'cache.yaml'), { message: 'cache.yaml:3: timeouts.body: must be > 0' });
  t.equal(parseCacheConfig('upstream: http://127.0.0.1:1\ntimeouts:\n  connect: 250ms\n', 'cache.yaml').timeouts?.connect, '250ms');
  // workerTimeout 0 would have the primary kill its workers at once
  t.throws(() => parseCacheConfig('upstream: http://127.0.0.1:1\nworkerTimeout: 0s\n', 'cache.yaml'), { message: 'cache.yaml:2: workerTimeout: must be a duration longer than 0 (e.g. 250ms, 30s, 5m)' });
  // workerRestartDelay 0 would double to nothing: a worker that keeps dying replaced at once, every time
  t.throws(() => parseCacheConfig('upstream: http://127.0.0.1:1\nworkerRestartDelay: 0s\n', 'cache.yaml'), { message: 'cache.yaml:2: workerRestartDelay: must be a duration longer than 0 (e.g. 250ms, 30s, 5m)' });
});

t.test('the example caches listen on loopback', async (t) => {
  const files = readdirSync(join(REPO_ROOT, 'config')).filter((f) => f.startsWith('cache-region-'));
  t.ok(files.length >= 3);
  for (const f of files) t.match(parseCacheConfig(readFileSync(join(REPO_ROOT, 'config', f), 'utf8'), f).listen, /^127\.0\.0\.1:\d+$/, f);
});
