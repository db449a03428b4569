import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { addToManifest, formatManifest, parseManifest, readManifest } from '../../src/assets/manifest.js';
import { ConfigError, UsageError } from '../../src/errors.js';
import { sha512 } from './helpers.js';

const D1 = sha512('one');
const D2 = sha512('two');

t.test('parses the spec example shape and keeps tooltool quirks', async (t) => {
  const text = `[
  {
    "filename": "toolchain.tar.gz",
    "size": 248,
    "algorithm": "sha512",
    "digest": "${D1}",
    "unpack": true,
    "version": "toolchain 1.0",
    "visibility": "internal",
    "setup": "legacy.sh"
  },
  {
    "filename": "nosize.bin",
    "algorithm": "sha512",
    "digest": "${D2}"
  },
  { "filename": "blob.bin", "size": null, "algorithm": "sha256", "digest": "${sha512('x').slice(0, 64)}" }
]`;
  const m = parseManifest(text, 'm.tt');
  t.equal(m.records.length, 2);
  t.same(m.records[0], { filename: 'toolchain.tar.gz', size: 248, algorithm: 'sha512', digest: D1, unpack: true, visibility: 'internal', version: 'toolchain 1.0' });
  t.equal(m.records[1]!.size, null, 'size null is kept (no size check)');
  t.equal(m.records[1]!.algorithm, 'sha256');
  t.same(m.dropped, [{ index: 1, line: 12, missing: ['size'] }], 'a record missing a required key is dropped, with its line');
});

t.test('errors name file, line and field', async (t) => {
  const rec = (extra: string) => `[\n  {"filename": "a", "size": 1, "algorithm": "sha512", "digest": "${D1}"},\n  {${extra}}\n]`;
  const cases: [string, RegExp][] = [
    [`"filename": "a/b", "size": 1, "algorithm": "sha512", "digest": "${D1}"`, /^m\.tt:3: record 1: filename "a\/b" must not contain/],
    [`"filename": "b", "size": -1, "algorithm": "sha512", "digest": "${D1}"`, /^m\.tt:3: record 1: size must be/],
    [`"filename": "b", "size": 1, "algorithm": "nope", "digest": "${D1}"`, /^m\.tt:3: record 1: algorithm "nope" is not a known/],
    [`"filename": "b", "size": 1, "algorithm": "sha512", "digest": "${D1.toUpperCase()}"`, /^m\.tt:3: record 1: digest must be 128 lowercase hex/],
    [`"filename": "b", "size": 1, "algorithm": "sha512", "digest": "${D1.slice(2)}"`, /digest must be 128/],
    [`"filename": "b", "size": 1, "algorithm": "sha512", "digest": "${D1}", "visibility": "secret"`, /^m\.tt:3: record 1: visibility must be/],
    [`"filename": "b", "size": 1, "algorithm": "sha512", "digest": "${D1}", "unpack": "yes"`, /unpack must be true or false/],
    [`"filename": "a", "size": 1, "algorithm": "sha512", "digest": "${D1}"`, /filename "a" is already used by record 0/],
  ];
  for (const [extra, re] of cases) {
    const err = t.throws(() => parseManifest(rec(extra), 'm.tt')) as ConfigError;
    t.type(err, ConfigError);
    t.match(err.message, re);
    t.equal(err.line, 3);
  }
  t.throws(() => parseManifest('{"filename": "a"}', 'm.tt'), /m\.tt:1: invalid manifest: expected a JSON array/);
  t.throws(() => parseManifest('[\n{"a": 1},\n{', 'm.tt'), /^m\.tt(:\d+)?: invalid manifest/);
  t.throws(() => parseManifest('[1]', 'm.tt'), /record 0: must be an object/);
});

t.test('add writes a tooltool-shaped manifest; re-adding is a no-op; a different file is refused', async (t) => {
  const dir = t.testdir({ 'tool.tar.gz': 'archive bytes', 'blob.bin': 'blob', other: { 'blob.bin': 'different' } });
  const manifest = join(dir, 'manifest.tt');
  const added = await addToManifest(manifest, [join(dir, 'tool.tar.gz')], { unpack: true, visibility: 'internal', version: 'v1' });
  t.equal(added.length, 1);
  await addToManifest(manifest, [join(dir, 'blob.bin')]);
  const text = await readFile(manifest, 'utf8');
  t.equal(text, formatManifest((await readManifest(manifest)).records), 'round trip is stable');
  const parsed = JSON.parse(text) as Record<string, unknown>[];
  t.same(Object.keys(parsed[0]!), ['filename', 'size', 'algorithm', 'digest', 'unpack', 'version', 'visibility'], 'key order as tooltool writes it');
  t.same(parsed[1], { filename: 'blob.bin', size: 4, algorithm: 'sha512', digest: sha512('blob'), visibility: 'public' });
  t.same(await addToManifest(manifest, [join(dir, 'blob.bin')]), [], 'same file again adds nothing');
  await t.rejects(addToManifest(manifest, [join(dir, 'other', 'blob.bin')]), UsageError);
  await t.rejects(addToManifest(manifest, [join(dir, 'missing')]), /cannot read/);
  await writeFile(join(dir, 'bad.tt'), '[{"filename": 3, "size": 1, "algorithm": "sha512", "digest": "x"}]');
  await t.rejects(addToManifest(join(dir, 'bad.tt'), [join(dir, 'blob.bin')]), ConfigError, 'a broken manifest is not overwritten');
});
