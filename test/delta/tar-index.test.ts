// The tar index the windowed encoder plans with: entry offsets as tar-stream reads them, paths
// from pax and GNU long-name headers, content keys that find a renamed file, the same index
// whatever pieces the bytes come in, and no index at all for bytes that are not a tar.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTENT_KEY_MIN, indexTarBytes, TarIndexer } from '../../src/delta/tar-index.js';
import { packToFile } from '../../src/pack/packer.js';

t.test('a packer-made tar: offsets, long names, content keys', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'proj');
  const deep = `${'deep/'.repeat(30)}in-prefix-and-name.txt`; // ustar: prefix + name
  const long = `long/${'n'.repeat(120)}.txt`; // a component above 100 bytes: a pax header
  const same = randomBytes(5000);
  mkdirSync(join(root, deep, '..'), { recursive: true });
  mkdirSync(join(root, 'long'));
  writeFileSync(join(root, deep), 'deep\n');
  writeFileSync(join(root, long), 'long\n');
  writeFileSync(join(root, 'a.bin'), same);
  writeFileSync(join(root, 'b.txt'), 'tiny');
  writeFileSync(join(root, 'z.bin'), same);
  mkdirSync(join(root, 'empty'));
  symlinkSync('a.bin', join(root, 'link'));
  await packToFile(root, join(dir, 'p.tar'));
  const bytes = readFileSync(join(dir, 'p.tar'));

  const index = indexTarBytes(bytes);
  if (!index) throw new Error('no index');
  const listed = execFileSync('tar', ['-tf', join(dir, 'p.tar')], { encoding: 'utf8' }).trim().split('\n');
  t.same(index.entries.map((e) => e.path), listed, 'the entries tar lists, in order, long names included');
  for (const [name, content] of [[deep, 'deep\n'], [long, 'long\n'], ['a.bin', same], ['b.txt', 'tiny']] as const) {
    const e = index.entries.find((x) => x.path === name);
    t.same(e && bytes.subarray(e.dataStart, e.dataStart + content.length), Buffer.from(content), `${name}: its data where the index says`);
  }
  const longEntry = index.entries.find((e) => e.path === long);
  t.equal(longEntry && longEntry.dataStart - longEntry.start, 3 * 512, 'an entry starts at its pax header (header, pax data, header)');
  t.equal(index.entries.find((e) => e.path === deep)?.start, (index.entries.find((e) => e.path === deep)?.dataStart ?? 0) - 512, 'a ustar prefix needs no pax header');
  for (let i = 1; i < index.entries.length; i++) t.equal(index.entries[i]?.start, index.entries[i - 1]?.end, `entry ${i} follows entry ${i - 1}`);
  t.equal(index.entries[0]?.start, 0);

  const a = index.entries.find((e) => e.path === 'a.bin');
  const z = index.entries.find((e) => e.path === 'z.bin');
  t.ok(a?.contentKey && a.contentKey === z?.contentKey, 'identical files, one content key');
  t.equal(index.byContent.get(a?.contentKey as string)?.length, 2);
  t.equal(index.entries.find((e) => e.path === 'b.txt')?.contentKey, undefined, `below ${CONTENT_KEY_MIN} bytes: no key`);
  t.equal(index.entries.find((e) => e.path === 'link')?.contentKey, undefined, 'a symlink: no key');
  t.equal(index.byPath.get('a.bin'), index.entries.findIndex((e) => e.path === 'a.bin'));

  // the same index, whatever the pieces
  for (const piece of [1, 7, 511, 512, 4096, 100_000]) {
    const indexer = new TarIndexer();
    for (let at = 0; at < bytes.length; at += piece) indexer.update(bytes.subarray(at, at + piece));
    t.same(indexer.finish()?.entries, index.entries, `in pieces of ${piece} bytes`);
  }
});

t.test('GNU long names; what is not a tar has no index', async (t) => {
  const dir = t.testdir();
  const long = `${'x'.repeat(120)}/file.txt`;
  mkdirSync(join(dir, 'src', 'x'.repeat(120)), { recursive: true });
  writeFileSync(join(dir, 'src', long), 'gnu\n'.repeat(100));
  execFileSync('tar', ['--format=gnu', '-cf', join(dir, 'gnu.tar'), '-C', join(dir, 'src'), long]);
  const gnu = indexTarBytes(readFileSync(join(dir, 'gnu.tar')));
  t.same(gnu?.entries.map((e) => e.path), [long], 'the name from the ././@LongLink entry');
  t.equal(gnu?.entries[0]?.start, 0, 'the entry starts at its long-name header');

  t.equal(indexTarBytes(randomBytes(10_000)), undefined, 'random bytes');
  t.equal(indexTarBytes(Buffer.from('not a tar')), undefined, 'a short file');
  const cut = readFileSync(join(dir, 'gnu.tar')).subarray(0, 1500);
  t.equal(indexTarBytes(cut), undefined, 'a tar cut in the middle of an entry');
  const bad = Buffer.from(readFileSync(join(dir, 'gnu.tar')));
  bad[1024 + 10] = (bad[1024 + 10] as number) ^ 1; // in the entry's own header: its checksum no longer matches
  t.equal(indexTarBytes(bad), undefined, 'a corrupt header');
  t.same(indexTarBytes(Buffer.alloc(0))?.entries, [], 'an empty file: an empty tar');
});

t.test('pax record lengths count bytes: a non-ASCII name is read whole, and the records after it', async (t) => {
  const dir = t.testdir({ src: { 'été-ünïcødé.txt': 'hi\n', 'b.txt': 'b\n' } });
  const file = join(dir, 'pax.tar');
  // GNU tar's pax format: path=, then mtime=, atime=, ctime= records in one header
  execFileSync('tar', ['--format=pax', '-cf', file, '-C', join(dir, 'src'), 'été-ünïcødé.txt', 'b.txt']);
  t.match(readFileSync(file).toString('latin1'), /\d+ path=.*\n\d+ mtime=/, 'the path record has records after it');
  t.same(indexTarBytes(readFileSync(file))?.entries.map((e) => e.path), ['été-ünïcødé.txt', 'b.txt']);
});
