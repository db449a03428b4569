// A number a configuration cannot mean, YAML's `.inf` or `1e400` (Infinity), is refused with
// the file, line and field: ajv takes Infinity for an integer, so a count without a maximum
// passed the schema. `upstreamConnections: .inf` reached undici's Pool, which threw, and the
// cache exited 70 ("internal error, a bug") with a stack trace naming no file; the origin's
// `retention.keepBases: .inf` was refused later, without its file or line.
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseCacheConfig } from '../../src/cache/config-file.js';
import { EXIT } from '../../src/errors.js';
import { loadFleetConfig } from '../../src/run/fleet.js';
import { runCli } from '../helpers/cli.js';

const upstream = 'upstream: http://127.0.0.1:9\n';

t.test('cache: upstreamConnections: .inf is refused by the command with file, line and field, exit 3', async (t) => {
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  const file = path.join(dir, 'cache.yaml');
  writeFileSync(file, `${upstream}\nupstreamConnections: .inf\n`);
  const run = await runCli(['cache', '--config', file, '--listen', '127.0.0.1:0', '--data', data]);
  t.equal(run.code, EXIT.config, run.stderr);
  t.equal(run.stderr, `fleetcache: error: ${file}:3: upstreamConnections: must be a finite number\n`);
  t.notOk(existsSync(data), 'no data directory was made');
});

t.test('origin: retention.keepBases: 1e400 is refused by the command with file, line and field, exit 3', async (t) => {
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  const file = path.join(dir, 'origin.yaml');
  writeFileSync(file, `data: ${data}\nretention:\n  maxAge: 30d\n  keepBases: 1e400\n`);
  const run = await runCli(['origin', '--config', file, '--listen', '127.0.0.1:0']);
  t.equal(run.code, EXIT.config, run.stderr);
  t.equal(run.stderr, `fleetcache: error: ${file}:4: retention.keepBases: must be a finite number\n`);
});

t.test('every count without a maximum, in each loader', async (t) => {
  for (const [field, value] of [['maxConnections', '.inf'], ['upstreamConnections', '.Inf'], ['maxConnections', '1e400']]) {
    t.throws(() => parseCacheConfig(`${upstream}${field}: ${value}\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: `c.yaml:2: ${field}: must be a finite number`, line: 2, field }, `cache ${field}: ${value}`);
  }
  t.ok(parseCacheConfig(`${upstream}maxConnections: 20000\n`, 'c.yaml'), 'a finite count is taken');
  const dir = t.testdir();
  const fleet = path.join(dir, 'fleet.yaml');
  const spread = path.join(dir, 'spread.yaml');
  writeFileSync(fleet, 'origin: http://o:1\nstartupLimit: .inf\n');
  t.throws(() => loadFleetConfig(spread, fleet), { code: 'FC_ERR_CONFIG', message: `${fleet}:2: startupLimit: must be a finite number`, line: 2 }, '--fleet startupLimit');
  writeFileSync(spread, 'project: p\nfleetcache:\n  origin: http://o:1\n  loadThreshold: .inf\n');
  t.throws(() => loadFleetConfig(spread, undefined), { code: 'FC_ERR_CONFIG', message: `${spread}:4: fleetcache.loadThreshold: must be a finite number`, line: 4 }, 'spread.yaml loadThreshold');
});
