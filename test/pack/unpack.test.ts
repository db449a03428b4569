import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { safeEntryPath, unpackTar } from '../../src/pack/unpack.js';

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
  for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a/..', '', '.', 'C:/x', 'a\\b', 'a\0b']) {
    t.throws(() => safeEntryPath(bad), { code: 'FC_ERR_BAD_NAME' }, JSON.stringify(bad));
  }
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
  await t.rejects(unpackTar(await tarOf(entries), out), /EEXIST/);
  t.same(readdirSync(out), ['x']);
});
