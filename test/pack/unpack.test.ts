import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, createReadStream, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { checkTar, safeEntryPath, unpackTar } from '../../src/pack/unpack.js';
import { describeTree } from '../helpers/tree.js';
import { eventually } from '../helpers/wait.js';

type Entry = { header: Partial<tar.Header> & { name: string }; body?: string };

async function tarOf(entries: Entry[]): Promise<Readable> {
  const pack = tar.pack();
  for (const e of entries) pack.entry(e.header, e.body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Readable.from([Buffer.concat(chunks)]);
}

t.test('safeEntryPath', async (t) => {
  t.equal(safeEntryPath('./a//b/'), 'a/b');
  for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a/..', '', '.', 'a\0b']) {
    t.throws(() => safeEntryPath(bad), { code: 'FC_ERR_BAD_NAME' }, JSON.stringify(bad));
  }
  // a file name longer than NAME_MAX (255 bytes) fails every unpack: refused by name, not ENAMETOOLONG (exit 70)
  t.equal(safeEntryPath(`a/${'x'.repeat(255)}`), `a/${'x'.repeat(255)}`);
  t.throws(() => safeEntryPath(`a/${'x'.repeat(256)}/b`), { code: 'FC_ERR_BAD_NAME', message: /is 256 bytes long, more than the 255/ });
  t.throws(() => safeEntryPath('é'.repeat(128)), { code: 'FC_ERR_BAD_NAME', message: /is 256 bytes long/ }, 'bytes, not characters');
  const dir = t.testdir();
  await t.rejects(unpackTar(await tarOf([{ header: { name: `${'y'.repeat(300)}/f.txt` } }]), join(dir, 'out')), { code: 'FC_ERR_BAD_NAME' });
});

t.test('a path longer than PATH_MAX is refused by name, in the archive or once below the target directory, not ENAMETOOLONG', async (t) => {
  const path = (bytes: number): string => Array.from({ length: Math.ceil(bytes / 200) }, () => 'x'.repeat(199)).join('/').slice(0, bytes).replace(/\/$/, 'z');
  t.equal(safeEntryPath(path(4095)), path(4095));
  t.throws(() => safeEntryPath(path(4096)), { code: 'FC_ERR_BAD_NAME', message: /it is 4096 bytes long, more than the 4095 a path may have \(PATH_MAX\)/ });
  const dir = t.testdir();
  // an entry that takes the 4095 bytes a path may have when unpacked in dir/o, one too many in dir/oo
  const entries = [{ header: { name: 'first.txt' } }, { header: { name: path(4095 - Buffer.byteLength(join(dir, 'o/'))) } }];
  await t.rejects(unpackTar(await tarOf(entries), join(dir, 'oo')), { code: 'FC_ERR_BAD_NAME', message: /unpacked there, its path would be 4096 bytes long, more than the 4095 a path may have \(PATH_MAX\): unpack into a directory with a shorter path/ });
  t.same(readdirSync(join(dir, 'oo')), [], 'nothing left unpacked');
  t.same(await unpackTar(await tarOf(entries), join(dir, 'o')), { entries: 2 }, 'a target one byte shorter takes it');
});

t.test('entries escaping the target are refused', async (t) => {
  const cases: Array<[string, Entry[]]> = [
    ['dot-dot', [{ header: { name: 'ok.txt' } }, { header: { name: '../evil.txt' } }]],
    ['absolute', [{ header: { name: '/tmp/evil.txt' } }]],
    ['through symlink', [{ header: { name: 'l', type: 'symlink', linkname: '..' } }, { header: { name: 'l/evil.txt' } }]],
    ['hard link', [{ header: { name: 'h', type: 'link', linkname: '/etc/passwd' } }]],
  ];
  for (const [what, entries] of cases) {
    const dir = t.testdir();
    const out = join(dir, 'out');
    await t.rejects(unpackTar(await tarOf(entries), out), { code: 'FC_ERR_BAD_NAME' }, what);
    t.notOk(existsSync(join(dir, 'evil.txt')), `${what}: nothing outside`);
  }
});

