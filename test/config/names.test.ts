// Region and mirror names (config/names.ts): letters, digits, ".", "_" and "-", starting
// with a letter or a digit, in the cache's configuration (region, mirrors) and the fleet's
// (regions) alike: "." and ".." are no names (a mirror's name is a path segment, a region's
// part of a data directory), and a refused name is reported with file, line and field, and
// the rule in words, not as a regular expression.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { cacheConfigSchema } from '../../src/cache/config.js';
import { parseCacheConfig } from '../../src/cache/config-file.js';
import { checkFlags } from '../../src/config/validate.js';
import { loadFleetConfig } from '../../src/run/fleet.js';

const RULE = 'must be letters, digits, ".", "_" and "-", starting with a letter or digit (e.g. eu-west)';
const REFUSED = ['.', '..', '.hidden', '-x', '_x', 'sl/ash', ''];
const ACCEPTED = ['a', 'eu-west-1', 'pypi.org_1-x', '0', 'A.b_c-d'];

t.test('cache: region and mirror names', async (t) => {
  for (const name of REFUSED) {
    const quoted = JSON.stringify(name);
    t.throws(() => parseCacheConfig(`upstream: http://127.0.0.1:1\nmirrors:\n  ok: {url: "http://127.0.0.1:2"}\n  ${quoted}: {url: "http://127.0.0.1:3"}\n`, 'cache.yaml'),
      { code: 'FC_ERR_CONFIG', message: `cache.yaml:4: mirrors.${name}: name ${quoted} ${RULE}`, line: 4 }, `mirror ${quoted}`);
    if (name === '') continue; // the region's minLength says it first
    t.throws(() => parseCacheConfig(`upstream: http://127.0.0.1:1\n\nregion: ${quoted}\n`, 'cache.yaml'),
      { code: 'FC_ERR_CONFIG', message: `cache.yaml:3: region: ${RULE}`, line: 3 }, `region ${quoted}`);
    t.throws(() => checkFlags(cacheConfigSchema, { region: ['--region', name] }), { code: 'FC_ERR_USAGE', message: `--region: ${RULE}, not ${quoted}` }, `--region ${quoted}`);
  }
  for (const name of ACCEPTED) {
    const parsed = parseCacheConfig(`upstream: http://127.0.0.1:1\nregion: "${name}"\nmirrors:\n  "${name}": {url: "http://127.0.0.1:2"}\n`, 'cache.yaml');
    t.same([parsed.region, Object.keys(parsed.mirrors ?? {})], [name, [name]], `${name} accepted`);
  }
});

t.test('fleet: region names, in a --fleet file and in spread.yaml', async (t) => {
  const dir = t.testdir();
  const fleet = join(dir, 'fleet.yaml');
  const spread = join(dir, 'spread.yaml');
  for (const name of REFUSED) {
    const quoted = JSON.stringify(name);
    writeFileSync(fleet, `origin: http://o:1\nregions:\n  ok: {caches: [http://c:1]}\n  ${quoted}: {caches: [http://c:2]}\n`);
    t.throws(() => loadFleetConfig(spread, fleet), { code: 'FC_ERR_CONFIG', message: `${fleet}:4: regions.${name}: name ${quoted} ${RULE}`, line: 4 }, `--fleet: ${quoted}`);
    writeFileSync(spread, `project: p\nfleetcache:\n  origin: http://o:1\n  regions:\n    ${quoted}: {caches: [http://c:2]}\n`);
    t.throws(() => loadFleetConfig(spread, undefined), { code: 'FC_ERR_CONFIG', message: `${spread}:5: fleetcache.regions.${name}: name ${quoted} ${RULE}`, line: 5 }, `spread.yaml: ${quoted}`);
  }
  for (const name of ACCEPTED) {
    writeFileSync(fleet, `origin: http://o:1\nregions:\n  "${name}": {caches: [http://c:1]}\n`);
    t.same(Object.keys(loadFleetConfig(spread, fleet)!.regions), [name], `${name} accepted`);
  }
});

t.test("a refused name in a block-style map is reported on its key's line, not its value's", async (t) => {
  const yaml = 'upstream: http://127.0.0.1:1\nmirrors:\n  ok:\n    url: http://127.0.0.1:2\n  "..":\n    url: http://127.0.0.1:3\n';
  t.throws(() => parseCacheConfig(yaml, 'cache.yaml'), { code: 'FC_ERR_CONFIG', message: /^cache\.yaml:5: mirrors\.\.\.: name "\.\."/, line: 5 });
  // the same for a field a block map lacks: the line of the map's own key
  t.throws(() => parseCacheConfig('upstream: http://127.0.0.1:1\nmirrors:\n  m:\n    timeouts:\n      connect: 5s\n', 'cache.yaml'), { code: 'FC_ERR_CONFIG', message: /^cache\.yaml:3: mirrors\.m: missing required field "url"/, line: 3 });
});

t.test('a misspelt required field is reported where it stands, as the misspelling it likely is', async (t) => {
  t.throws(() => parseCacheConfig('region: a\nlisten: 127.0.0.1:0\nupstrem: http://127.0.0.1:1\n', 'cache.yaml'), {
    code: 'FC_ERR_CONFIG',
    message: 'cache.yaml:3: upstrem: unknown field "upstrem" (a misspelling of the required field "upstream"?)',
    line: 3,
  });
  t.throws(() => parseCacheConfig('upstream: http://127.0.0.1:1\nmirrors:\n  m:\n    ur1: http://127.0.0.1:2\n', 'cache.yaml'), { message: /^cache\.yaml:4: mirrors\.m\.ur1: unknown field "ur1" \(a misspelling of the required field "url"\?\)$/ }, 'in a nested mapping too');
  t.throws(() => parseCacheConfig('region: a\n', 'cache.yaml'), { message: /^cache\.yaml:1: \(top level\): missing required field "upstream"$/ }, 'a field simply missing is said so');
});
