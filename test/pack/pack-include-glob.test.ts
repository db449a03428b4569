// spread expands `include:` with Go's filepath.Glob from the project root (filepath.Match
// per path component), not with tar's or the shell's glob syntax.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { packToFile } from '../../src/pack/packer.js';

t.test('include entries are Go globs: [^...] negates, [!...] is a class with !, \\ escapes, bad patterns are refused', async (t) => {
  const dir = t.testdir({ p: { ab: 'a', '!b': '!', cb: 'c', 'foo.txt': 'f', 'foo-txt': 'g', '.dot': 'd', sub: { 'x.c': 'x', 'y.h': 'y' } } });
  const root = join(dir, 'p');
  const list = async (include: string[]): Promise<string[]> => {
    await packToFile(root, join(dir, 'r.tar'), { include });
    return execFileSync('tar', ['-tf', join(dir, 'r.tar')], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
  };
  t.same(await list(['[^a]b']), ['!b', 'cb'], '^ negates');
  t.same(await list(['[!a]b']), ['!b', 'ab'], '! is a plain class member, as in Go');
  t.same(await list(['foo\\.txt']), ['foo.txt'], 'a backslash escapes, and makes the entry a pattern');
  t.same(await list(['foo?txt']), ['foo-txt', 'foo.txt']);
  t.same(await list(['*/*.[ch]']), ['sub/x.c', 'sub/y.h'], 'per component, a class of two');
  t.same(await list(['[z-aa]b']), ['ab'], 'a reversed range is no error: it matches nothing');
  t.same(await list(['?b', '*ot']), ['!b', '.dot', 'ab', 'cb'], '* matches dotfiles');
  for (const bad of ['[]a]b', '[a', '[a-]b', 'x\\', 'sub/[', '[^]b']) {
    await t.rejects(list([bad]), { message: `include entry "${bad}": syntax error in pattern (a Go filepath.Glob pattern)` }, bad);
  }
});