t.test('an entry may not overwrite an earlier one (symlink swap)', async (t) => {
  const dir = t.testdir();
  const out = join(dir, 'out');
  const entries: Entry[] = [{ header: { name: 'x', type: 'symlink', linkname: '/tmp' } }, { header: { name: 'x' }, body: 'data' }];
  await t.rejects(unpackTar(await tarOf(entries), out), { code: 'FC_ERR_BAD_NAME', message: /has this path twice/ });
  t.same(readdirSync(out), [], 'nothing written through the link; what the unpack made is removed');
});

t.test('a directory entry over an archive symlink is refused; the link target keeps its mode', async (t) => {
  for (const link of ['abs', 'rel']) {
    const dir = t.testdir({ outside: {} });
    const outside = join(dir, 'outside');
    chmodSync(outside, 0o755);
    const entries: Entry[] = [
      { header: { name: 'a', type: 'symlink', linkname: link === 'abs' ? outside : '../outside' } },
      { header: { name: 'a/', type: 'directory', mode: 0o777 } },
    ];
    await t.rejects(unpackTar(await tarOf(entries), join(dir, 'out')), { code: 'FC_ERR_BAD_NAME', message: /symlink/ }, link);
    t.equal(statSync(outside).mode & 0o7777, 0o755, `${link}: the directory outside is untouched`);
  }
  const dir = t.testdir();
  const clash: Entry[] = [{ header: { name: 'f' }, body: 'x' }, { header: { name: 'f', type: 'directory', mode: 0o777 } }];
  await t.rejects(unpackTar(await tarOf(clash), join(dir, 'out')), { code: 'FC_ERR_BAD_NAME', message: /non-directory/ });
  t.same(readdirSync(join(dir, 'out')), [], 'the file was never chmod 777: the unpack removed what it made');
});

t.test('setuid and setgid bits are dropped; permissions, sticky and directory modes kept', async (t) => {
  const dir = t.testdir();
  const out = join(dir, 'out');
  const entries: Entry[] = [
    { header: { name: 'su', mode: 0o4755 }, body: '#!/bin/sh\n' },
    { header: { name: 'sg', mode: 0o2750 }, body: 'x' },
    { header: { name: 'd', type: 'directory', mode: 0o3775 } },
    { header: { name: 'd/f', mode: 0o600 }, body: 'y' },
    { header: { name: 'd', type: 'directory', mode: 0o1750 } },
  ];
  await unpackTar(await tarOf(entries), out);
  t.equal(statSync(join(out, 'su')).mode & 0o7777, 0o755);
  t.equal(statSync(join(out, 'sg')).mode & 0o7777, 0o750);
  t.equal(statSync(join(out, 'd/f')).mode & 0o7777, 0o600);
  t.equal(statSync(join(out, 'd')).mode & 0o7777, 0o1750, 'sticky kept, setgid dropped, the last entry wins');
});

t.test('directories get the archive\'s mode whether the umask keeps it or not, and none inherited from a setgid target', async (t) => {
  const umask = process.umask(0o027); // strips 0o755 and 0o777, keeps 0o750 and 0o700
  t.teardown(() => process.umask(umask));
  const dir = t.testdir();
  const out = join(dir, 'out');
  mkdirSync(out);
  chmodSync(out, 0o2755); // a directory made inside it inherits setgid
  const modes = { kept: 0o750, own: 0o700, stripped: 0o755, open: 0o777, sticky: 0o1777, readOnly: 0o555 };
  const entries: Entry[] = Object.entries(modes).flatMap(([name, mode]) => [
    { header: { name, type: 'directory', mode } },
    { header: { name: `${name}/f`, mode: 0o640 }, body: name },
  ] satisfies Entry[]);
  await unpackTar(await tarOf(entries), out);
  for (const [name, mode] of Object.entries(modes)) {
    t.equal(statSync(join(out, name)).mode & 0o7777, mode, `${name}: ${mode.toString(8)}`);
    t.equal(readFileSync(join(out, name, 'f'), 'utf8'), name);
  }
});

