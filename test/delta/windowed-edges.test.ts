// The windowed encode at its edges: a window whose entries the base does not have, inputs
// that are not tars, an empty base or target, a base smaller than one segment, a file moved
// and edited in a base above one segment; and a base whose digest does not match, refused
// before the target is even opened. Every delta rebuilds the target through our decoder and
// through Debian's xdelta3 -d.
// Below one segment, windows of WINDOW (encodeDelta's windowBytes, for tests) rather than
// 16 MiB: the same plan and encode over a fifth of the data (two of these encodes of 17 and
// 20 MiB, and their round trips, were a third of this file's CPU). A 16 MiB window written
// as two 8 MiB VCDIFF windows is xdelta.test.ts's.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeToBuffer, inspectVcdiff } from '../helpers/delta.js';
import { DigestMismatchError } from '../../src/errors.js';
import { makeProject, packFiles, planOf, prng, roundTrips, sha256, text } from './trees.js';

const MiB = 2 ** 20;
const WINDOW = 2 * MiB;

t.test('a window with no matching source, and inputs that are not tars', async (t) => {
  const dir = t.testdir();
  const rand = prng(2);
  const v1 = makeProject(rand, 2 * MiB, 3);
  const v2 = new Map(v1);
  // a new directory, sorted first, over a window: nothing in the base for the first window
  // (repetitive: xdelta3 takes 0.1 s (level 1) to 1 s (level 9) per MiB of content that
  // matches nothing and does not repeat itself)
  for (let i = 0; i < 3; i++) v2.set(`a-new/file-${i}.js`, Buffer.alloc(MiB, `const file${i} = ${i};\n`));
  v2.set('a-new/notes.txt', text(rand, 100_000));
  await packFiles(join(dir, 'v1'), v1, join(dir, 'v1.tar'));
  await packFiles(join(dir, 'v2'), v2, join(dir, 'v2.tar'));
  // a base within one segment: every window is encoded against all of it (plan.test.ts
  // plans windows without counterparts against a larger one)
  const plan = await planOf(join(dir, 'v1.tar'), join(dir, 'v2.tar'), WINDOW);
  const baseSize = statSync(join(dir, 'v1.tar')).size;
  t.ok(plan.length >= 2 && plan.every((w) => w.sourceStart === 0 && w.sourceEnd === baseSize), `${plan.length} windows, each against the whole base`);
  const { vcdiff } = await encodeToBuffer({ path: join(dir, 'v1.tar') }, { path: join(dir, 'v2.tar') }, { windowBytes: WINDOW });
  t.same(await roundTrips(dir, join(dir, 'v1.tar'), join(dir, 'v2.tar'), vcdiff), { ours: true, native: true });

  // two plain files (no tar index), the base within one segment: windows each against all of
  // it, the bytes shifted by an insertion found
  const base = randomBytes(5 * MiB);
  const target = Buffer.concat([base.subarray(0, MiB), randomBytes(300_000), base.subarray(MiB, 3 * MiB), base.subarray(4 * MiB), Buffer.from('tail')]);
  writeFileSync(join(dir, 'base.bin'), base);
  writeFileSync(join(dir, 'target.bin'), target);
  const plain = await encodeToBuffer({ path: join(dir, 'base.bin') }, { path: join(dir, 'target.bin') }, { level: 1, windowBytes: WINDOW });
  t.ok(plain.windows >= 2, `${plain.windows} windows`);
  t.ok(plain.vcdiff.length < 400_000, `small delta (${plain.vcdiff.length} bytes, 300,000 of them new)`);
  t.same(await roundTrips(dir, join(dir, 'base.bin'), join(dir, 'target.bin'), plain.vcdiff), { ours: true, native: true });
});

