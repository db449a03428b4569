// spread hands each rename entry to `tar --transform=` as written (spread-spec §12): the
// names fleetcache packs must be those GNU tar packs, checked here against the real tar on
// the same tree, symlink targets included. Left out: what GNU tar 1.34 gets wrong itself (a
// numeric flag repeats parts of the name; `g` with an empty match never ends).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { packToFile } from '../../src/pack/packer.js';

const TREE = {
  'a.txt': 'a',
  'x.o': 'x',
  'B.md': 'b',
  c: { f: 'f' },
  sub: { 'x.o': 'x', c: { g: 'g' } },
  abab: { abab: 'a' },
};

const EXPRESSIONS = [
  's,^,proj/,', 's/a/A/g', 's,\\.o$,.obj,', 's/\\(a\\)\\(b\\)/\\2\\1/', 's/[ab]\\{2\\}/W/', 's,x\\.o,&.bak,', 's/A/z/i', 's/b$/B/x', 's/a/b/gS',
  // bracket expressions as regcomp reads them: classes, a `]` first, a backslash literal
  's/[[:alpha:]]/Z/', 's/[[:punct:]]/_/g', 's/[^[:alpha:]]/_/g', 's/[[:upper:]]/u/', 's/[]a]/Q/g', 's/[^]a]/Q/', 's/[a\\]/Q/g',
  // a number: that match only; with g, it and every one after it (as sed's 2g). Each match
  // skipped starts its name here: GNU tar 1.34 repeats what comes before one that does not.
  's,[^/],N,2g', 's,[^/],N,2', 's,.,N,3',
  // flag x: an extended regex, bracket expressions read as regcomp reads them there too
  's/^[[:alpha:]]+/&W/x', 's/(a|b)b/Q/xg', 's/[[:digit:]]*b/Q/x', 's/(a)\\1/Q/x', 's/a{2}/Q/x',
  // GNU's escapes JavaScript reads alike
  's/\\w/&W/g', 's/\\W/_/g', 's/a\\b/Q/g',
  // scopes: r/R member names, s/S symlink targets (h/H hard link targets: none are packed)
  's/a/A/gR', 's/a/A/gRs', 's/a/A/gr', 's/a/A/gh', 's/a/A/gH',
  // several expressions in one, and flags= setting the scopes of those after it (from none)
  's/a/A/;s/b/B/', 's/a/A/g;', 's;a;A;g;s/b/B/', 'flags=rS;s/a/A/g', 'flags=s;s/a/A/g', 's/a/A/g;flags=R;s/b/B/g', 'flags=r;s/a/A/;flags=rsh;s/b/B/g',
];

/**
 * Member names (with their link targets) as `tar -tv` lists them, sorted, leading `./`s
 * dropped, and the root (`./`, which GNU tar packs for an include `.` and unpacking skips) left out.
 */
function listing(tarFile: string): string[] {
  return execFileSync('tar', ['-tvf', tarFile], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^(\.\/)+/, ''))
    .filter((name) => name !== '')
    .sort();
}

t.test("fleetcache's pack gives the names `tar -c --transform=EXPRESSION` gives", async (t) => {
  const dir = t.testdir({ p: TREE });
  const root = join(dir, 'p');
  symlinkSync('sub/x.o', join(root, 'lnk'));
  symlinkSync('../a.txt', join(root, 'sub', 'up'));
  for (const expression of EXPRESSIONS) {
    const gnu = join(dir, 'gnu.tar');
    execFileSync('tar', ['-cf', gnu, `--transform=${expression}`, ...Object.keys(TREE), 'lnk'], { cwd: root });
    const ours = join(dir, 'ours.tar');
    await packToFile(root, ours, { rename: [expression] });
    t.same(listing(ours), listing(gnu), `--transform=${expression}`);
  }
});

t.test('what regcomp refuses in a bracket expression is refused by name, as GNU tar refuses it', async (t) => {
  const dir = t.testdir({ p: TREE });
  const pack = (rename: string) => packToFile(join(dir, 'p'), join(dir, 'x.tar'), { rename: [rename] });
  await t.rejects(pack('s/[b-a]/Q/'), { code: 'FC_ERR_USAGE', message: 'rename: bad regular expression in "s/[b-a]/Q/": reversed range b-a' });
  await t.rejects(pack('s/[[:nope:]]/Q/'), { code: 'FC_ERR_USAGE', message: /unknown character class \[:nope:\]/ });
  t.throws(() => execFileSync('tar', ['-cf', join(dir, 'gnu.tar'), '--transform=s/[b-a]/Q/', 'a.txt'], { cwd: join(dir, 'p'), stdio: 'ignore' }), 'GNU tar refuses it too');
});

t.test("GNU's word and buffer anchors, which JavaScript has not, are refused by name, not read as letters", async (t) => {
  const dir = t.testdir({ p: TREE });
  for (const anchor of ['\\<', '\\>', '\\`', "\\'"]) {
    for (const rename of [`s/${anchor}a/Q/`, `s/b${anchor}/Q/x`]) {
      await t.rejects(packToFile(join(dir, 'p'), join(dir, 'x.tar'), { rename: [rename] }), { code: 'FC_ERR_USAGE', message: `rename: bad regular expression in "${rename}": ${anchor} (a GNU word or buffer anchor) is not supported` });
    }
  }
});

t.test('under an include written with ./, rename rules see the names GNU tar gives them (./sub/...), as the exclude patterns do', async (t) => {
  const dir = t.testdir({ p: TREE });
  const root = join(dir, 'p');
  for (const [expression, exclude] of [['s,^\\./sub,lib,', 'x.o'], ['s,^sub,lib,', './sub/c'], ['s,^\\./,top/,', 'g']] as const) {
    const gnu = join(dir, 'gnu.tar');
    execFileSync('tar', ['-cf', gnu, `--transform=${expression}`, `--exclude=${exclude}`, './sub', 'c'], { cwd: root });
    const ours = join(dir, 'ours.tar');
    await packToFile(root, ours, { include: ['./sub', 'c'], rename: [expression], exclude: [exclude] });
    t.same(listing(ours), listing(gnu), `--transform=${expression} --exclude=${exclude} over ./sub c`);
  }
});

t.test('an include `.` (`./`, `./.`) packs the whole tree, the same tar as no include, its names for the rules those `tar -c .` gives', async (t) => {
  const dir = t.testdir({ p: TREE });
  const root = join(dir, 'p');
  const whole = join(dir, 'whole.tar');
  await packToFile(root, whole, {});
  for (const dot of ['.', './', './.']) {
    const ours = join(dir, 'ours.tar');
    await packToFile(root, ours, { include: [dot] });
    t.same(readFileSync(ours), readFileSync(whole), `include ${dot}: the tar of no include`);
    // the rules see `./sub/...` (`././sub/...` under `./.`), as GNU tar's do
    for (const [expression, exclude] of [['s,^\\./sub,lib,', 'x.o'], ['s,^sub,lib,', './c'], ['s,a,A,g', `${dot.replace(/\/$/, '')}/sub/c`]] as const) {
      const gnu = join(dir, 'gnu.tar');
      execFileSync('tar', ['-cf', gnu, `--transform=${expression}`, `--exclude=${exclude}`, dot], { cwd: root });
      await packToFile(root, ours, { include: [dot], rename: [expression], exclude: [exclude] });
      t.same(listing(ours), listing(gnu), `--transform=${expression} --exclude=${exclude} ${dot}`);
    }
  }
});
