import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, truncateSync, unlinkSync, utimesSync, writeFileSync, createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { openListedFile, packToFile, packTree, readSmallFile } from '../../src/pack/packer.js';
import { unpackTar } from '../../src/pack/unpack.js';
import { undoAtExit } from '../helpers/processes.js';

const LONG = `${'d'.repeat(60)}/${'n'.repeat(70)}-long-name-over-100-bytes.txt`;

function makeTree(root: string): void {
  mkdirSync(join(root, 'src/sub'), { recursive: true });
  mkdirSync(join(root, 'empty/inner-empty'), { recursive: true });
  mkdirSync(join(root, LONG.split('/')[0] as string), { recursive: true });
  writeFileSync(join(root, 'README.md'), '# project\n'.repeat(50));
  writeFileSync(join(root, 'src/main.c'), 'int main(void) { return 0; }\n');
  writeFileSync(join(root, 'src/sub/blob.bin'), randomBytes(70_000));
  writeFileSync(join(root, LONG), 'long\n');
  writeFileSync(join(root, 'run.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(root, 'run.sh'), 0o755);
  writeFileSync(join(root, 'private.key'), 'secret');
  chmodSync(join(root, 'private.key'), 0o600);
  writeFileSync(join(root, '.hidden'), 'dot');
  writeFileSync(join(root, '.spread-reuse.123.yaml'), 'never packed');
  symlinkSync('src/main.c', join(root, 'link-to-main'));
  symlinkSync('../README.md', join(root, 'src/up-link'));
  symlinkSync('/etc/passwd', join(root, 'abs-link'));
}

/** path → description of every entry under dir, for comparing trees. */
function describe(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, p));
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out[p] = `link ${readlinkSync(join(dir, p))}`;
    else if (st.isDirectory()) {
      out[p] = `dir ${mode}`;
      Object.assign(out, describe(dir, p));
    } else out[p] = `file ${mode} ${createHash('sha256').update(readFileSync(join(dir, p))).digest('hex')}`;
  }
  return out;
}

/**
 * A test directory holding the tree `p` of 50 files of 10,000 lines: its tar comes in blocks
 * of 256 KiB, the first out long before the last file is read.
 */
function treeOfManyBlocks(t: Test): { dir: string; root: string } {
  const dir = t.testdir();
  const root = join(dir, 'p');
  mkdirSync(root);
  for (let i = 0; i < 50; i++) writeFileSync(join(root, `f${i}`), `file ${i}\n`.repeat(10_000));
  return { dir, root };
}

t.test('deterministic: same tree, same bytes, whatever the mtimes', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'p');
  mkdirSync(root);
  makeTree(root);
  const a = await packToFile(root, join(dir, 'a.tar'));
  utimesSync(join(root, 'README.md'), new Date(2020, 1, 1), new Date(2021, 1, 1));
  utimesSync(join(root, 'src'), new Date(2019, 1, 1), new Date(2019, 1, 1));
  const b = await packToFile(root, join(dir, 'b.tar'));
  t.equal(a.sha256, b.sha256);
  t.equal(a.size, b.size);
  t.same(readFileSync(join(dir, 'a.tar')), readFileSync(join(dir, 'b.tar')));
  writeFileSync(join(root, 'README.md'), 'changed');
  const c = await packToFile(root, join(dir, 'c.tar'));
  t.not(c.sha256, a.sha256, 'a content change changes the tar');
});

t.test('an aborted signal stops the pack at the next file, with its reason', async (t) => {
  const { dir, root } = treeOfManyBlocks(t);
  const ac = new AbortController();
  const { stream, done } = packTree(root, {}, ac.signal);
  stream.once('data', () => ac.abort());
  const streamError = new Promise((resolve) => stream.once('error', resolve));
  await t.rejects(done, { name: 'AbortError' });
  t.match(await streamError, { name: 'AbortError' }, 'the stream ends with the same error');
  await t.rejects(packToFile(root, join(dir, 'x.tar'), {}, ac.signal), { name: 'AbortError' }, 'packToFile rejects with the reason, not a pack error');
});

