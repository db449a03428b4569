import t from 'tap';
import { chmodSync, existsSync, readdirSync, statSync } from 'node:fs';
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
  t.equal(statSync(join(dir, 'out', 'f')).mode & 0o777, 0o644, 'the file keeps its mode');
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
