import t from 'tap';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { addToManifest, droppedReason, formatManifest, hashFile, parseManifest, readManifest } from '../../src/assets/manifest.js';
import { ConfigError } from '../../src/errors.js';
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
    [`"filename": "a", "size": 1, "algorithm": "sha512", "digest": "${D2}"`, /filename "a" is already used by record 0, with another size, digest, unpack or visibility/],
    [`"filename": "a", "size": 1, "algorithm": "sha512", "digest": "${D1}", "unpack": true`, /filename "a" is already used by record 0/],
    // an upload fixes visibility for good: a record asking internal is never dropped for another
    [`"filename": "a", "size": 1, "algorithm": "sha512", "digest": "${D1}", "visibility": "internal"`, /filename "a" is already used by record 0, with another size, digest, unpack or visibility/],
  ];
  for (const [extra, re] of cases) {
    const err = t.throws(() => parseManifest(rec(extra), 'm.tt')) as ConfigError;
    t.type(err, ConfigError);
    t.match(err.message, re);
    t.equal(err.line, 3);
  }
  const repeated = parseManifest(rec(`"filename": "a", "size": 1, "algorithm": "sha512", "digest": "${D1}", "version": "another"`), 'm.tt');
  t.equal(repeated.records.length, 1, 'a record repeated with the same content is used once, as tooltool fetches it twice');
  t.same(repeated.warnings, ['m.tt:3: record 1: filename "a" repeats record 0: used once']);
  t.throws(() => parseManifest('{"filename": "a"}', 'm.tt'), /m\.tt:1: invalid manifest: expected a JSON array/);
  t.throws(() => parseManifest('[\n{"a": 1},\n{', 'm.tt'), /^m\.tt(:\d+)?: invalid manifest/);
});

t.test('elements that are not objects are dropped, not fatal; any version is accepted (tooltool never reads it)', async (t) => {
  const text = `[
  1,
  "toolchain.tar.gz",
  null,
  [{"filename": "nested.bin", "size": 1, "algorithm": "sha512", "digest": "${D1}"}],
  true,
  {"filename": "a", "size": 1, "algorithm": "sha512", "digest": "${D1}", "version": 3},
  {"filename": "b", "size": 1, "algorithm": "sha512", "digest": "${D2}", "version": {"major": 1}},
  {"filename": "c", "size": 1, "algorithm": "sha512", "digest": "${D2}", "version": "c 1.0"}
]`;
  const m = parseManifest(text, 'm.tt');
  t.same(m.records, [
    { filename: 'a', size: 1, algorithm: 'sha512', digest: D1, unpack: false, version: 3 },
    { filename: 'b', size: 1, algorithm: 'sha512', digest: D2, unpack: false, version: { major: 1 } },
    { filename: 'c', size: 1, algorithm: 'sha512', digest: D2, unpack: false, version: 'c 1.0' },
  ], 'a version that is not a string is kept as given (add writes it back, as tooltool)');
  const all = ['filename', 'size', 'algorithm', 'digest'];
  t.same(m.dropped, [0, 1, 2, 3, 4].map((index) => ({ index, line: index + 2, missing: all, notObject: true })), 'each non-object element dropped, with its line');
  t.same(m.dropped.map(droppedReason), Array(5).fill('is not an object'));
  t.same(droppedReason({ index: 0, line: 1, missing: ['size', 'digest'] }), 'lacks size, digest');
  t.same(parseManifest('[]', 'm.tt'), { records: [], invalid: [], dropped: [], warnings: [] });
  t.throws(() => parseManifest('[1, {"filename": "a/b", "size": 1, "algorithm": "sha512", "digest": "x"}]', 'm.tt'), /record 1: filename "a\/b" must not contain/, 'a bad filename still fails the whole manifest');
});