t.test('GNU tar reads it: sorted names, owners, modes, long names, no reuse files', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'p');
  mkdirSync(root);
  makeTree(root);
  await packToFile(root, join(dir, 'a.tar'));
  const listing = execFileSync('tar', ['--numeric-owner', '-tvf', join(dir, 'a.tar')], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } }).trim().split('\n');
  const names = listing.map((l) => l.split(/\s+/).slice(5).join(' '));
  t.ok(names.includes(LONG), 'long name intact');
  t.notOk(names.some((n) => n.includes('.spread-reuse')), '.spread-reuse.* excluded');
  t.ok(names.includes('link-to-main -> src/main.c'));
  t.ok(names.includes('empty/inner-empty/'));
  t.ok(listing.every((l) => l.split(/\s+/)[1] === '0/0'), 'uid/gid 0');
  t.ok(listing.every((l) => l.includes('2000-01-01')), 'fixed mtime');
  t.match(listing.find((l) => l.endsWith(' run.sh')), /^-rwxr-xr-x/);
  t.match(listing.find((l) => l.endsWith(' private.key')), /^-rw-------/);
  t.same(names.slice(0, 3), ['.hidden', 'README.md', 'abs-link -> /etc/passwd'], 'byte-order sorted');
  const gnuOut = join(dir, 'gnu');
  mkdirSync(gnuOut);
  execFileSync('tar', ['-xf', join(dir, 'a.tar'), '-C', gnuOut]);
  const expected = describe(root);
  delete expected['.spread-reuse.123.yaml'];
  t.same(describe(gnuOut), expected, 'GNU tar extracts the same tree');
});

t.test('round trip through our unpacker', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'p');
  mkdirSync(root);
  makeTree(root);
  await packToFile(root, join(dir, 'a.tar'));
  const out = join(dir, 'out');
  const { entries } = await unpackTar(createReadStream(join(dir, 'a.tar')), out);
  const expected = describe(root);
  delete expected['.spread-reuse.123.yaml'];
  t.same(describe(out), expected);
  t.equal(entries, Object.keys(expected).length);
  await t.rejects(unpackTar(createReadStream(join(dir, 'a.tar')), out), /not empty/, 'refuses a non-empty target');
});

t.test('include, exclude and rename rules', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'p');
  mkdirSync(root);
  makeTree(root);
  const list = async (rules: Parameters<typeof packToFile>[2]): Promise<string[]> => {
    await packToFile(root, join(dir, 'r.tar'), rules);
    return execFileSync('tar', ['-tvf', join(dir, 'r.tar')], { encoding: 'utf8' }).trim().split('\n').filter((l) => l !== '').map((l) => l.split(/\s+/).slice(5).join(' '));
  };
  t.same(await list({ include: ['src', 'README.md'] }), ['README.md', 'src/', 'src/main.c', 'src/sub/', 'src/sub/blob.bin', 'src/up-link -> ../README.md']);
  t.same(await list({ include: ['src'], exclude: ['*.bin', 'up-link'] }), ['src/', 'src/main.c', 'src/sub/']);
  t.same(await list({ include: ['src/sub'], exclude: ['src/sub'] }), [], 'excluded include root');
  t.same(await list({ include: ['*.md', '.hid*'] }), ['.hidden', 'README.md'], 'globs, dotfiles included');
  t.same(await list({ include: ['link-to-main', 'src/main.c'], rename: ['s,^,proj/,'] }), ['proj/link-to-main -> proj/src/main.c', 'proj/src/main.c'], 'rename applies to link targets');
  t.same(await list({ include: ['link-to-main', 'src/main.c'], rename: ['s,^,proj/,S'] }), ['proj/link-to-main -> src/main.c', 'proj/src/main.c'], 'S leaves link targets alone');
  t.same(await list({ include: ['src/main.c'], rename: ['s/\\(src\\)\\/\\(.*\\)\\.c/\\2-\\1.C/'] }), ['main-src.C'], 'BRE groups');
  t.same(await list({ include: ['src/sub/blob.bin'], rename: ['s/b/B/2'] }), ['src/sub/Blob.bin'], 'numeric flag: second match only');
  t.same(await list({ include: ['src/main.c'], rename: ['s/a/A/g'] }), ['src/mAin.c']);
  await t.rejects(list({ include: ['nope'] }), /matches nothing/);
  await t.rejects(list({ rename: ['s/a/b'] }), /three/);
});

