// A cache's disk budget of zero bytes ("0", "0GiB", --max-size 0) is refused like a malformed
// one, with the file, line and field (or the flag): it used to reach the LRU index, which
// threw a TypeError, and the cache exited 70 ("internal error, a bug").
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { resolveCacheConfig } from '../../src/cache/config.js';
import { parseCacheConfig } from '../../src/cache/config-file.js';
import { EXIT } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';
import { startServerProcess } from '../helpers/processes.js';
import { blocksOf } from '../cache/harness.js';

const base = 'upstream: http://127.0.0.1:9\n';
const phrase = 'a size of at least 1 byte (e.g. 4096, 512MiB, 50GiB)';

t.test('maxSize: zero is refused with file, line and field', async (t) => {
  for (const zero of ['0GiB', '"0"', '0.0MiB']) {
    t.throws(() => parseCacheConfig(`${base}maxSize: ${zero}\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: `c.yaml:2: maxSize: must be ${phrase}`, line: 2 }, `maxSize: ${zero}`);
  }
  // half a byte is no number of bytes at all (config/units.ts: a fraction needs a unit)
  t.throws(() => parseCacheConfig(`${base}maxSize: "0.5"\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: maxSize: must be a size (e.g. 4096, 512MiB, 50GiB)', line: 2 }, 'maxSize: "0.5"');
  t.throws(() => parseCacheConfig(`${base}maxSize: 0\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: maxSize: must be >= 1', line: 2 });
  for (const ok of ['1', '0.5KiB', '50GiB']) t.ok(resolveCacheConfig(parseCacheConfig(`${base}maxSize: ${ok}\n`, 'c.yaml')).maxSize >= 1, `maxSize: ${ok}`);
  t.equal(resolveCacheConfig(parseCacheConfig(`${base}fillMemory: 0\n`, 'c.yaml')).fillMemory, 0, 'fillMemory may still be 0 (each fill keeps its two windows)');
});

t.test('the command: exit 3 for the file, 2 for the flag, before the data directory is made', async (t) => {
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  const file = path.join(dir, 'cache.yaml');
  writeFileSync(file, `${base}\nmaxSize: 0GiB\n`);
  const fromFile = await runCli(['cache', '--config', file, '--listen', '127.0.0.1:0', '--data', data]);
  t.equal(fromFile.code, EXIT.config, fromFile.stderr);
  t.equal(fromFile.stderr, `fleetcache: error: ${file}:3: maxSize: must be ${phrase}\n`);
  const fromFlag = await runCli(['cache', '--upstream', 'http://127.0.0.1:9', '--listen', '127.0.0.1:0', '--data', data, '--max-size', '0']);
  t.equal(fromFlag.code, EXIT.usage, fromFlag.stderr);
  t.equal(fromFlag.stderr, `fleetcache: error: --max-size: must be ${phrase}, not "0"\n`);
  t.notOk(existsSync(data), 'no data directory was made');
});

t.test('a size too large to count is refused with file, line and field, or the flag', async (t) => {
  // 1e400 is Infinity to YAML and to Number(): it used to reach the LRU index (TypeError, exit 70)
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  const huge = `${'9'.repeat(400)}TiB`;
  const cases: Array<[string, string]> = [
    ['1e400', 'must be <= 9007199254740991'],
    ['.inf', 'must be <= 9007199254740991'],
    [`"${huge}"`, 'must be a size (e.g. 4096, 512MiB, 50GiB)'],
  ];
  for (const [value, message] of cases) {
    const file = path.join(dir, 'cache.yaml');
    writeFileSync(file, `${base}maxSize: ${value}\n`);
    const run = await runCli(['cache', '--config', file, '--listen', '127.0.0.1:0', '--data', data]);
    t.equal(run.code, EXIT.config, `maxSize: ${value}: ${run.stderr}`);
    t.equal(run.stderr, `fleetcache: error: ${file}:2: maxSize: ${message}\n`);
  }
  const fromFlag = await runCli(['cache', '--upstream', 'http://127.0.0.1:9', '--listen', '127.0.0.1:0', '--data', data, '--max-size', huge]);
  t.equal(fromFlag.code, EXIT.usage, fromFlag.stderr);
  t.equal(fromFlag.stderr, `fleetcache: error: --max-size: must be a size (e.g. 4096, 512MiB, 50GiB), not "${huge}"\n`);
  t.notOk(existsSync(data), 'no data directory was made');
});

t.test('a size flag refused names the value given', async (t) => {
  const data = path.join(t.testdir(), 'data');
  for (const [flag, value] of [['--max-size', '50gigs'], ['--fill-memory', 'lots']]) {
    const run = await runCli(['cache', '--upstream', 'http://127.0.0.1:9', '--listen', '127.0.0.1:0', '--data', data, flag!, value!]);
    t.equal(run.code, EXIT.usage, run.stderr);
    t.equal(run.stderr, `fleetcache: error: ${flag}: must be a size (e.g. 4096, 512MiB, 50GiB), not "${value}"\n`);
  }
  // an upstream's credentials are not echoed
  const url = await runCli(['cache', '--upstream', 'ftp://alice:s3cret@127.0.0.1:9', '--listen', '127.0.0.1:0', '--data', data]);
  t.equal(url.code, EXIT.usage, url.stderr);
  t.match(url.stderr, /^fleetcache: error: --upstream: must be an http or https URL .*, not "ftp:\/\/\*\*\*@127\.0\.0\.1:9"\n$/);
  t.notMatch(url.stderr, /s3cret/);
});

t.test('a budget below two blocks of the data filesystem (a name\'s body and its sidecar) fails the start, naming the file\'s line or the flag, what it would hold and the least', async (t) => {
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  mkdirSync(data);
  const block = blocksOf(data, 1);
  const least = 2 * block;
  const file = path.join(dir, 'cache.yaml');
  const why = `give at least ${least} bytes (two blocks of ${block} bytes, the block of the filesystem holding ${data})`;
  const oneBlob = `would hold one blob of at most ${block} bytes, and no name or mirror entry (a block for its body, one for its headers file)`;
  const cases = [
    ['file', least - 1, ['--config', file], `${file}:3: maxSize: ${least - 1} bytes ${oneBlob}`],
    ['file, two workers (the primary checks it)', least - 1, ['--config', file, '--workers', '2'], `${file}:3: maxSize: ${least - 1} bytes ${oneBlob}`],
    ['flag', least - 1, ['--upstream', 'http://127.0.0.1:9', '--max-size', String(least - 1)], `--max-size: ${least - 1} bytes ${oneBlob}`],
    ['file, below one block', block - 1, ['--config', file], `${file}:3: maxSize: ${block - 1} bytes would hold nothing (an object takes a block at least)`],
    ['flag, one byte (singular)', 1, ['--upstream', 'http://127.0.0.1:9', '--max-size', '1'], '--max-size: 1 byte would hold nothing (an object takes a block at least)'],
  ] as const;
  for (const [how, maxSize, args, message] of cases) {
    writeFileSync(file, `${base}# the disk budget\nmaxSize: ${maxSize}\n`);
    const run = await runCli(['cache', ...args, '--listen', '127.0.0.1:0', '--data', data]);
    t.equal(run.code, EXIT.config, `${how}: ${run.stderr}`);
    t.equal(run.stderr, `fleetcache: error: ${message}; ${why}\n`, how);
  }
  writeFileSync(file, `${base}maxSize: ${least}\n`);
  const server = await startServerProcess(t, ['cache', '--config', file, '--listen', '127.0.0.1:0', '--data', data]);
  t.equal((await fetch(`${server.url}/-/stats`)).status, 200, `${least} bytes: started`);
});