t.test('add writes a tooltool-shaped manifest; re-adding is a no-op; a different file is refused', async (t) => {
  const dir = t.testdir({ 'tool.tar.gz': 'archive bytes', 'blob.bin': 'blob', other: { 'blob.bin': 'different' } });
  const manifest = join(dir, 'manifest.tt');
  const { added } = await addToManifest(manifest, [join(dir, 'tool.tar.gz')], { unpack: true, visibility: 'internal', version: 'v1' });
  t.equal(added.length, 1);
  await addToManifest(manifest, [join(dir, 'blob.bin')]);
  const text = await readFile(manifest, 'utf8');
  t.equal(text, formatManifest((await readManifest(manifest)).records), 'round trip is stable');
  const parsed = JSON.parse(text) as Record<string, unknown>[];
  t.same(Object.keys(parsed[1]!), ['filename', 'size', 'algorithm', 'digest', 'unpack', 'version', 'visibility'], 'key order as tooltool writes it');
  t.same(parsed[0], { filename: 'blob.bin', size: 4, algorithm: 'sha512', digest: sha512('blob') }, 'no visibility unless given, as tooltool\'s add writes it');
  t.same(await addToManifest(manifest, [join(dir, 'blob.bin')]), { added: [], notAdded: [`blob.bin: already in ${manifest}, not added`] }, 'same file again adds nothing');
  const before = await readFile(manifest, 'utf8');
  t.match(await addToManifest(manifest, [join(dir, 'other', 'blob.bin')]), { added: [], notAdded: [/already has a different file named "blob\.bin"/] }, 'a different file is refused');
  t.equal(await readFile(manifest, 'utf8'), before, 'its record as it was');
  await t.rejects(addToManifest(manifest, [join(dir, 'missing')]), /cannot read/);
  await writeFile(join(dir, 'bad.tt'), '[{"filename": 3, "size": 1, "algorithm": "sha512", "digest": "x"}]');
  await t.rejects(addToManifest(join(dir, 'bad.tt'), [join(dir, 'blob.bin')]), ConfigError, 'a broken manifest is not overwritten');
});

t.test("add keeps every other record's version as tooltool writes it back: any true value as given, a false one left out", async (t) => {
  const dir = t.testdir({ 'new.bin': 'new' });
  const manifest = join(dir, 'manifest.tt');
  const rec = (name: string, digest: string, version: unknown): Record<string, unknown> => ({ filename: name, size: 1, algorithm: 'sha512', digest, version });
  const versions: [string, unknown][] = [['number', 4.9], ['object', { major: 1 }], ['list', ['gcc', 9]], ['flag', true], ['text', 'gcc 9'], ['empty', ''], ['zero', 0], ['none', {}]];
  await writeFile(manifest, JSON.stringify(versions.map(([name, v], i) => rec(name, i % 2 ? D1 : D2, v))));
  await addToManifest(manifest, [join(dir, 'new.bin')]);
  const written = JSON.parse(await readFile(manifest, 'utf8')) as Record<string, unknown>[];
  t.same(written.map((r) => [r.filename, r.version]), [['new.bin', undefined], ...versions.map(([name, v]) => [name, ['', 0].includes(v as string) || JSON.stringify(v) === '{}' ? undefined : v])]);
  t.same(written.slice(1).map((r) => 'version' in r), [true, true, true, true, true, false, false, false], 'a false version is left out, as tooltool\'s `if obj.version`');
  // tooltool compares versions too: re-adding the file with another label is refused
  await writeFile(join(dir, 'number'), 'x');
  await writeFile(manifest, JSON.stringify([{ filename: 'number', size: 1, algorithm: 'sha512', digest: sha512('x'), visibility: 'public', version: 4.9 }]));
  t.match(await addToManifest(manifest, [join(dir, 'number')], { visibility: 'public', version: '4.9' }), { added: [], notAdded: [/version 4\.9, not visibility public, version "4\.9"/] });
});

t.test('null optional fields are absent, as tooltool reads them (obj.get → None)', async (t) => {
  const text = `[\n  {"filename": "a", "size": 1, "algorithm": "sha512", "digest": "${D1}", "unpack": null, "visibility": null, "version": null}\n]`;
  const m = parseManifest(text, 'm.tt');
  t.same(m.records, [{ filename: 'a', size: 1, algorithm: 'sha512', digest: D1, unpack: false }]);
});

t.test("fetch takes any hashlib name, Python's spelling included", async (t) => {
  const data = 'payload';
  const cases: [string, string][] = [
    ['sha3_256', createHash('sha3-256').update(data).digest('hex')],
    ['sha512_256', createHash('sha512-256').update(data).digest('hex')],
    ['blake2b', createHash('blake2b512').update(data).digest('hex')],
    ['blake2s', createHash('blake2s256').update(data).digest('hex')],
    ['SHA512', sha512(data)],
  ];
  const dir = t.testdir({ 'payload.bin': data });
  for (const [algorithm, digest] of cases) {
    const m = parseManifest(JSON.stringify([{ filename: 'payload.bin', size: data.length, algorithm, digest }]), 'm.tt');
    t.equal(m.records[0]!.algorithm, algorithm, `${algorithm}: kept as written (it is the URL's path segment)`);
    t.same(await hashFile(join(dir, 'payload.bin'), algorithm), { size: data.length, digest }, `${algorithm}: hashed like hashlib`);
  }
  t.throws(() => parseManifest(JSON.stringify([{ filename: 'a', size: 1, algorithm: 'shake_128', digest: D1.slice(0, 32) }]), 'm.tt'), /algorithm "shake_128" is not a known hash algorithm/, 'shake has no fixed length (hashlib cannot hexdigest it either)');
});

