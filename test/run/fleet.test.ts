// The fleet configuration: the example file is valid, and bad values name file, line and field.
import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadFleetConfig, withScheduling } from '../../src/run/fleet.js';
import { staticOrder, unservedRegions } from '../../src/run/nearest.js';
import { REPO_ROOT } from '../helpers/processes.js';

t.test('config/fleet.yaml is valid', async (t) => {
  const dir = t.testdir({ 'spread.yaml': 'project: p\n' });
  const fleet = loadFleetConfig(join(dir, 'spread.yaml'), join(REPO_ROOT, 'config/fleet.yaml'));
  t.equal(Object.keys(fleet!.regions).length, 3);
  t.equal(fleet!.startupLimit, 4);
});

t.test('no fleetcache key: the embedded default', async (t) => {
  const dir = t.testdir({ 'spread.yaml': 'project: p\npath: /x\n' });
  t.equal(loadFleetConfig(join(dir, 'spread.yaml'), undefined), undefined);
});

t.test('the fleetcache: key of spread.yaml, errors with file and line', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'spread.yaml');
  await writeFile(file, 'project: p\npath: /x\nfleetcache:\n  origin: http://o:1\n  regions:\n    a:\n      caches: [ftp://nope]\n');
  t.throws(() => loadFleetConfig(file, undefined), { code: 'FC_ERR_CONFIG', message: /spread\.yaml:7: fleetcache\.regions\.a\.caches\[0\]: must be an http or https URL with no query or fragment \(e\.g\. http:\/\/origin\.example:8080\)$/ });
  await writeFile(file, 'project: p\nfleetcache:\n  origin: http://o:1\n  startupLimt: 3\n');
  t.throws(() => loadFleetConfig(file, undefined), { message: /spread\.yaml:4: fleetcache\.startupLimt: unknown field "startupLimt"/ });
  await writeFile(file, 'project: p\nfleetcache:\n  origin: http://o:1\n  dispatchDelay: a while\n');
  t.throws(() => loadFleetConfig(file, undefined), { code: 'FC_ERR_CONFIG', message: /spread\.yaml:4: fleetcache\.dispatchDelay: must be a duration such as 250ms, 30s, 5m$/ });
  await writeFile(file, 'project: p\nfleetcache:\n  origin: http://o:1\n  dispatchDelay: 0.5\n');
  t.equal(loadFleetConfig(file, undefined)!.dispatchDelay, 0.5, 'a number of seconds, as every other duration takes');
  for (const zero of ['0', '0s']) {
    await writeFile(file, `project: p\nfleetcache:\n  origin: http://o:1\n  cacheTimeout: ${zero}\n`);
    t.throws(() => loadFleetConfig(file, undefined), { code: 'FC_ERR_CONFIG', message: /spread\.yaml:4: fleetcache\.cacheTimeout: / }, `cacheTimeout: ${zero} is refused (no machine could pull)`);
  }
  await writeFile(file, 'project: p\nfleetcache:\n  regions: {a: {caches: [http://c:2]}}\n');
  t.throws(() => loadFleetConfig(file, undefined), { code: 'FC_ERR_CONFIG', message: /lists regions but no origin/ });
  await writeFile(file, 'project: p\nfleetcache:\n  origin: http://o:1\n  regions: {a: {caches: [http://c:2]}}\n');
  t.same(loadFleetConfig(file, undefined)!.regions, { a: { caches: ['http://c:2'] } });
});

t.test('an origin or cache URL with a query or fragment is refused, naming neither: every path was joined after it, and its token printed with each failed request', async (t) => {
  const file = join(t.testdir(), 'spread.yaml');
  const phrase = 'must be an http or https URL with no query or fragment (e.g. http://origin.example:8080)';
  const cases: Array<[string, string, string]> = [
    ['  origin: http://o:1/?token=s3cret\n', '3: fleetcache.origin', 'a query in the origin'],
    ['  origin: http://o:1\n  regions:\n    a:\n      caches: ["https://c:2/base?X-Amz-Signature=s3cret"]\n', '6: fleetcache.regions.a.caches[0]', 'a query in a cache'],
    ['  origin: http://o:1#s3cret\n', '3: fleetcache.origin', 'a fragment'],
  ];
  for (const [fleet, where, what] of cases) {
    await writeFile(file, `project: p\nfleetcache:\n${fleet}`);
    const err = t.throws(() => loadFleetConfig(file, undefined), { code: 'FC_ERR_CONFIG' }, what) as Error;
    t.equal(err.message, `${file}:${where}: ${phrase}`, `${what}: the field, not the secret`);
  }
  await writeFile(file, 'project: p\nfleetcache:\n  origin: https://o.example:1/base/\n  regions: {a: {caches: [http://c:2/]}}\n');
  t.match(loadFleetConfig(file, undefined), { origin: 'https://o.example:1/base/', regions: { a: { caches: ['http://c:2/'] } } }, 'a path is fine');
});

