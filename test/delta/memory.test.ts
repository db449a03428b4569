// How much wasm memory an xdelta3 encode gets: xdelta3 rounds the base (its one source
// window) up to a power of two before sizing the source checksum table, so the table of a
// base just above a power of two is twice what base/step suggests. Underestimating it made
// every encode of a 200-255 MiB or 257-511 MiB tar at level 9 fail with ENOMEM.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeVcdiffToFile } from '../../src/delta/vcdiff-decode.js';
import { chooseLevel, defaultLevel, encodeDelta, encodeMemoryNeed, largeTableBytes, MAX_BASE_BYTES } from '../../src/delta/xdelta.js';
import { MAX_MEMORY_BYTES, Xd3Instance } from '../../src/delta/wasm.js';

const MiB = 2 ** 20;

t.test('the source table is sized from the base rounded up to a power of two', async (t) => {
  // level 9: one 4-byte slot per 2 bytes of the rounded window
  t.equal(largeTableBytes(200 * MiB, 9), 512 * MiB, '200 MiB base: window 256 MiB');
  t.equal(largeTableBytes(256 * MiB, 9), 512 * MiB, 'exactly 256 MiB');
  t.equal(largeTableBytes(256 * MiB + 1, 9), 1024 * MiB, 'one byte more: window 512 MiB');
  t.equal(largeTableBytes(300 * MiB, 1), 64 * MiB, 'level 1: step 26');
  t.ok(encodeMemoryNeed(300 * MiB, 300 * MiB, 9) > 300 * 3 * MiB + 1024 * MiB, '300 MiB tars at level 9 reserve the 1 GiB table');
});

t.test('level choice at the 4 GiB boundary', async (t) => {
  t.equal(MAX_MEMORY_BYTES, 4 * 1024 * MiB - 65536, "one page below 4 GiB: the module's heap size wraps at 4 GiB");
  t.equal(chooseLevel(300 * MiB, 300 * MiB, 9), 9, 'a 300 MiB project keeps level 9');
  // 1 GiB + 1 GiB: level 9 needs a 2 GiB table, level 6 a 1 GiB one; level 5 (512 MiB) fits
  t.ok(encodeMemoryNeed(1024 * MiB, 1024 * MiB, 6) > MAX_MEMORY_BYTES);
  t.ok(encodeMemoryNeed(1024 * MiB, 1024 * MiB, 5) <= MAX_MEMORY_BYTES);
  t.equal(chooseLevel(1024 * MiB, 1024 * MiB, 9), 5);
  // a limit between the needs of two levels picks the lower one
  const need9 = encodeMemoryNeed(300 * MiB, 300 * MiB, 9);
  t.equal(chooseLevel(300 * MiB, 300 * MiB, 9, need9), 9);
  t.equal(chooseLevel(300 * MiB, 300 * MiB, 9, need9 - 1), 6);
  t.throws(() => chooseLevel(MAX_BASE_BYTES + 1, 1, 9), { code: 'FC_ERR_DELTA', message: /32-bit offsets/ }, 'a base above 2 GiB would hang xdelta3');
});

t.test('the default level falls with the base size (level 9 time grows faster than the base)', async (t) => {
  t.equal(defaultLevel(0), 9);
  t.equal(defaultLevel(64 * MiB), 9);
  t.equal(defaultLevel(64 * MiB + 1), 6);
  t.equal(defaultLevel(256 * MiB), 6);
  t.equal(defaultLevel(256 * MiB + 1), 4);
});

t.test('an instance of the largest size can allocate (all 65536 pages could not)', async (t) => {
  const xd = await Xd3Instance.create(MAX_MEMORY_BYTES);
  t.ok(xd.alloc(64 * MiB, 'probe').ptr > 0);
  t.throws(() => xd.alloc(2 ** 32, 'probe'), { code: 'FC_ERR_DELTA', message: /cannot allocate/ }, 'a 4 GiB malloc is refused, not wrapped to 0');
});

t.test('real encode just above a power of two (129 MiB base) at level 9', async (t) => {
  const base = randomBytes(129 * MiB);
  const target = Buffer.concat([base.subarray(0, MiB), Buffer.from('edit'), base.subarray(MiB + 10, 2 * MiB)]);
  const { vcdiff, level } = await encodeDelta(base, target, { level: 9 });
  t.equal(level, 9);
  t.ok(vcdiff.length < 1000, `small delta (${vcdiff.length} bytes)`);
  const dir = t.testdir();
  writeFileSync(join(dir, 'base'), base);
  await decodeVcdiffToFile(join(dir, 'base'), vcdiff, join(dir, 'out'));
  t.same(readFileSync(join(dir, 'out')), target);
});
