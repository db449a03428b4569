// spread hands each exclude entry to `tar --exclude=` as written (spread-spec §12): what
// fleetcache packs must be what GNU tar packs, checked here against the real tar on the
// same tree. GNU tar 1.34 matches the pattern against member names, which never end in
// `/` and start with `./` only when their include entry does: `c/` and `./x.o` exclude
// nothing under the default include.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { packToFile } from '../../src/pack/packer.js';

const TREE = {
  'a.txt': 'a',
  'x.o': 'x',
  '.hidden': 'h',
  c: { f: 'f' },
  d: { e: { f: 'f' } },
  sub: { 'x.o': 'x', c: { g: 'g' } },
  sub2: { h: 'h' },
  'Copy of a.txt': 'a',
  'a]b': 'a',
  'B.txt': 'b',
};

const PATTERNS = ['c/', './x.o', 'x.o', 'c', 'sub/c', '*/c', 'c/*', '*.o', 's*b', 'sub/', 'd/e/', '/x.o', '[cd]', '*/', 'sub/./c', './sub', '.hidden', 'd/*/f', 'sub/c/g/'];
// `**` is `*` twice (no globstar), `.` and an empty component match no member name
const CORNERS = ['**', '**/x.o', 'sub/**', '**/c', 'x.o/', '*.o/', 'sub//c', '.', './', 'sub/.', '\\x.o', 'x\\.o', '?', '*'];
// bracket expressions as fnmatch reads them: classes, a `]` first, escapes, a reversed range
const BRACKETS = ['*[[:space:]]*', '[[:upper:]]*', '[]a]*', '[!]]*', '[a\\-z]*', '[z-a]*', '[[:nope:]]*'];

/** Member names as `tar -t` lists them, sorted, a leading `./` dropped (fleetcache's pack has none). */
function listing(tarFile: string): string[] {
  return execFileSync('tar', ['-tf', tarFile], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^\.\//, ''))
    .sort();
}

t.test("fleetcache's pack ships what `tar -c --exclude=PATTERN` ships", async (t) => {
  const dir = t.testdir({ p: TREE });
  const root = join(dir, 'p');
  // spread's default include is every root entry; then explicit includes, some written with ./
  const includes: Array<string[] | undefined> = [undefined, ['./sub', 'd'], ['sub/x.o', 'sub/c/g', 'd/e/f'], ['sub/', './d/']];
  for (const include of includes) {
    const args = include ?? Object.keys(TREE);
    for (const pattern of [...PATTERNS, ...CORNERS, ...BRACKETS]) {
      const what = `--exclude=${pattern} over ${include ? include.join(' ') : 'the default include'}`;
      const gnu = join(dir, 'gnu.tar');
      execFileSync('tar', ['-cf', gnu, `--exclude=${pattern}`, ...args], { cwd: root });
      const ours = join(dir, 'ours.tar');
      await packToFile(root, ours, { exclude: [pattern], ...(include ? { include } : {}) });
      t.same(listing(ours), listing(gnu), what);
    }
  }
});

t.test('the trailing-slash and ./ cases ship their files', async (t) => {
  const dir = t.testdir({ p: TREE });
  const names = async (exclude: string[]): Promise<string[]> => {
    await packToFile(join(dir, 'p'), join(dir, 'x.tar'), { exclude });
    return listing(join(dir, 'x.tar'));
  };
  t.ok((await names(['c/'])).includes('c/f'), 'c/ excludes nothing: no member name ends in /');
  t.ok((await names(['./x.o'])).includes('x.o'), './x.o excludes nothing: member names have no ./');
  t.notOk((await names(['c'])).some((n) => n.startsWith('c/') || n.startsWith('sub/c/')), 'c excludes c and sub/c');
});