t.test('files small and large get the archive\'s mode whether the umask keeps it or not, each mode on its own', async (t) => {
  const umask = process.umask(0o027); // keeps 0o640, strips 0o644 and 0o755
  t.teardown(() => process.umask(umask));
  const dir = t.testdir();
  // one kept mode first, then stripped ones, each twice: what creation does to one mode is not taken for another
  const modes = { a: 0o640, b: 0o644, c: 0o755, d: 0o640, e: 0o644, f: 0o755, g: 0o400, h: 0o1640 };
  for (const [size, bodyOf] of [['small', (name: string) => name], ['large', (name: string) => name.repeat(100_000)]] as const) {
    const out = join(dir, size); // past the small-file path (64 KiB) when large
    const entries: Entry[] = Object.entries(modes).map(([name, mode]) => ({ header: { name: `d/${name}`, mode }, body: bodyOf(name) }));
    await unpackTar(await tarOf(entries), out);
    for (const [name, mode] of Object.entries(modes)) {
      t.equal(statSync(join(out, 'd', name)).mode & 0o7777, mode, `${size} ${name}: ${mode.toString(8)}`);
      t.equal(readFileSync(join(out, 'd', name), 'utf8'), bodyOf(name));
    }
  }
});

t.test("GNU tar's `tar -C dir -c .`: the ./ root entry is skipped, ./ prefixes and hard links unpack", async (t) => {
  const dir = t.testdir();
  const src = join(dir, 'src');
  mkdirSync(join(src, 'd/e'), { recursive: true });
  chmodSync(src, 0o700); // like mktemp -d: the target must not get this mode
  writeFileSync(join(src, 'd/f'), 'shared body\n');
  linkSync(join(src, 'd/f'), join(src, 'd/e/g'));
  linkSync(join(src, 'd/f'), join(src, 'top'));
  symlinkSync('d/f', join(src, 'l'));
  const file = join(dir, 'x.tar');
  execFileSync('tar', ['-C', src, '-cf', file, '.']);
  const listing = execFileSync('tar', ['-tvf', file], { encoding: 'utf8' });
  t.match(listing, /^d.* \.\/\n/, 'the archive starts with ./');
  t.match(listing, /^h.* link to \.\/top$/m, 'and has hard links');
  t.same(await checkTar(createReadStream(file)), { entries: 6 }, 'the dry run takes it');
  const out = join(dir, 'out');
  t.same(await unpackTar(createReadStream(file), out), { entries: 6 });
  t.same(describeTree(out), describeTree(src));
  t.equal(statSync(join(out, 'd/e/g')).ino, statSync(join(out, 'd/f')).ino, 'a hard link, not a copy');
  t.equal(statSync(out).mode & 0o777, 0o755, "the target keeps its mode, not the root entry's");
});

t.test('a hard link must join a regular file unpacked before it, inside the target', async (t) => {
  const cases: Array<[string, Entry[]]> = [
    ['a later file', [{ header: { name: 'h', type: 'link', linkname: 'f' } }, { header: { name: 'f' }, body: 'x' }]],
    ['a missing file', [{ header: { name: 'h', type: 'link', linkname: 'nope' } }]],
    ['a directory', [{ header: { name: 'd', type: 'directory' } }, { header: { name: 'h', type: 'link', linkname: 'd' } }]],
    ['a symlink', [{ header: { name: 's', type: 'symlink', linkname: '/etc/passwd' } }, { header: { name: 'h', type: 'link', linkname: 's' } }]],
    ['through a symlink', [{ header: { name: 's', type: 'symlink', linkname: '/etc' } }, { header: { name: 'h', type: 'link', linkname: 's/passwd' } }]],
    ['outside', [{ header: { name: 'f' }, body: 'x' }, { header: { name: 'h', type: 'link', linkname: '../f' } }]],
  ];
  for (const [what, entries] of cases) {
    const dir = t.testdir();
    await t.rejects(unpackTar(await tarOf(entries), join(dir, 'out')), { code: 'FC_ERR_BAD_NAME', message: /hard link target/ }, what);
    t.notOk(existsSync(join(dir, 'out', 'h')), `${what}: no link made`);
    if (what !== 'through a symlink') await t.rejects(checkTar(await tarOf(entries)), { code: 'FC_ERR_BAD_NAME' }, `${what}: the dry run refuses it too`);
  }
});