t.test('empty base, empty target, a base smaller than one segment', async (t) => {
  const dir = t.testdir();
  const p = (name: string) => join(dir, name);
  const rand = prng(4);
  const small = makeProject(rand, MiB, 2);
  // 3 copies of the project under other names: found by content, over two windows
  const large = new Map(small);
  for (let k = 0; k < 3; k++) for (const [path, content] of small) large.set(`copy-${k}/${path}`, content);
  await packFiles(p('small'), small, p('small.tar'));
  await packFiles(p('large'), large, p('large.tar'));
  writeFileSync(p('empty'), '');

  const fromNothing = await encodeToBuffer({ path: p('empty') }, { path: p('small.tar') });
  t.same(await roundTrips(dir, p('empty'), p('small.tar'), fromNothing.vcdiff), { ours: true, native: true }, 'empty base');

  const toNothing = await encodeToBuffer({ path: p('small.tar') }, { path: p('empty') });
  t.same(inspectVcdiff(toNothing.vcdiff), { targetSize: 0, windows: 1, largestWindow: 0 }, 'one empty window, as xdelta3 writes it');
  t.same(await roundTrips(dir, p('small.tar'), p('empty'), toNothing.vcdiff), { ours: true, native: true }, 'empty target');

  const both = await encodeToBuffer({ path: p('empty') }, { path: p('empty') });
  t.same(await roundTrips(dir, p('empty'), p('empty'), both.vcdiff), { ours: true, native: true }, 'both empty');

  const grown = await encodeToBuffer({ path: p('small.tar') }, { path: p('large.tar') }, { windowBytes: WINDOW });
  t.ok(grown.windows >= 2, `${grown.windows} windows against a base of ${(statSync(p('small.tar')).size / MiB).toFixed(1)} MiB`);
  t.ok(grown.vcdiff.length < 20_000, `the copies are found (${grown.vcdiff.length} bytes for ${(statSync(p('large.tar')).size / MiB).toFixed(1)} MiB)`);
  t.same(await roundTrips(dir, p('small.tar'), p('large.tar'), grown.vcdiff), { ours: true, native: true }, 'base smaller than a segment');
});

t.test('a base above one segment: a file moved and edited, and a file split into one of another name, are encoded against their old places', async (t) => {
  const dir = t.testdir();
  const rand = prng(9);
  const v1 = makeProject(rand, 34 * MiB, 12);
  const original = text(rand, 2 * MiB);
  v1.set('zz-old/lib/big-module.js', original);
  const compiler = text(rand, MiB);
  v1.set('zz-old/lib/compiler.js', compiler);
  const v2 = new Map(v1);
  v2.delete('zz-old/lib/big-module.js');
  const edited = (b: Buffer) => Buffer.from(b.toString().replace(/a/, 'EDIT').replace(/e(?=[^e]*$)/, 'EDIT'));
  // two edits: neither its path nor its content is in the base, its name is (once)
  v2.set('aa-new/lib/big-module.js', edited(original));
  // compiler.js keeps a stub; its content, edited, went to a file whose name the base has not
  v2.set('zz-old/lib/compiler.js', Buffer.from('module.exports = require("../../aa-new/lib/_compiler.js");\n'));
  v2.set('aa-new/lib/_compiler.js', edited(compiler));
  await packFiles(join(dir, 'v1'), v1, join(dir, 'v1.tar'));
  await packFiles(join(dir, 'v2'), v2, join(dir, 'v2.tar'));
  t.ok(statSync(join(dir, 'v1.tar')).size > 32 * MiB, 'the base is above one segment');
  const { vcdiff } = await encodeToBuffer({ path: join(dir, 'v1.tar') }, { path: join(dir, 'v2.tar') });
  // sent as new data, the 2 MiB module took 373 KB of VCDIFF, the 1 MiB of _compiler.js 186 KB
  t.ok(vcdiff.length < 10_000, `a small delta (${vcdiff.length} bytes)`);
  t.same(await roundTrips(dir, join(dir, 'v1.tar'), join(dir, 'v2.tar'), vcdiff), { ours: true, native: true });
});

t.test('a base whose digest does not match is refused before anything is read of the target', async (t) => {
  const dir = t.testdir();
  const p = (name: string) => join(dir, name);
  await packFiles(p('proj'), makeProject(prng(5), 300_000, 2), p('base.tar'));
  const digest = `sha256:${await sha256(p('base.tar'))}`;
  const wrong = `sha256:${'0'.repeat(64)}`;
  const refused = encodeToBuffer({ path: p('base.tar'), digest: wrong }, { path: p('no-such-target') });
  await t.rejects(refused, DigestMismatchError, 'the mismatch, not the missing target');
  await t.rejects(refused, { code: 'FC_ERR_DIGEST_MISMATCH', message: new RegExp(`expected ${wrong}, got ${digest}`) });
  const ok = await encodeToBuffer({ path: p('base.tar'), digest }, { path: p('base.tar') });
  t.ok(ok.vcdiff.length < 100, `the right digest encodes (${ok.vcdiff.length} bytes)`);
  await t.rejects(encodeToBuffer({ path: p('base.tar') }, { path: p('base.tar'), digest: wrong }), { code: 'FC_ERR_DIGEST_MISMATCH' }, 'a target digest is checked too');
});
