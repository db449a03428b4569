// A malformed URL on a client command's flag is a usage error (exit 2) naming the flag,
// not exit 6 ("network unavailable", which retry loops take for transient) from fetch's
// "Invalid URL", and nothing is contacted or written. `assets fetch` exits 1 instead, as
// for any failure, as tooltool does (docs/errors.md).
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cliExit } from '../project-upload/cli-helpers.js';

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
  for (const [name, args, message, code = 2] of cases) {
    const got = await cliExit(args);
    t.equal(got.code, code, `${name}: exit ${code}`);
    t.match(got.stderr, message, name);
    t.notMatch(got.stderr, /\n\s+at /, `${name}: no stack trace`);
  }
  t.same(readdirSync(dir).sort(), ['m.tt', 'proj', 'tok'], 'nothing written');
});