t.test('streams: a 400 MiB file packs without holding it in memory', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'p');
  mkdirSync(root);
  writeFileSync(join(root, 'big.img'), '');
  truncateSync(join(root, 'big.img'), 400 * 1024 * 1024);
  const before = process.memoryUsage().rss;
  let peak = before;
  let bytes = 0;
  const { stream, done } = packTree(root);
  await pipeline(
    stream,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        bytes += chunk.length;
        peak = Math.max(peak, process.memoryUsage().rss);
        cb();
      },
    }),
  );
  await done;
  t.ok(bytes > 400 * 1024 * 1024);
  t.ok(peak - before < 150 * 1024 * 1024, `rss grew by ${((peak - before) / 1048576).toFixed(0)} MiB`);
});

t.test('mode 000 files and directories keep it (tar-stream would default a falsy mode)', async (t) => {
  const dir = t.testdir({ tree: { none: 'x', closed: { inner: 'y' } } });
  const root = join(dir, 'tree');
  chmodSync(join(root, 'none'), 0);
  chmodSync(join(root, 'closed'), 0);
  const file = join(dir, 'out.tar');
  await packToFile(root, file);
  const listing = execFileSync('tar', ['-tvf', file], { encoding: 'utf8' });
  t.match(listing, /^d--------- .* closed\/$/m);
  t.match(listing, /^-rw-r--r-- .* closed\/inner$/m);
  t.match(listing, /^---------- .* none$/m);
  const out = join(dir, 'out');
  await unpackTar(createReadStream(file), out);
  t.equal(lstatSync(join(out, 'none')).mode & 0o7777, 0);
  t.equal(lstatSync(join(out, 'closed')).mode & 0o7777, 0);
  chmodSync(join(out, 'closed'), 0o755); // so that tap can remove the testdir
  chmodSync(join(root, 'closed'), 0o755);
});

for (const what of ['file name', 'symlink target']) {
  t.test(`a ${what} that is not UTF-8 is refused by name, not as missing`, async (t) => {
    const dir = t.testdir({ tree: { sub: {} } });
    const bad = Buffer.concat([Buffer.from(join(dir, 'tree/sub/')), Buffer.from('bad\xe9name', 'latin1')]);
    const made = what === 'file name' ? bad : join(dir, 'tree/sub/link');
    if (what === 'file name') writeFileSync(bad, 'x');
    else symlinkSync(Buffer.from('bad\xe9name', 'latin1'), made);
    try {
      await t.rejects(packToFile(join(dir, 'tree'), join(dir, 'out.tar')), { code: 'FC_ERR_BAD_NAME', message: `${what} is not valid UTF-8: ` }, what);
      await t.rejects(packToFile(join(dir, 'tree'), join(dir, 'out.tar')), { message: /sub\/(link -> )?bad\\xe9name/ }, `${what}: the bytes are shown`);
      await t.rejects(packToFile(join(dir, 'tree'), join(dir, 'out.tar'), { include: ['sub/*'] }), { code: 'FC_ERR_BAD_NAME' }, `${what}: also through an include glob`);
    } finally {
      // Removed by its bytes: the test directory's removal reads names as UTF-8 and cannot.
      unlinkSync(made);
    }
  });
}

