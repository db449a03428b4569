// Local filesystem mistakes on report, assets add, pull, push and the servers' and demo's data directories: a documented exit code and a
// one-line message naming the path, as pack/delta/apply give (src/path-checks.ts), not
// exit 70 with a stack trace. A data directory that cannot be made or written is
// configuration (exit 3), whichever way it fails.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nobody } from '../helpers/nobody.js';
import { cliArgs } from '../helpers/processes.js';
import { expectCliError } from '../project-upload/cli-helpers.js';
import { runCli } from '../helpers/cli.js';
import { unpackTar } from '../../src/pack/unpack.js';

const ledger = {
  run: 'r1',
  project: 'p',
  machines: 1,
  links: [{ link: 'controller → origin (project)', actualBytes: 10, naiveBytes: 100 }],
  caches: [],
  originEgress: { actual: 10, naive: 100 },
};

t.test('report --html, assets add -m, pull into a file, a data directory or base cache that is a file', async (t) => {
  const dir = t.testdir({
    data: { reports: { 'r1.json': JSON.stringify(ledger) } },
    'f.bin': 'payload\n',
    'afile': 'not a directory\n',
  });
  const p = (name: string) => join(dir, name);
  const cases: [string, string[], number, RegExp][] = [
    ['report --html into a missing folder', ['report', '--data', p('data'), '--json', '--html', p('missing/x.html')], 4, /output folder .*missing does not exist/],
    ['report --html onto a directory', ['report', '--data', p('data'), '--json', '--html', p('data')], 2, /output .*data is a directory/],
    ['assets add -m into a missing folder', ['assets', 'add', p('f.bin'), '-m', p('missing/m.tt')], 4, /output folder .*missing does not exist/],
    ['pull into an existing file', ['pull', p('afile'), '--project', 'x', '--run', 'r', '--from', 'http://127.0.0.1:9'], 2, /target directory .*afile is not a directory/],
    ['assets add of a missing file', ['assets', 'add', p('missing.bin'), '-m', p('m.tt')], 4, /missing\.bin: cannot read: it does not exist/],
    ['origin --data onto a file', ['origin', '--listen', '127.0.0.1:0', '--data', p('afile')], 3, /data directory .*afile is a file, not a directory/],
    ['origin --data under a file', ['origin', '--listen', '127.0.0.1:0', '--data', p('afile/sub')], 3, /data directory .*afile\/sub: a folder on its path is a file/],
    ['cache --data onto a file', ['cache', '--listen', '127.0.0.1:0', '--upstream', 'http://127.0.0.1:9', '--data', p('afile')], 3, /data directory .*afile is a file, not a directory/],
    // node's recursive mkdir loops for ever there (mkdir answers ENOENT for /proc, which exists)
    ['cache --data under /proc', ['cache', '--listen', '127.0.0.1:0', '--upstream', 'http://127.0.0.1:9', '--data', '/proc/fleetcache-no/data'], 3, /data directory \/proc\/fleetcache-no\/data cannot be created: ENOENT/],
    ['push --base-cache onto a file', ['push', p('data'), '--project', 'x', '--origin', 'http://127.0.0.1:9', '--base-cache', p('afile')], 2, /base cache .*afile is a file, not a directory/],
  ];
  for (const [name, args, code, message] of cases) await expectCliError(t, name, args, code, message);
  t.same(readdirSync(dir).sort(), ['afile', 'data', 'f.bin'], 'nothing written');
  t.equal(readFileSync(p('afile'), 'utf8'), 'not a directory\n', 'the file is untouched');
});