t.test('fleetcache: settings reached through a YAML merge key (<<: *name) are read, as spread reads its own keys, with their lines', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'spread.yaml');
  const defaults = 'x-defaults: &defaults\n  fleetcache:\n    origin: http://o:1\n    startupLimit: 3\n';
  await writeFile(file, `${defaults}project: p\n<<: *defaults\n`);
  t.equal(loadFleetConfig(file, undefined)?.startupLimit, 3, 'the key merged into the top level');
  await writeFile(file, 'x-fleet: &fleet\n  origin: http://o:1\n  startupLimit: 3\nproject: p\nfleetcache:\n  <<: *fleet\n  dispatchDelay: 1s\n');
  t.match(loadFleetConfig(file, undefined), { startupLimit: 3, dispatchDelay: '1s' }, 'settings merged into the key');
  await writeFile(file, `${defaults.replace('startupLimit: 3', 'startupLimit: many')}project: p\n<<: *defaults\n`);
  t.throws(() => loadFleetConfig(file, undefined), { code: 'FC_ERR_CONFIG', message: /spread\.yaml:4: fleetcache\.startupLimit: / }, 'a bad merged value named at its own line');
});

t.test("the fleetcache: key of spread.yaml's first YAML document: what follows is not read, as spread reads no further", async (t) => {
  const file = join(t.testdir(), 'spread.yaml');
  await writeFile(file, 'project: p\nfleetcache:\n  origin: http://o:1\n  startupLimit: 3\n---\nfleetcache: [\n');
  t.equal(loadFleetConfig(file, undefined)!.startupLimit, 3);
  await writeFile(file, 'project: p\n---\nfleetcache:\n  origin: http://o:1\n');
  t.equal(loadFleetConfig(file, undefined), undefined, 'a key in a later document is none');
});

t.test('without an origin, the scheduling settings still apply to the embedded default', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'spread.yaml');
  await writeFile(file, 'project: p\nfleetcache:\n  startupLimit: 1\n  dispatchDelay: 3s\n  loadThreshold: 2.5\n');
  const embedded = { origin: 'http://127.0.0.1:1', regions: { local: { caches: ['http://127.0.0.1:2'] } }, defaultRegion: 'local', startupLimit: 4, dispatchDelay: '250ms', cacheTimeout: '30s' };
  const fleet = withScheduling(embedded, loadFleetConfig(file, undefined));
  t.same(fleet, { ...embedded, startupLimit: 1, dispatchDelay: '3s', loadThreshold: 2.5 });
  t.same(withScheduling(embedded, undefined), embedded, 'no configuration: the embedded values');
  await writeFile(file, 'project: p\nfleetcache:\n  defaultRegion: eu\n');
  t.throws(() => loadFleetConfig(file, undefined), { code: 'FC_ERR_CONFIG', message: /sets defaultRegion but no origin/ });
  const fleetFile = join(dir, 'fleet.yaml');
  for (const empty of ['', '# to fill in\n']) {
    await writeFile(fleetFile, empty);
    t.throws(() => loadFleetConfig(file, fleetFile), { code: 'FC_ERR_CONFIG', message: `${fleetFile}: the fleet configuration is empty (it needs an origin and regions; without --fleet the run uses the embedded default)` }, `--fleet ${JSON.stringify(empty)}`);
  }
});

t.test('a region the jobs name without caches in the fleet is warned about once', async (t) => {
  const fleet = { origin: 'http://o:1', regions: { 'eu-west': { caches: ['http://c:2'] }, 'us-east': { caches: ['http://c:3'] } }, startupLimit: 4, dispatchDelay: '1s', cacheTimeout: '30s' };
  t.same(unservedRegions(fleet, ['eu-west', 'auto']), [], 'known regions and auto: nothing to say');
  t.same(unservedRegions(fleet, [undefined]), [], 'a job naming no region goes to the first region: nothing to say');
  const [warning, ...rest] = unservedRegions(fleet, ['eu-wset', 'us-east', 'eu-wset']);
  t.same(rest, [], 'once per region');
  t.match(warning, /^WARNING: region eu-wset has no cache in the fleet configuration \(regions: eu-west, us-east\)/);
  t.same(staticOrder(fleet, 'eu-wset'), { region: 'eu-wset', urls: ['http://c:2', 'http://c:3', 'http://o:1'], how: 'no cache for region eu-wset' }, "each machine's line names the region too");
  t.equal(staticOrder(fleet, 'us-east').how, 'region us-east');
});

