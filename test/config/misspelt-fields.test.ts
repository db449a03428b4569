// An unknown field that misspells a known one of its mapping ("maxSise", "maxsize",
// "timeout", "forcepathstyle") is refused naming the field it likely meant: the message used
// to say only 'unknown field "maxSise"', leaving the user to find the right spelling in the docs.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseCacheConfig } from '../../src/cache/config-file.js';
import { parseConfig } from '../../src/config/load.js';
import { EXIT } from '../../src/errors.js';
import { OriginConfigSchema } from '../../src/origin/config.js';
import { loadFleetConfig } from '../../src/run/fleet.js';
import { runCli } from '../helpers/cli.js';

const upstream = 'upstream: http://127.0.0.1:9\n';

t.test('the cache command names the field a misspelt one meant, exit 3', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'cache.yaml');
  writeFileSync(file, `${upstream}maxSise: 1GiB\n`);
  const run = await runCli(['cache', '--config', file, '--listen', '127.0.0.1:0', '--data', path.join(dir, 'data')]);
  t.equal(run.code, EXIT.config, run.stderr);
  t.equal(run.stderr, `fleetcache: error: ${file}:2: maxSise: unknown field "maxSise" (did you mean "maxSize"?)\n`);
});

t.test('each loader, at each level: the nearest field of the same mapping, case aside', async (t) => {
  const cache: Array<[string, string, string]> = [
    ['maxsize: 1GiB\n', 'maxsize', 'maxSize'],
    ['timeout:\n  connect: 5s\n', 'timeout', 'timeouts'],
    ['timeouts:\n  conect: 5s\n', 'timeouts.conect', 'connect'],
    ['mirrors:\n  m:\n    url: http://127.0.0.1:2\n    tooltol: true\n', 'mirrors.m.tooltol', 'tooltool'],
  ];
  for (const [text, field, meant] of cache) {
    const unknown = field.split('.').at(-1)!;
    t.throws(() => parseCacheConfig(`${upstream}${text}`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: new RegExp(`^c\\.yaml:\\d+: ${field.replace(/\./g, '\\.')}: unknown field "${unknown}" \\(did you mean "${meant}"\\?\\)$`), field }, `cache ${field}`);
  }
  t.throws(() => parseConfig(OriginConfigSchema, 'storage:\n  type: s3\n  bucket: b\n  forcepathstyle: true\n', 'o.yaml'),
    { message: 'o.yaml:4: storage.forcepathstyle: unknown field "forcepathstyle" (did you mean "forcePathStyle"?)' }, 'origin: the s3 storage branch');
  const dir = t.testdir();
  const spread = path.join(dir, 'spread.yaml');
  writeFileSync(spread, 'project: p\nfleetcache:\n  origin: http://o:1\n  knownhost: /k\n');
  t.throws(() => loadFleetConfig(spread, undefined), { message: `${spread}:4: fleetcache.knownhost: unknown field "knownhost" (did you mean "knownHosts"?)` }, "spread.yaml's fleetcache: key");
});

t.test('no guess for a field like none of its mapping, nor for a short one', async (t) => {
  for (const unknown of ['bogus', 'x', 'tokenFile']) {
    t.throws(() => parseCacheConfig(`${upstream}${unknown}: 1\n`, 'c.yaml'), { message: `c.yaml:2: ${unknown}: unknown field "${unknown}"` }, unknown);
  }
});

t.test('a known field written one level too high names where it belongs', async (t) => {
  // `connect` is a field of `timeouts:`, not of the top level: the message used to say only 'unknown field "connect"'
  t.throws(() => parseCacheConfig(`${upstream}connect: 5s\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: connect: unknown field "connect" (did you mean "timeouts.connect"?)' }, 'cache');
  t.throws(() => parseConfig(OriginConfigSchema, 'idleTimeout: 2m\n', 'o.yaml'), { message: 'o.yaml:1: idleTimeout: unknown field "idleTimeout" (did you mean "limits.idleTimeout"?)' }, 'origin');
  // a field of one of a one-of setting's shapes (storage: disk or s3)
  t.throws(() => parseConfig(OriginConfigSchema, 'storage:\n  type: s3\nbucket: b\n', 'o.yaml'), { message: 'o.yaml:3: bucket: unknown field "bucket" (did you mean "storage.bucket"?)' }, "origin: s3's bucket");
  t.throws(() => parseConfig(OriginConfigSchema, 'storage:\n  type: s3\n  bucket: b\nforcePathStyle: true\n', 'o.yaml'), { message: 'o.yaml:4: forcePathStyle: unknown field "forcePathStyle" (did you mean "storage.forcePathStyle"?)' }, "origin: s3's forcePathStyle");
  // exact names only one level down: a near one there is no hint ("conect" is no field of the top level)
  t.throws(() => parseCacheConfig(`${upstream}conect: 5s\n`, 'c.yaml'), { message: 'c.yaml:2: conect: unknown field "conect"' }, 'a misspelling one level down');
});