t.test('re-adding a file with another visibility or version is refused, not silently ignored', async (t) => {
  // tooltool compares visibility and version too, and fails ("already contains a different file").
  const dir = t.testdir({ 'notes.txt': 'notes' });
  const manifest = join(dir, 'manifest.tt');
  await addToManifest(manifest, [join(dir, 'notes.txt')], { visibility: 'internal', version: 'v1' });
  t.match(await addToManifest(manifest, [join(dir, 'notes.txt')], { visibility: 'public', version: 'v1' }), { added: [], notAdded: [/already has "notes\.txt" with visibility internal/] });
  t.match(await addToManifest(manifest, [join(dir, 'notes.txt')], { visibility: 'internal', version: 'v2' }), { added: [], notAdded: [/version "v1"/] });
  t.same((await addToManifest(manifest, [join(dir, 'notes.txt')], { visibility: 'internal', version: 'v1' })).added, [], 'the same record again: no-op');
  t.match((await readManifest(manifest)).records, [{ filename: 'notes.txt', visibility: 'internal', version: 'v1' }]);
});

t.test('unpack by Python truth and any visibility, as tooltool reads them, each with a warning; add writes an odd visibility back', async (t) => {
  const rec = (name: string, digest: string, extra: string): string => `  {"filename": "${name}", "size": 1, "algorithm": "sha512", "digest": "${digest}", ${extra}}`;
  const text = `[\n${[
    rec('a', D1, '"unpack": "yes", "visibility": "Internal"'),
    rec('b', D2, '"unpack": "false"'),
    rec('c', D1, '"unpack": 0, "visibility": 7'),
    rec('d', D2, '"unpack": [], "visibility": "public"'),
  ].join(',\n')}\n]`;
  const m = parseManifest(text, 'm.tt');
  t.same(m.records, [
    { filename: 'a', size: 1, algorithm: 'sha512', digest: D1, unpack: true, otherVisibility: 'Internal' },
    { filename: 'b', size: 1, algorithm: 'sha512', digest: D2, unpack: true },
    { filename: 'c', size: 1, algorithm: 'sha512', digest: D1, unpack: false, otherVisibility: 7 },
    { filename: 'd', size: 1, algorithm: 'sha512', digest: D2, unpack: false, visibility: 'public' },
  ], 'a non-empty string (even "false") is true; 0 and [] are false');
  t.same(m.warnings, [
    'm.tt:2: record 0: unpack "yes" is not true or false: taken as true, as tooltool (Python) takes it',
    'm.tt:2: record 0: visibility "Internal" is neither "public" nor "internal": fetch does not use it, as tooltool; upload refuses it',
    'm.tt:3: record 1: unpack "false" is not true or false: taken as true, as tooltool (Python) takes it',
    'm.tt:4: record 2: unpack 0 is not true or false: taken as false, as tooltool (Python) takes it',
    'm.tt:4: record 2: visibility 7 is neither "public" nor "internal": fetch does not use it, as tooltool; upload refuses it',
    'm.tt:5: record 3: unpack [] is not true or false: taken as false, as tooltool (Python) takes it',
  ]);
  t.same(parseManifest(`[\n${rec('e', D1, '"unpack": true, "visibility": "internal"')}\n]`, 'm.tt').warnings, [], 'no warning for the values tooltool writes');

  const dir = t.testdir({ 'm.tt': text, 'new.bin': 'new' });
  await addToManifest(join(dir, 'm.tt'), [join(dir, 'new.bin')]);
  const written = JSON.parse(await readFile(join(dir, 'm.tt'), 'utf8')) as Record<string, unknown>[];
  t.same(written.map((r) => [r.filename, r.unpack, r.visibility]), [
    ['new.bin', undefined, undefined],
    ['a', true, 'Internal'],
    ['b', true, undefined],
    ['c', undefined, 7],
    ['d', undefined, 'public'],
  ], 'the old records as tooltool writes them back: unpack as true or absent, visibility as given');
});
