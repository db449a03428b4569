// A malformed URL on a client command's flag is a usage error (exit 2) naming the flag,
// not exit 6 ("network unavailable", which retry loops take for transient) from fetch's
// "Invalid URL", and nothing is contacted or written. `assets fetch` exits 1 instead, as
// for any failure, as tooltool does (docs/errors.md).
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expectCliError } from '../project-upload/cli-helpers.js';
import { runCli } from '../helpers/cli.js';
import { startOrigin } from '../helpers/origin.js';

t.test('bad URLs on push, pull, artifacts and assets: exit 2 (assets fetch: 1) naming the flag', async (t) => {
  const dir = t.testdir({ proj: { 'a.txt': 'a\n' }, 'm.tt': '[]\n', tok: 'secret\n' });
  const p = (name: string) => join(dir, name);
  const cases: [string, string[], RegExp, number?][] = [
    ['push --origin without scheme', ['push', p('proj'), '--project', 'x', '--origin', 'localhost:8080', '--base-cache', p('bc')], /--origin: invalid URL "localhost:8080"/],
    ['pull --from ftp', ['pull', p('out'), '--project', 'x', '--run', 'r', '--from', 'ftp://x'], /--from: invalid URL "ftp:\/\/x"/],
    ['artifacts get --from not a URL', ['artifacts', 'get', 'a/b', '--from', 'notaurl', '-o', p('arts')], /--from: invalid URL "notaurl"/],
    ['assets fetch, second --url bad', ['assets', 'fetch', '-m', p('m.tt'), '--url', 'http://127.0.0.1:9', '--url', 'nope', '--dest', p('dest')], /--url: invalid URL "nope"/, 1],
    ['assets upload --url bad', ['assets', 'upload', '-m', p('m.tt'), '--url', 'localhost:1', '--token-file', p('tok')], /--url: invalid URL "localhost:1"/],
  ];
  for (const [name, args, message, code = 2] of cases) await expectCliError(t, name, args, code, message);
  t.same(readdirSync(dir).sort(), ['m.tt', 'proj', 'tok'], 'nothing written');
});

t.test('a base URL with a query or fragment on push, pull and artifacts get: exit 2, its query never echoed', async (t) => {
  // Joined to it, every request's path went into the query, and the token there was printed
  // with the failure; assets --url drops it instead, as tooltool's urljoin does (assetUrl).
  const dir = t.testdir({ proj: { 'a.txt': 'a\n' } });
  const p = (name: string) => join(dir, name);
  const cases: [string, string[], string][] = [
    ['push --origin', ['push', p('proj'), '--project', 'x', '--origin', 'http://127.0.0.1:9/?token=hunter2', '--base-cache', p('bc')], '--origin'],
    ['push --cache', ['push', p('proj'), '--project', 'x', '--origin', 'http://127.0.0.1:9', '--cache', 'http://127.0.0.1:9/#hunter2', '--base-cache', p('bc')], '--cache'],
    ['pull --from', ['pull', p('out'), '--project', 'x', '--run', 'r', '--from', 'http://127.0.0.1:9/base?token=hunter2'], '--from'],
    ['artifacts get --from', ['artifacts', 'get', 'a/b', '--from', 'http://127.0.0.1:9/?token=hunter2', '-o', p('arts')], '--from'],
  ];
  for (const [name, args, flag] of cases) {
    const got = await runCli(args);
    t.equal(got.code, 2, `${name}: exit 2`);
    t.match(got.stderr, `${flag}: the URL of http://127.0.0.1:9/`, `${name}: names the flag`);
    t.match(got.stderr, 'has a query or fragment', `${name}: says why`);
    t.notMatch(got.stderr, /hunter2/, `${name}: its query not echoed`);
  }
  t.same(readdirSync(dir), ['proj'], 'nothing written');
});

t.test('the credentials of a URL on a flag are not echoed in its errors', async (t) => {
  const dir = t.testdir({ proj: { 'a.txt': 'a\n' } });
  const cases: [string, string[], string][] = [
    ['a misspelt scheme', ['artifacts', 'get', 'a/b', '--from', 'htps://alice:hunter2@127.0.0.1:9', '-o', join(dir, 'arts')], '--from: invalid URL "htps://***@127.0.0.1:9"'],
    ['no scheme', ['push', join(dir, 'proj'), '--project', 'x', '--origin', 'alice:hunter2@localhost:8080', '--base-cache', join(dir, 'bc')], '--origin: invalid URL "***@localhost:8080"'],
    ['one slash', ['pull', join(dir, 'out'), '--project', 'x', '--run', 'r', '--from', 'htps:/alice:hunter2@127.0.0.1:9'], '--from: invalid URL "htps:/***@127.0.0.1:9"'],
    ['no slash', ['cache', '--upstream', 'htps:alice:hunter2@127.0.0.1:9', '--data', join(dir, 'cache')], '--upstream: '],
    ['a "#" in the password', ['pull', join(dir, 'out'), '--project', 'x', '--run', 'r', '--from', 'https://alice:hunter2#x@127.0.0.1:9/'], '--from: invalid URL "https://***@127.0.0.1:9/"'],
    ['an "@" in the password', ['pull', join(dir, 'out'), '--project', 'x', '--run', 'r', '--from', 'ftp://alice:hun@ter2@127.0.0.1/x'], '--from: invalid URL "ftp://***@127.0.0.1/x"'],
  ];
  for (const [name, args, message] of cases) {
    const got = await runCli(args);
    t.equal(got.code, 2, `${name}: exit 2`);
    t.match(got.stderr, message, `${name}: the URL shown without its credentials`);
    t.notMatch(got.stderr, /hunter2|ter2@/, `${name}: no password`);
  }
});

t.test('artifacts get that finds nothing names the server without the credentials of its URL', async (t) => {
  const origin = await startOrigin(t, { dataDir: join(t.testdir(), 'origin') });
  const got = await runCli(['artifacts', 'get', 'run1/job', '--from', origin.url.replace('http://', 'http://alice:hunter2@'), '-o', join(t.testdir(), 'arts')]);
  t.equal(got.code, 4, 'not found');
  t.match(got.stderr, `no artifacts for "run1/job" at ${origin.url.replace('http://', 'http://***:***@')}/ (no _index.json`);
  t.notMatch(got.stderr, /hunter2/);
});
