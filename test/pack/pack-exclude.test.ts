// spread hands each exclude entry to `tar --exclude=` as written (spread-spec §12): what
// fleetcache packs must be what GNU tar packs, checked here against the real tar on the
// same tree. GNU tar 1.34 matches the pattern against member names, which never end in
// `/` and start with `./` only when their include entry does: `c/` and `./x.o` exclude
// nothing under the default include.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar-stream';
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

/** Lines of names, sorted, a leading `./` dropped (fleetcache's pack has none). */
function sortedNames(lines: string): string[] {
  return lines.split('\n').filter((l) => l !== '').map((l) => l.replace(/^\.\//, '')).sort();
}

/** Member names as `tar -t` lists them. */
function listing(tarFile: string): string[] {
  return sortedNames(execFileSync('tar', ['-tf', tarFile], { encoding: 'utf8' }));
}

/**
 * What GNU tar packs of `args` in `cwd` without each of `patterns`: the names `tar -cv` lists
 * as it packs (one process, not two), one `tar -cv` each run by one bash: a process started
 * from node per pattern was most of this file's CPU. Each listing ends in a NUL.
 */
function gnuPacks(cwd: string, patterns: string[], args: string[]): string[][] {
  const script = 'n=$1; shift; args=("${@:1:n}"); shift "$n"; for p; do tar -cvf /dev/null --exclude="$p" "${args[@]}" || exit; printf "\\0"; done';
  const out = execFileSync('bash', ['-c', script, 'bash', String(args.length), ...args, ...patterns], { cwd, encoding: 'utf8' });
  const listings = out.split('\0').slice(0, -1).map(sortedNames);
  if (listings.length !== patterns.length) throw new Error(`${listings.length} listings for ${patterns.length} patterns`);
  return listings;
}

/** Member names of one of our tars, read in this process (a `tar -t` per case was most of this file's CPU). */
async function ourListing(tarFile: string): Promise<string[]> {
  const names: string[] = [];
  const reader = extract();
  reader.on('entry', (header, body, next) => {
    names.push(header.name);
    body.on('end', next).resume();
  });
  await pipeline(createReadStream(tarFile), reader);
  return names.sort();
}

t.test("fleetcache's pack ships what `tar -c --exclude=PATTERN` ships", async (t) => {
  const dir = t.testdir({ p: TREE });
  const root = join(dir, 'p');
  // spread's default include is every root entry; then explicit includes, some written with ./
  const includes: Array<string[] | undefined> = [undefined, ['./sub', 'd'], ['sub/x.o', 'sub/c/g', 'd/e/f'], ['sub/', './d/']];
  const patterns = [...PATTERNS, ...CORNERS, ...BRACKETS];
  for (const include of includes) {
    const gnu = gnuPacks(root, patterns, include ?? Object.keys(TREE));
    for (const [i, pattern] of patterns.entries()) {
      const what = `--exclude=${pattern} over ${include ? include.join(' ') : 'the default include'}`;
      const ours = join(dir, 'ours.tar');
      await packToFile(root, ours, { exclude: [pattern], ...(include ? { include } : {}) });
      t.same(await ourListing(ours), gnu[i], what);
    }
  }
});

t.test('the two listings agree: `tar -cv` lists what `tar -t` reads back; ours reads as `tar -t` reads it', async (t) => {
  const dir = t.testdir({ p: TREE });
  const root = join(dir, 'p');
  const gnu = join(dir, 'gnu.tar');
  const ours = join(dir, 'ours.tar');
  const patterns = ['c', '*/', 'sub/c/g/'];
  const packed = gnuPacks(root, patterns, Object.keys(TREE));
  for (const [i, pattern] of patterns.entries()) {
    execFileSync('tar', ['-cf', gnu, `--exclude=${pattern}`, ...Object.keys(TREE)], { cwd: root });
    t.same(packed[i], listing(gnu), `GNU, --exclude=${pattern}`);
    await packToFile(root, ours, { exclude: [pattern] });
    t.same(await ourListing(ours), listing(ours), `ours, --exclude=${pattern}`);
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
