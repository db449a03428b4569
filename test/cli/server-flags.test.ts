// The server commands' flags meet the rules of the configuration fields they override:
// a bad value is a usage error (exit 2) naming the flag, before anything starts or is made.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { EXIT } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'fc-flags-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const cache = ['cache', '--upstream', 'http://127.0.0.1:9', '--data', path.join(dir, 'data')];

const cases: Array<[string[], RegExp]> = [
  [[...cache, '--max-size', 'lots'], /^fleetcache: error: --max-size: must be a size \(e\.g\. 4096, 512MiB, 50GiB\), not "lots"\n/],
  [[...cache, '--fill-memory', '1 bucket'], /^fleetcache: error: --fill-memory: must be a size/],
  // a unit left out (1.5 TiB meant) is no byte and a half, nor 1 byte
  [[...cache, '--max-size', '1.5'], /^fleetcache: error: --max-size: must be a size/],
  [['cache', '--upstream', 'origin:8080', '--data', path.join(dir, 'data')], /^fleetcache: error: --upstream: must be an http or https URL/],
  [[...cache, '--region', 'a b'], /^fleetcache: error: --region: must be letters, digits, "\.", "_" and "-", starting with a letter or digit/],
  [[...cache, '--listen', '127.0.0.1:99999'], /^fleetcache: error: --listen: must be HOST:PORT/],
  [[...cache, '--listen', 'localhost'], /^fleetcache: error: --listen: must be HOST:PORT/],
  [['origin', '--data', path.join(dir, 'origin'), '--listen', 'nowhere'], /^fleetcache: error: --listen: must be HOST:PORT/],
];
for (const [args, message] of cases) {
  t.test(args.slice(-2).join(' '), async (t) => {
    const { code, stderr } = await runCli(args);
    t.equal(code, EXIT.usage);
    t.match(stderr, message);
    t.notOk(existsSync(path.join(dir, 'data')) || existsSync(path.join(dir, 'origin')), 'no data directory was made');
  });
}

t.test('FLEETCACHE_LOG_LEVEL overrides a server\'s configured level; an unknown one is a configuration error', async (t) => {
  const { serverLogLevel } = await import('../../src/http/server-logging.js');
  const before = process.env.FLEETCACHE_LOG_LEVEL;
  t.teardown(() => {
    if (before === undefined) delete process.env.FLEETCACHE_LOG_LEVEL;
    else process.env.FLEETCACHE_LOG_LEVEL = before;
  });
  delete process.env.FLEETCACHE_LOG_LEVEL;
  t.same([serverLogLevel(undefined), serverLogLevel('debug')], ['info', 'debug'], 'the file, else info');
  process.env.FLEETCACHE_LOG_LEVEL = 'warn';
  t.equal(serverLogLevel('debug'), 'warn', 'the environment wins');
  process.env.FLEETCACHE_LOG_LEVEL = 'loud';
  t.throws(() => serverLogLevel('info'), { code: 'FC_ERR_CONFIG', message: /FLEETCACHE_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, not "loud"/ });
  // a served origin honours it (it logged a line at info for each 404 whatever it said)
  const { startServerProcess } = await import('../helpers/processes.js');
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', t.testdir()], { FLEETCACHE_TOKEN: 'log-level-token-0123456789', FLEETCACHE_LOG_LEVEL: 'warn' });
  const { request } = await import('undici');
  for (let i = 0; i < 3; i++) await (await request(`${origin.url}/artifacts/r/j/missing-${i}`)).body.dump();
  await origin.stop();
  t.notMatch(origin.stderr(), /"level":30/, 'no info line');
});
