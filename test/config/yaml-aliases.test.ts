// YAML anchors and aliases (`&c [...]`, then `*c`) in a configuration are the values they
// name, as in every YAML reader: the value used to be taken without its document, which left
// each alias as {source: name}, refused as "must be string" (exit 3) in a valid file. Merge
// keys (`<<: *c`) too, which spread applies in the rest of spread.yaml.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { Type } from '@sinclair/typebox';
import { parseConfig } from '../../src/config/load.js';
import { EXIT } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';
import { cliArgs, startServerProcess } from '../helpers/processes.js';

t.test('a cache whose file names one URL twice, by an alias, starts with it', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'cache.yaml');
  writeFileSync(file, 'upstream: &up http://127.0.0.1:9\nregion: r1\nmirrors:\n  again:\n    url: *up\n');
  const cache = await startServerProcess(t, ['cache', '--config', file, '--listen', '127.0.0.1:0', '--data', join(dir, 'data')], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const health = (await (await request(`${cache.url}/-/healthz`)).body.json()) as { region?: string };
  t.equal(health.region, 'r1');
  await cache.stop();
});

/**
 * `fleetcache run` in a one-task project whose spread.yaml has `top` (after project and path)
 * and `fleetcache` (after the suites): read whole, the run goes on to its origin, which
 * nothing serves (exit 6, not 3).
 */
function runAgainstNoOrigin(t: Test, top: string, fleetcache: string): void {
  const dir = t.testdir({ tests: { hello: { 'task.yaml': 'summary: hello\nexecute: echo ok\n' } } });
  writeFileSync(
    join(dir, 'spread.yaml'),
    `project: yaml\npath: /home/yaml\n${top}backends:\n  local:\n    type: local\n    systems: [alpha-1]\nsuites:\n  tests/:\n    summary: tasks\nfleetcache:\n${fleetcache}`,
  );
  const res = spawnSync(process.execPath, cliArgs(['run']), { cwd: dir, encoding: 'utf8', timeout: 60_000, env: { ...process.env, FLEETCACHE_TOKEN: 'aliases-token-0123456789' } });
  t.equal(res.status, EXIT.unavailable, res.stderr);
  t.match(res.stderr, /^fleetcache: error: cannot push the project to the origin: GET http:\/\/127\.0\.0\.1:9\//);
}

t.test("run: the fleetcache: key of spread.yaml with aliases is read, aliases to the file's other keys too", async (t) => {
  runAgainstNoOrigin(t, 'environment:\n  FLEET_ORIGIN: &o http://127.0.0.1:9\n', '  origin: *o\n  regions:\n    a: {caches: &c [*o]}\n    b: {caches: *c}\n');
});

t.test("run: a merge key (<<: *name) in spread.yaml's fleetcache: key is applied, as spread applies it to the rest of the file", async (t) => {
  runAgainstNoOrigin(t, '', '  origin: http://127.0.0.1:9\n  regions:\n    a: &a {caches: [http://127.0.0.1:9]}\n    b:\n      <<: *a\n');
});

t.test('an alias bomb is refused, not expanded, naming the line and field of the first alias that alone makes one', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'cache.yaml');
  const levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
  for (let i = 1; i < 9; i++) levels.push(`${'abcdefghi'[i]}: &${'abcdefghi'[i]} [${Array(10).fill(`*${'abcdefghi'[i - 1]}`).join(',')}]`);
  writeFileSync(file, `upstream: http://127.0.0.1:9\nmirrors:\n  m:\n    url: http://127.0.0.1:9\n    bomb:\n${levels.map((l) => `      ${l}`).join('\n')}\n`);
  const { code, stderr } = await runCli(['cache', '--config', file, '--listen', '127.0.0.1:0', '--data', join(dir, 'data')]);
  t.equal(code, EXIT.config, stderr);
  // *b alone stays within the library's alias count (100); *c, each standing for 100 values, is the first above it
  const line = readFileSync(file, 'utf8').split('\n').findIndex((l) => l.trimStart().startsWith('d: ')) + 1;
  t.match(stderr, `fleetcache: error: ${file}:${line}: mirrors.m.bomb.d[0]: alias *c expands to too many values: Excessive alias count`);
});

t.test('an alias naming no anchor set before it is refused naming the file, its line and its field', async (t) => {
  const dir = t.testdir();
  const cases = [
    // no such anchor at all
    { text: 'upstream: http://127.0.0.1:9\nmirrors:\n  m:\n    url: *nowhere\n', line: 4, field: 'mirrors.m.url', alias: 'nowhere' },
    // the anchor comes after the alias
    { text: 'upstream: http://127.0.0.1:9\nmirrors:\n  a:\n    url: *later\n  b:\n    url: &later http://127.0.0.1:9\n', line: 4, field: 'mirrors.a.url', alias: 'later' },
  ];
  for (const [i, c] of cases.entries()) {
    const file = join(dir, `cache-${i}.yaml`);
    writeFileSync(file, c.text);
    const { code, stderr } = await runCli(['cache', '--config', file, '--listen', '127.0.0.1:0', '--data', join(dir, 'data')]);
    t.equal(code, EXIT.config, stderr);
    t.equal(stderr, `fleetcache: error: ${file}:${c.line}: ${c.field}: alias *${c.alias} names no anchor (&${c.alias}) set before it\n`);
  }
});

t.test('a bad value reached through an alias or a merge key is refused at its own line, not at the line of the key using it', async (t) => {
  const Port = Type.Object({ host: Type.String(), port: Type.Integer() });
  const Schema = Type.Object({ defaults: Type.Optional(Type.Unknown()), servers: Type.Record(Type.String(), Port) });
  const cases = [
    // merged: port comes from the anchored map, line 3
    { text: 'defaults: &d\n  host: h\n  port: eighty\nservers:\n  a:\n    <<: *d\n', line: 3, field: 'servers.a.port' },
    // merged from a list of maps: the first that has the key gives it, line 4
    { text: 'defaults:\n  - &h {host: h}\n  - &p\n    port: eighty\nservers:\n  a:\n    <<: [*h, *p]\n', line: 4, field: 'servers.a.port' },
    // aliased whole: line 3 again
    { text: 'defaults: &d\n  host: h\n  port: eighty\nservers:\n  a: *d\n', line: 3, field: 'servers.a.port' },
    // a key of its own beside the merge wins, and is the line given
    { text: 'defaults: &d\n  host: h\n  port: 80\nservers:\n  a:\n    <<: *d\n    port: eighty\n', line: 7, field: 'servers.a.port' },
  ];
  for (const c of cases) {
    t.throws(() => parseConfig(Schema, c.text, 'c.yaml'), { code: 'FC_ERR_CONFIG', line: c.line, field: c.field, message: `c.yaml:${c.line}: ${c.field}: must be integer` }, c.text);
  }
});
