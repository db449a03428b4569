// Names the packer must never put in a tar: an included path twice (nested includes), or a
// rename result every machine refuses on unpack.
import t from 'tap';
import { createReadStream, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { packToFile } from '../../src/pack/packer.js';
import { checkTar, unpackTar } from '../../src/pack/unpack.js';

async function names(file: string): Promise<string[]> {
  const out: string[] = [];
  const extract = tar.extract();
  createReadStream(file).pipe(extract);
  for await (const entry of extract) {
    out.push(entry.header.name);
    entry.resume();
  }
  return out;
}

t.test('an include nested under another include is packed once', async (t) => {
  const dir = t.testdir({ proj: { a: { b: { 'f.txt': 'f\n' }, 'g.txt': 'g\n' }, 'a-x': { 'h.txt': 'h\n' } } });
  const file = join(dir, 'x.tar');
  await packToFile(join(dir, 'proj'), file, { include: ['a', 'a/b', 'a/b/f.txt', 'a-x', 'a/*'] });
  t.same(await names(file), ['a/', 'a/b/', 'a/b/f.txt', 'a/g.txt', 'a-x/', 'a-x/h.txt']);
  const { entries } = await unpackTar(createReadStream(file), join(dir, 'out'));
  t.equal(entries, 6, 'unpacks');
});

t.test('a rename giving a name unpacking refuses is refused at pack time', async (t) => {
  const dir = t.testdir({ proj: { 'f.txt': 'f\n', 'g.txt': 'g\n' } });
  const pack = (rename: string[]) => packToFile(join(dir, 'proj'), join(dir, 'x.tar'), { rename });
  await t.rejects(pack(['s,^,../,']), { code: 'FC_ERR_BAD_NAME', message: /f\.txt would be packed as "\.\.\/f\.txt" \(renamed by s,\^,\.\.\/,\).*escapes/ });
  await t.rejects(pack(['s,^,/abs/,']), { code: 'FC_ERR_BAD_NAME', message: /"\/abs\/f\.txt".*absolute/ });
  await t.rejects(pack(['s,.*,,']), { code: 'FC_ERR_BAD_NAME', message: /empty name/ });
  await t.rejects(pack(['s,.*,same,']), { code: 'FC_ERR_BAD_NAME', message: /g\.txt would be packed as "same".*already in the tar/ });
  await pack(['s,^,proj/,']);
  t.same(await names(join(dir, 'x.tar')), ['proj/f.txt', 'proj/g.txt']);
});

t.test('a rename giving a file name longer than 255 bytes (a deep tree flattened) is refused at pack time, not by every machine', async (t) => {
  const deep = Array.from({ length: 16 }, (_, i) => `component-number-${i}`).join('/');
  const dir = t.testdir({ proj: {} });
  mkdirSync(join(dir, 'proj', deep), { recursive: true });
  writeFileSync(join(dir, 'proj', deep, 'leaf.txt'), 'leaf\n');
  await t.rejects(packToFile(join(dir, 'proj'), join(dir, 'x.tar'), { rename: ['s,/,_,g'] }), {
    code: 'FC_ERR_BAD_NAME',
    message: /^component-number-0(\/component-number-\d+)+ would be packed as "component-number-0(_component-number-\d+)+" \(renamed by s,\/,_,g\), which unpacking refuses: .* more than the 255/,
  });
});

t.test('a rename giving a path longer than PATH_MAX (4095 bytes) is refused at pack time, not by every machine', async (t) => {
  const dir = t.testdir({ proj: { 'f.txt': 'f\n' } });
  const prefix = Array.from({ length: 20 }, () => 'p'.repeat(200)).join('/'); // 4019 bytes, each name under 255
  await t.rejects(packToFile(join(dir, 'proj'), join(dir, 'x.tar'), { rename: [`s,^,${prefix}/${'q'.repeat(70)}/,`] }), {
    code: 'FC_ERR_BAD_NAME',
    message: /^f\.txt would be packed as "p+(\/p+)*\/q+\/f\.txt" \(renamed by .*\), which unpacking refuses: it is 4096 bytes long, more than the 4095 a path may have \(PATH_MAX\)$/,
  });
  await packToFile(join(dir, 'proj'), join(dir, 'x.tar'), { rename: [`s,^,${prefix}/${'q'.repeat(69)}/,`] });
  t.same(await checkTar(createReadStream(join(dir, 'x.tar'))), { entries: 1 }, '4095 bytes: packed, and a tar machines take');
});

t.test('a rename giving a symlink target longer than PATH_MAX is refused at pack time; unpacking refuses it by name, not ENAMETOOLONG', async (t) => {
  const dir = t.testdir({ proj: { 'f.txt': 'f\n' } });
  symlinkSync('f.txt', join(dir, 'proj', 'link'));
  const prefix = `${'p'.repeat(4090)}/`; // targets are no paths to unpack: a name over 255 bytes is theirs to have
  await t.rejects(packToFile(join(dir, 'proj'), join(dir, 'x.tar'), { rename: [`s,^,${prefix},R`] }), {
    code: 'FC_ERR_BAD_NAME',
    message: /^link -> f\.txt would be packed with the target "p+\/f\.txt" \(renamed by .*\), which unpacking refuses: its symlink target is 4096 bytes long, more than the 4095 a path may have \(PATH_MAX\)$/,
  });
  const pack = tar.pack();
  pack.entry({ name: 'link', type: 'symlink', linkname: `${prefix}f.txt` });
  pack.finalize();
  await t.rejects(unpackTar(Readable.from(pack), join(dir, 'out')), { code: 'FC_ERR_BAD_NAME', message: /tar entry "link" refused: its symlink target is 4096 bytes long/ });
});
