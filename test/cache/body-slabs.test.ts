// BodySlabs: the small bodies a cache holds in memory, copied into shared slabs. What is
// handed out is never written again, the budget bounds the slabs themselves, and a slab
// goes with its last body.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { BodySlabs } from '../../src/cache/body-slabs.js';

const SLAB = 64 * 1024;

t.test('copies hold the bytes given, in shared slabs, and are never written again while the slabs fill', async (t) => {
  const slabs = new BodySlabs(4 * SLAB, SLAB);
  const bodies = Array.from({ length: 40 }, (_, i) => randomBytes(4096 + i));
  const expected = bodies.map((b) => Buffer.from(b));
  const copies = bodies.map((b) => slabs.hold(b)!);
  t.equal(new Set(copies.map((c) => c.buffer)).size, 3, '40 bodies of about 4 KiB in three 64 KiB slabs');
  t.equal(slabs.bytes, 3 * SLAB);
  for (const b of bodies) b.fill(0);
  // released bodies leave their room unused: what was handed out may still be queued on a socket
  for (const c of copies.slice(0, 20)) slabs.release(c);
  for (let i = 0; i < 10; i++) slabs.hold(randomBytes(4096));
  t.ok(copies.every((c, i) => c.equals(expected[i]!)), 'every copy, released or not, still holds its body\'s bytes');
});

t.test('the budget counts whole slabs: a hold past it is refused, and room comes back with a slab\'s last body', async (t) => {
  const slabs = new BodySlabs(2 * SLAB, SLAB);
  const first = Array.from({ length: 16 }, () => slabs.hold(Buffer.alloc(4096, 1))!);
  const second = Array.from({ length: 16 }, () => slabs.hold(Buffer.alloc(4096, 2))!);
  t.equal(slabs.bytes, 2 * SLAB, 'two full slabs');
  t.equal(slabs.hold(Buffer.alloc(1)), undefined, 'no third slab within the budget');
  for (const c of first.slice(1)) slabs.release(c);
  t.equal(slabs.hold(Buffer.alloc(1)), undefined, 'a slab one body still holds is still counted');
  slabs.release(first[0]!);
  t.equal(slabs.bytes, SLAB, 'the first slab went with its last body');
  const third = slabs.hold(Buffer.alloc(4096, 3));
  t.ok(third, 'room for a new slab');
  t.not(third!.buffer, first[0]!.buffer, 'in new memory, not the released slab\'s');
  t.ok(first.every((c) => c.every((byte) => byte === 1)), 'the released copies keep their bytes');
  t.ok(second.every((c) => c.every((byte) => byte === 2)));
  t.equal(slabs.bytes, 2 * SLAB);
});

t.test('the slab being filled stays while its bodies are released, and goes once full and empty', async (t) => {
  const slabs = new BodySlabs(2 * SLAB, SLAB);
  const a = slabs.hold(Buffer.alloc(SLAB / 2))!;
  slabs.release(a);
  t.equal(slabs.bytes, SLAB, 'the slab being filled is kept');
  const b = slabs.hold(Buffer.alloc(SLAB / 2))!;
  t.equal(b.buffer, a.buffer, 'the next body goes after the released one, in the same slab');
  t.equal(b.byteOffset, a.byteOffset + SLAB / 2, 'not over it');
  slabs.release(b);
  const c = slabs.hold(Buffer.alloc(16))!;
  t.not(c.buffer, a.buffer, 'a full slab is not filled again');
  t.equal(slabs.bytes, SLAB, 'the full slab with no body left is dropped');
});

t.test('a body larger than a slab is not held', async (t) => {
  const slabs = new BodySlabs(4 * SLAB, SLAB);
  t.equal(slabs.hold(Buffer.alloc(SLAB + 1)), undefined);
  t.equal(slabs.bytes, 0);
  t.equal(slabs.hold(Buffer.alloc(SLAB))?.length, SLAB, 'one of a slab\'s size is');
});