t.test('an empty, truncated or non-tar stream is refused, not unpacked as an empty project', async (t) => {
  const dir = t.testdir({ src: { f: 'x'.repeat(600) } });
  const file = join(dir, 'x.tar');
  execFileSync('tar', ['-C', join(dir, 'src'), '-cf', file, 'f']);
  const whole = readFileSync(file);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['0 bytes', Buffer.alloc(0), /empty \(0 bytes\)/],
    ['no end-of-archive marker', whole.subarray(0, 512 * 3), /no end-of-archive marker/],
    ['cut inside an entry', whole.subarray(0, 700), /not a readable tar/],
    ['not a tar', Buffer.from('hello\n'.repeat(200)), /not a readable tar/],
  ];
  for (const [what, bytes, message] of cases) {
    const out = join(dir, `out-${what}`);
    await t.rejects(unpackTar(Readable.from([bytes]), out), { code: 'FC_ERR_ARCHIVE', message }, what);
    await t.rejects(checkTar(Readable.from([bytes])), { code: 'FC_ERR_ARCHIVE', message }, `${what}: dry run`);
  }
  t.same(await unpackTar(Readable.from([whole.subarray(0, 512 * 4)]), join(dir, 'lone')), { entries: 1 }, 'a lone zero block ends it, as for GNU tar');
});

t.test('an archive goes no further than its first zero block, as for GNU tar: what follows is refused, not unpacked', async (t) => {
  // a long-name header before its entry: "./" and this make 512 bytes, whose NUL fills a zero block of the header's data
  const long = ['d'.repeat(200), 'e'.repeat(200), 'f'.repeat(108)];
  const dir = t.testdir({ a: { f: 'first\n', 'a-zeros': '\0'.repeat(5000), [long[0]!]: { [long[1]!]: { [long[2]!]: 'long\n' } } }, b: { g: 'second\n' } });
  const tarOfDir = (name: string): Buffer => execFileSync('tar', ['-C', join(dir, name), '--sort=name', '-c', '-f', '-', '.'], { maxBuffer: 1 << 24 });
  const first = tarOfDir('a');
  /** `bytes` unpacked by GNU tar: the names it writes. */
  const gnuNames = (what: string, bytes: Buffer): string[] => {
    const out = join(dir, `gnu-${what}`);
    mkdirSync(out);
    execFileSync('tar', ['-C', out, '-x', '-f', '-'], { input: bytes, stdio: ['pipe', 'ignore', 'ignore'] });
    return readdirSync(out).sort();
  };
  t.same(await unpackTar(Readable.from([first]), join(dir, 'whole')), { entries: 5 }, 'zero blocks inside a file and a long-name header are no end');
  // where the first archive's entries end (its last, f, ends in a non-zero byte): its end-of-archive marker starts there
  let last = first.length - 1;
  while (first[last] === 0) last--;
  const entriesEnd = Math.ceil((last + 1) / 512) * 512;
  const cases: Array<[string, Buffer]> = [
    ['a second archive appended', Buffer.concat([first, tarOfDir('b')])],
    ['a second archive after a lone zero block', Buffer.concat([first.subarray(0, entriesEnd + 512), tarOfDir('b')])],
    ['bytes that are no tar after the end marker', Buffer.concat([first, Buffer.from('trailing garbage\n'.repeat(100))])],
    ['a few bytes after the end marker', Buffer.concat([first, Buffer.from('x')])],
  ];
  for (const [what, bytes] of cases) {
    t.same(gnuNames(what, bytes), ['a-zeros', long[0], 'f'], `${what}: GNU tar unpacks the first archive only`);
    for (const chunk of [bytes.length, 100]) {
      const chunks = Array.from({ length: Math.ceil(bytes.length / chunk) }, (_, i) => bytes.subarray(i * chunk, (i + 1) * chunk));
      const out = join(dir, `out-${what}-${chunk}`);
      const message = `not a single tar: data follows its end (the zero block at byte ${entriesEnd}), which GNU tar would leave out (a second archive appended?)`;
      await t.rejects(unpackTar(Readable.from(chunks), out), { code: 'FC_ERR_ARCHIVE', message }, `${what}, in chunks of ${chunk} bytes: refused`);
      t.same(readdirSync(out), [], `${what}, in chunks of ${chunk} bytes: nothing left unpacked`);
      await t.rejects(checkTar(Readable.from(chunks)), { code: 'FC_ERR_ARCHIVE', message }, `${what}, in chunks of ${chunk} bytes: the dry run refuses it too`);
    }
  }
});