for (const what of ['file name', 'symlink target']) {
  t.test(`a ${what} holding U+FFFD is refused by name at pack time: unpacking takes it for an invalid byte`, async (t) => {
    const dir = t.testdir({ tree: { sub: {} } });
    if (what === 'file name') writeFileSync(join(dir, 'tree/sub/caf\uFFFD.txt'), 'x');
    else symlinkSync('caf\uFFFD.txt', join(dir, 'tree/sub/link'));
    await t.rejects(packToFile(join(dir, 'tree'), join(dir, 'out.tar')), { code: 'FC_ERR_BAD_NAME', message: /sub\/(link -> )?caf\uFFFD\.txt.* holds U\+FFFD/ });
    // what it saves every machine from: the same name in a tar is refused on unpack
    const pack = tar.pack();
    pack.entry({ name: 'caf\uFFFD.txt' }, 'x');
    pack.finalize();
    await t.rejects(unpackTar(Readable.from(pack), join(dir, 'out')), { code: 'FC_ERR_BAD_NAME', message: /not valid UTF-8/ });
  });
}

t.test('U+FFFD is refused in a name as it would be written: after the rename rules', async (t) => {
  const dir = t.testdir({ tree: { 'cafe.txt': 'x', sub: {} } });
  writeFileSync(join(dir, 'tree/sub/caf\uFFFD.txt'), 'x');
  const root = join(dir, 'tree');
  await packToFile(root, join(dir, 'out.tar'), { include: ['sub'], rename: ['s,\uFFFD,e,'] });
  t.same(execFileSync('tar', ['-tf', join(dir, 'out.tar')], { encoding: 'utf8' }).trim().split('\n'), ['sub/', 'sub/cafe.txt'], 'a rename that takes it out packs it');
  await t.rejects(packToFile(root, join(dir, 'out.tar'), { include: ['cafe.txt'], rename: ['s,cafe,caf\uFFFD,'] }), { code: 'FC_ERR_BAD_NAME', message: /cafe\.txt would be packed as "caf\uFFFD\.txt" \(renamed by .*\), which unpacking refuses: holds U\+FFFD/ }, 'a rename that puts it in is refused');
});

t.test('a name the pack refuses (not UTF-8, U+FFFD) is left out like any other when excluded, as GNU tar leaves it out', async (t) => {
  const dir = t.testdir({ tree: { 'ok.txt': 'ok', sub: {} } });
  const root = join(dir, 'tree');
  const made = [Buffer.from(join(root, 'bad\xe9.tmp'), 'latin1'), Buffer.from(join(root, 'sub/caf\uFFFD.tmp')), Buffer.from(join(root, 'sub/bad\xe9.tmp'), 'latin1')];
  for (const file of made) writeFileSync(file, 'x');
  try {
    const names = async (rules: Parameters<typeof packToFile>[2]): Promise<string[]> => {
      await packToFile(root, join(dir, 'out.tar'), rules);
      return execFileSync('tar', ['-tf', join(dir, 'out.tar')], { encoding: 'utf8' }).trim().split('\n');
    };
    t.same(await names({ exclude: ['*.tmp'] }), ['ok.txt', 'sub/']);
    t.same(await names({ include: ['*'], exclude: ['*.tmp'] }), ['ok.txt', 'sub/'], 'also what an include glob matched');
    await t.rejects(names({ exclude: ['sub'] }), { code: 'FC_ERR_BAD_NAME', message: /bad\\xe9\.tmp/ }, 'refused when packed');
  } finally {
    for (const file of made) unlinkSync(file); // by its bytes: the test directory's removal reads names as UTF-8
  }
});

t.test('a small file whose size is not the one listed fails the pack by name', { skip: process.getuid?.() !== 0 && 'a bind mount needs root' }, async (t) => {
  // /proc/loadavg lists as 0 bytes and reads as a line: a file that changed between the
  // walk and the read, deterministically
  const dir = t.testdir({ tree: { 'ok.txt': 'fine\n', 'changing.txt': '' } });
  const target = join(dir, 'tree', 'changing.txt');
  execFileSync('mount', ['--bind', '/proc/loadavg', target]);
  // a file that times out ends without its finally: the mount must not outlive it
  const forget = undoAtExit(() => execFileSync('umount', ['-l', target]));
  try {
    await t.rejects(packToFile(join(dir, 'tree'), join(dir, 'out.tar')), { code: 'FC_ERR_SIZE_MISMATCH', message: /changing\.txt changed while it was packed \(it had 0 bytes when listed\)/ });
  } finally {
    forget();
    execFileSync('umount', [target]); // before the test directory is removed
  }
});