t.test('defaultRegion: one of the regions or auto; another name is refused, naming file, line and field', async (t) => {
  const dir = t.testdir({ 'spread.yaml': 'project: p\n' });
  const fleetFile = join(dir, 'fleet.yaml');
  const regions = 'origin: http://o:1\nregions:\n  us-east:\n    caches: [http://c:2]\n  eu-west:\n    caches: [http://c:3]\n';
  for (const region of ['eu-west', 'auto']) {
    await writeFile(fleetFile, `${regions}defaultRegion: ${region}\n`);
    t.equal(loadFleetConfig(join(dir, 'spread.yaml'), fleetFile)!.defaultRegion, region, `defaultRegion: ${region}`);
  }
  await writeFile(fleetFile, `${regions}defaultRegion: us-eats\n`);
  t.throws(() => loadFleetConfig(join(dir, 'spread.yaml'), fleetFile), {
    code: 'FC_ERR_CONFIG',
    message: `${fleetFile}:7: defaultRegion: "us-eats" is not one of the regions (us-east, eu-west) (did you mean "us-east"?); name one of them, or "auto" for the fastest cache`,
  });
  const spreadFile = join(dir, 'spread.yaml');
  await writeFile(spreadFile, 'project: p\nfleetcache:\n  origin: http://o:1\n  defaultRegion: ap-south\n');
  t.throws(() => loadFleetConfig(spreadFile, undefined), { code: 'FC_ERR_CONFIG', message: `${spreadFile}:4: fleetcache.defaultRegion: "ap-south" is not one of the regions (none); name one of them, or "auto" for the fastest cache` }, 'no regions at all');
});

t.test('tokenFile: resolved against the file that sets it, as knownHosts is, not against the directory the run is started in', async (t) => {
  const dir = t.testdir({ conf: { 'fleet.yaml': 'origin: http://o:1\ntokenFile: origin.token\n' }, project: { 'spread.yaml': 'project: p\nfleetcache:\n  origin: http://o:1\n  tokenFile: ../conf/origin.token\n' } });
  t.equal(loadFleetConfig(join(dir, 'project', 'spread.yaml'), join(dir, 'conf', 'fleet.yaml'))!.tokenFile, join(dir, 'conf', 'origin.token'), 'beside the --fleet file');
  t.equal(loadFleetConfig(join(dir, 'project', 'spread.yaml'), undefined)!.tokenFile, join(dir, 'conf', 'origin.token'), "from spread.yaml's directory");
  await writeFile(join(dir, 'conf', 'fleet.yaml'), 'origin: http://o:1\ntokenFile: /etc/fleetcache/origin.token\n');
  t.equal(loadFleetConfig(join(dir, 'project', 'spread.yaml'), join(dir, 'conf', 'fleet.yaml'))!.tokenFile, '/etc/fleetcache/origin.token', 'an absolute path as it is');
});

t.test('knownHosts: resolved against the file that sets it, read and checked at load, kept for the embedded default', async (t) => {
  const dir = t.testdir();
  await mkdir(join(dir, 'conf'));
  const key = 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
  await writeFile(join(dir, 'conf', 'known_hosts'), `host.example ssh-ed25519 ${key}\n`);
  const fleetFile = join(dir, 'conf', 'fleet.yaml');
  await writeFile(fleetFile, 'origin: http://o:1\nknownHosts: known_hosts\n');
  t.equal(loadFleetConfig(join(dir, 'spread.yaml'), fleetFile)!.knownHosts, join(dir, 'conf', 'known_hosts'), 'beside the --fleet file');
  const spread = join(dir, 'spread.yaml');
  await writeFile(spread, 'project: p\nfleetcache:\n  knownHosts: conf/known_hosts\n');
  const embedded = { origin: 'http://127.0.0.1:1', regions: {}, startupLimit: 4, dispatchDelay: '250ms', cacheTimeout: '30s' };
  t.equal(withScheduling(embedded, loadFleetConfig(spread, undefined)).knownHosts, join(dir, 'conf', 'known_hosts'), 'beside spread.yaml, and it applies to the embedded default too');
  await writeFile(spread, 'project: p\nfleetcache:\n  origin: http://o:1\n  knownHosts: missing\n');
  t.throws(() => loadFleetConfig(spread, undefined), { code: 'FC_ERR_CONFIG', line: 4, field: 'fleetcache.knownHosts', message: `${spread}:4: fleetcache.knownHosts: cannot read ${join(dir, 'missing')}: ENOENT: no such file or directory, open '${join(dir, 'missing')}'` });
  await writeFile(join(dir, 'conf', 'known_hosts'), `host.example ssh-ed25519 ${key}\nbroken line\n`);
  await writeFile(spread, 'project: p\nfleetcache:\n\n  knownHosts: conf/known_hosts\n');
  t.throws(() => loadFleetConfig(spread, undefined), { code: 'FC_ERR_CONFIG', line: 4, field: 'fleetcache.knownHosts', message: `${spread}:4: fleetcache.knownHosts: ${join(dir, 'conf', 'known_hosts')}:2: expected "host-patterns key-type base64-key" (an OpenSSH known_hosts line)` }, 'the line of the setting, and that of the file');
  await writeFile(fleetFile, 'origin: http://o:1\n# the file of the hosts\nknownHosts: known_hosts\n');
  t.throws(() => loadFleetConfig(spread, fleetFile), { code: 'FC_ERR_CONFIG', line: 3, field: 'knownHosts', message: `${fleetFile}:3: knownHosts: ${join(dir, 'conf', 'known_hosts')}:2: expected "host-patterns key-type base64-key" (an OpenSSH known_hosts line)` }, 'in a --fleet file too');
});