t.test('demo --data that cannot be a directory: exit 3 naming it, as run and the servers, and nothing copied', async (t) => {
  const dir = t.testdir({ afile: 'not a directory\n' });
  const cases: [string, string, RegExp][] = [
    ['onto a file', join(dir, 'afile'), /^fleetcache: error: data directory .*afile is a file, not a directory\n$/],
    ['under a file', join(dir, 'afile', 'sub'), /^fleetcache: error: data directory .*afile\/sub: a folder on its path is a file\n$/],
    // node's recursive cp never returned there (refused before any copy, as the cache's --data above)
    ['under /proc', '/proc/fleetcache-no/demo', /^fleetcache: error: data directory \/proc\/fleetcache-no\/demo cannot be created: ENOENT/],
  ];
  // in this process (runCli): the refusal is main()'s logic, and three demo processes cost a second of CPU
  for (const [name, data, message] of cases) {
    const run = await runCli(['demo', '--data', data]);
    t.equal(run.code, 3, `demo --data ${name}: exit 3`);
    t.match(run.stderr, message, `demo --data ${name}: one line naming it`);
    t.equal(run.stdout, '', `demo --data ${name}: nothing started`);
  }
  t.same(readdirSync(dir), ['afile'], 'nothing written');
  t.equal(readFileSync(join(dir, 'afile'), 'utf8'), 'not a directory\n', 'the file is untouched');
});

const user = nobody();
t.test('a data directory its user cannot make or cannot write: exit 3 (configuration) alike, naming it, for the origin and the cache', { skip: typeof user === 'string' ? user : false }, async (t) => {
  if (typeof user === 'string') return;
  // in the temp directory, not the test's own (which another user may not reach); root's, 0755
  const root = mkdtempSync(join(tmpdir(), 'fleetcache-data-dir-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  chmodSync(root, 0o755);
  mkdirSync(join(root, 'existing'), { mode: 0o755 });
  const servers = [['origin'], ['cache', '--upstream', 'http://127.0.0.1:9']];
  for (const [dir, why] of [['new', 'cannot be created'], ['existing', 'cannot be written']] as const) {
    for (const server of servers) {
      const data = join(root, dir);
      // without tap's hooks (NODE_OPTIONS), which write where this user may not
      const run = spawnSync(process.execPath, cliArgs([...server, '--listen', '127.0.0.1:0', '--data', data]), {
        uid: user.uid, gid: user.gid, env: { ...process.env, NODE_OPTIONS: '', FLEETCACHE_LOG_LEVEL: 'warn' }, encoding: 'utf8', timeout: 30_000,
      });
      t.equal(run.status, 3, `${server[0]}, a data directory that ${why}: exit 3`);
      t.match(run.stderr, `fleetcache: error: data directory ${data}`, `${server[0]}, ${why}: naming it`);
      t.notMatch(run.stderr, /\n\s+at /, `${server[0]}, ${why}: no stack trace`);
    }
  }
  t.same(readdirSync(root), ['existing'], 'nothing made');
  t.same(readdirSync(join(root, 'existing')), [], 'nothing written');
});

t.test('a token file named on the command line that is missing: configuration (exit 3) for every command alike, naming it (docs/errors.md)', async (t) => {
  const dir = t.testdir({ project: { f: 'x\n' } });
  const missing = join(dir, 'no-token');
  const commands: string[][] = [
    ['push', join(dir, 'project'), '--project', 'x', '--origin', 'http://127.0.0.1:9', '--base-cache', join(dir, 'bases'), '--token-file', missing],
    ['pull', join(dir, 'out'), '--project', 'x', '--run', 'r', '--from', 'http://127.0.0.1:9', '--token-file', missing],
    ['artifacts', 'get', 'r/j', '--from', 'http://127.0.0.1:9', '--token-file', missing],
    ['assets', 'upload', '-m', join(dir, 'm.tt'), '--url', 'http://127.0.0.1:9', '--token-file', missing],
    ['origin', '--listen', '127.0.0.1:0', '--data', join(dir, 'origin'), '--token-file', missing],
  ];
  for (const args of commands) {
    const got = await runCli(args);
    t.equal(got.code, 3, `${args[0]} ${args[1]}: exit 3`);
    t.match(got.stderr, `fleetcache: error: ${missing}: cannot read token file`, `${args[0]}: names the file`);
  }
});

t.test('unpackTar into an existing file or under one: a FleetError, not EEXIST', async (t) => {
  const dir = t.testdir({ afile: 'x' });
  await t.rejects(unpackTar(Readable.from([]), join(dir, 'afile')), { code: 'FC_ERR_USAGE', message: /target directory .*afile is not a directory/ });
  await t.rejects(unpackTar(Readable.from([]), join(dir, 'afile', 'sub')), { code: 'FC_ERR_USAGE', message: /target directory .*afile\/sub: a folder on its path is a file/ });
});