t.test('a regular file that is not one any more when opened (a symlink, a FIFO in its place) is a change, not an internal error', async (t) => {
  const dir = t.testdir({ 'listed.txt': 'listed\n' });
  const file = openListedFile(join(dir, 'listed.txt'));
  try {
    t.same(readSmallFile(file, join(dir, 'listed.txt')), Buffer.from('listed\n'), 'the file as listed reads');
  } finally {
    closeSync(file.fd);
  }
  symlinkSync('listed.txt', join(dir, 'link'));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  for (const name of ['link', 'fifo']) {
    t.throws(() => openListedFile(join(dir, name)), { code: 'FC_ERR_SIZE_MISMATCH', message: `${name} changed while it was packed` }, name);
  }
});

t.test('an abort stops a pack whose consumer has stopped reading', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'p');
  mkdirSync(root);
  for (let i = 0; i < 400; i++) writeFileSync(join(root, `f${i}`), randomBytes(4096));
  const ac = new AbortController();
  const { stream, done } = packTree(root, {}, ac.signal);
  stream.once('data', () => {
    stream.pause(); // and never resumed: the pack waits for room
    setTimeout(() => ac.abort(), 100);
  });
  const streamError = new Promise((resolve) => stream.once('error', resolve));
  const started = Date.now();
  await t.rejects(Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error('still packing 5 s after the abort')), 5000).unref())]), { name: 'AbortError' });
  t.ok(Date.now() - started < 3000, `rejected ${Date.now() - started} ms after the first block`);
  t.match(await streamError, { name: 'AbortError' });
});

t.test('a tar that cannot be written says so: a full disk is not an internal error of the pack', async (t) => {
  const dir = t.testdir({ p: { 'a.txt': 'a\n'.repeat(100_000) } });
  await t.rejects(packToFile(join(dir, 'p'), '/dev/full'), { code: 'FC_ERR_INSUFFICIENT_STORAGE', message: /^writing \/dev\/full: ENOSPC/ });
});

t.test('a path of the tree longer than PATH_MAX is refused by name (exit 2), not an internal error; excluded, it is left out', async (t) => {
  const dir = t.testdir({ tree: { 'ok.txt': 'ok' } });
  const root = join(dir, 'tree');
  // made one directory at a time, each relative to the last: no system call takes the whole path
  const name = 'd'.repeat(200);
  execFileSync('bash', ['-c', `cd "$1" && for i in $(seq 21); do mkdir ${name} && cd ${name}; done && echo x > leaf`, 'bash', root]);
  try {
    await t.rejects(packToFile(root, join(dir, 'out.tar')), { code: 'FC_ERR_BAD_NAME', message: new RegExp(`^packing ${root}: ${root}/${name}(/${name})+ is \\d+ bytes long, more than the 4095 a path may have \\(PATH_MAX\\)`) });
    await packToFile(root, join(dir, 'out.tar'), { exclude: [`${name}/${name}/${name}`] });
    t.same(execFileSync('tar', ['-tf', join(dir, 'out.tar')], { encoding: 'utf8' }).trim().split('\n'), [`${name}/`, `${name}/${name}/`, 'ok.txt']);
  } finally {
    execFileSync('rm', ['-rf', join(root, name)]); // GNU rm descends relative to each directory
  }
});

t.test('a consumer that closes the stream before the end leaves no pack waiting: done rejects', async (t) => {
  const root = treeOfManyBlocks(t).root;
  const { stream, done } = packTree(root);
  stream.once('data', () => stream.destroy());
  await t.rejects(Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error('still pending 5 s after the close')), 5000).unref())]), { message: /closed before the pack was complete/ });
});
