// Content sources (src/delta/similar.ts) on real tars: the base files a new file took its
// content from are found wherever that content moved to, most shared first; a base file
// that shares too little, or a file of new content, finds nothing.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { OpenInput } from '../../src/delta/delta-input.js';
import { contentSources } from '../../src/delta/similar.js';
import type { TarEntry } from '../../src/delta/tar-index.js';
import { packFiles, type Files } from './trees.js';

const KiB = 1024;
/** Text no other file shares by chance (as random bytes, but printable). */
const unique = (size: number): Buffer => Buffer.from(randomBytes(size).toString('base64').slice(0, size));

t.test('the base files a new file shares content with, most first, wherever it moved', async (t) => {
  const dir = t.testdir();
  const server = unique(256 * KiB);
  const compiler = unique(128 * KiB);
  const license = unique(8 * KiB);
  const base: Files = new Map([
    ['lib/server.js', server],
    ['lib/compiler.js', compiler],
    ['lib/other.js', unique(200 * KiB)],
    // shares the new file's first 8 KiB only: under an eighth of its samples
    ['lib/license.js', license],
  ]);
  const target: Files = new Map([
    // compiler and server merged, behind a new header, with an edit in the middle of each
    ['lib/merged.js', Buffer.concat([license, Buffer.from('// merged\n'), compiler.subarray(0, 60 * KiB), Buffer.from('EDIT'), compiler.subarray(60 * KiB), server.subarray(0, 100 * KiB), Buffer.from('EDIT'), server.subarray(100 * KiB)])],
    ['lib/new.js', unique(64 * KiB)],
  ]);
  await packFiles(join(dir, 'base'), base, join(dir, 'base.tar'));
  await packFiles(join(dir, 'target'), target, join(dir, 'target.tar'));
  const b = await OpenInput.open({ path: join(dir, 'base.tar') }, 'base');
  const n = await OpenInput.open({ path: join(dir, 'target.tar') }, 'target');
  t.teardown(() => Promise.all([b.close(), n.close()]));
  const entry = (input: OpenInput, path: string): TarEntry => input.index?.entries.find((e) => e.path.endsWith(path)) as TarEntry;
  const merged = entry(n, 'lib/merged.js');
  const fresh = entry(n, 'lib/new.js');
  const sources = await contentSources(b, n, [merged, fresh]);
  t.same(sources.get(merged)?.map((e) => e.path.replace(/^.*lib\//, '')), ['server.js', 'compiler.js'], 'the server (more of it) first, then the compiler; not the license, nor the other');
  t.notOk(sources.has(fresh), 'new content finds nothing');
  t.equal((await contentSources(b, n, [])).size, 0, 'nothing asked, nothing read');
});