t.test('a failed unpack removes what it made, and only that', async (t) => {
  const dir = t.testdir();
  const out = join(dir, 'out');
  const pack = tar.pack();
  pack.entry({ name: 'a/x.txt' }, 'x');
  pack.entry({ name: '../evil.txt' }, 'evil');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  const bytes = Buffer.concat(chunks);
  // the first entry (header and data blocks), then another process writes into the
  // directory, then the refused entry
  async function* input() {
    yield bytes.subarray(0, 1024);
    await eventually('the first entry is unpacked', () => existsSync(join(out, 'a', 'x.txt')));
    writeFileSync(join(out, 'theirs.txt'), 'not the unpack\'s');
    yield bytes.subarray(1024);
  }
  await t.rejects(unpackTar(Readable.from(input()), out), { code: 'FC_ERR_BAD_NAME' });
  t.same(readdirSync(out), ['theirs.txt'], "the unpack's own tree is gone, the other file stays");
});

t.test('modification times are the archive\'s: files, symlinks, directories', async (t) => {
  const dir = t.testdir();
  const out = join(dir, 'out');
  const at = (s: string) => new Date(s);
  const big = 'b'.repeat(100_000); // past the small-file path
  await unpackTar(await tarOf([
    { header: { name: 'd', type: 'directory', mtime: at('2001-02-03T04:05:06Z') } },
    { header: { name: 'd/small.txt', mtime: at('2002-01-01T00:00:00Z') }, body: 'small' },
    { header: { name: 'd/big.bin', mtime: at('2003-01-01T00:00:00Z') }, body: big },
    { header: { name: 'd/link', type: 'symlink', linkname: 'small.txt', mtime: at('2004-01-01T00:00:00Z') } },
  ]), out);
  const mtime = (p: string) => lstatSync(join(out, p)).mtime.toISOString();
  t.equal(mtime('d/small.txt'), '2002-01-01T00:00:00.000Z');
  t.equal(mtime('d/big.bin'), '2003-01-01T00:00:00.000Z');
  t.equal(mtime('d/link'), '2004-01-01T00:00:00.000Z', 'the link itself, not its target');
  t.equal(mtime('d'), '2001-02-03T04:05:06.000Z', 'a directory keeps its time despite the files made in it');
});

t.test('duplicate paths and paths through an entry are refused by checkTar, and by unpackTar without an internal error', async (t) => {
  const cases: Array<[string, Entry[]]> = [
    ['a file twice (tar -rf of a newer copy)', [{ header: { name: 'v.txt' }, body: '1' }, { header: { name: 'v.txt' }, body: '2' }]],
    ['a file through a symlink of the archive', [{ header: { name: 's', type: 'symlink', linkname: 'real' } }, { header: { name: 's/f.txt' } }]],
    ['a symlink over a directory of the archive', [{ header: { name: 'd', type: 'directory' } }, { header: { name: 'd', type: 'symlink', linkname: 'x' } }]],
    ['a file through a file', [{ header: { name: 'f' }, body: 'f' }, { header: { name: 'f/g' } }]],
  ];
  for (const [what, entries] of cases) {
    await t.rejects(checkTar(await tarOf(entries)), { code: 'FC_ERR_BAD_NAME' }, `checkTar: ${what}`);
    const out = join(t.testdirName, what.replace(/\W+/g, '-'));
    await t.rejects(unpackTar(await tarOf(entries), out), { code: 'FC_ERR_BAD_NAME' }, `unpackTar: ${what}`);
    t.same(readdirSync(out), [], `${what}: nothing left`);
  }
  t.same(await checkTar(await tarOf([{ header: { name: 'd', type: 'directory' } }, { header: { name: 'd/f' } }, { header: { name: 'd', type: 'directory' } }])), { entries: 3 }, 'a directory twice is fine (the last mode wins)');
});

t.test('a name that is not valid UTF-8 is refused, not unpacked under another name', async (t) => {
  const dir = t.testdir({ src: {} });
  writeFileSync(Buffer.from(`${join(dir, 'src')}/caf\xe9`, 'latin1'), 'x');
  execFileSync('tar', ['-C', join(dir, 'src'), '-cf', join(dir, 'a.tar'), '.']);
  await t.rejects(checkTar(createReadStream(join(dir, 'a.tar'))), { code: 'FC_ERR_BAD_NAME', message: /not valid UTF-8/ });
  await t.rejects(unpackTar(createReadStream(join(dir, 'a.tar')), join(dir, 'out')), { code: 'FC_ERR_BAD_NAME', message: /not valid UTF-8/ });
});
