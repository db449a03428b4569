// The windowed encode on real project tars: the new tar is encoded window by window, each
// against its own segment of the base, and the stitched VCDIFF rebuilds the tar through our
// decoder and through Debian's xdelta3 -d, whatever moved between the two versions.
import t from 'tap';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { encodeToBuffer, inspectVcdiff } from '../helpers/delta.js';
import { evolve, makeProject, packFiles, planOf, prng, roundTrips, type Files } from './trees.js';

const MiB = 2 ** 20;

t.test('a project evolved over several windows: edits, removals, additions, renames, moves', async (t) => {
  const dir = t.testdir();
  const rand = prng(1);
  const v1 = makeProject(rand, 24 * MiB);
  v1.set('pkg-0/big.bin', randomBytes(10 * MiB)); // above half a window: windows of its own
  const v2: Files = evolve(rand, v1);
  const big = v1.get('pkg-0/big.bin') as Buffer;
  v2.set('pkg-0/big.bin', Buffer.concat([big.subarray(0, 3 * MiB), randomBytes(100_000), big.subarray(3 * MiB + 5000)]));
  for (const path of [...v1.keys()].filter((p) => p.startsWith('pkg-3/'))) v2.delete(path); // a deleted directory
  await packFiles(join(dir, 'v1'), v1, join(dir, 'v1.tar'));
  await packFiles(join(dir, 'v2'), v2, join(dir, 'v2.tar'));
  // Debian's xdelta3 -9 to compare with (below), encoding in a process of its own meanwhile
  const nativeEncode = promisify(execFile)('xdelta3', ['-e', '-9', '-f', '-S', 'none', '-s', join(dir, 'v1.tar'), join(dir, 'v2.tar'), join(dir, 'native.vcdiff')]);
  nativeEncode.catch(() => undefined); // awaited below
  t.teardown(() => void (nativeEncode.child.exitCode === null && nativeEncode.child.signalCode === null && process.kill(nativeEncode.child.pid!, 'SIGKILL')));

  const { vcdiff, level, windows } = await encodeToBuffer({ path: join(dir, 'v1.tar') }, { path: join(dir, 'v2.tar') });
  t.equal(level, 9);
  const summary = inspectVcdiff(vcdiff);
  t.equal(summary.targetSize, statSync(join(dir, 'v2.tar')).size);
  t.ok(windows >= 4 && summary.windows >= 4, `${windows} calls, ${summary.windows} VCDIFF windows`);
  t.same(await roundTrips(dir, join(dir, 'v1.tar'), join(dir, 'v2.tar'), vcdiff), { ours: true, native: true });

  // close to one encode against the whole base (Debian's xdelta3, which sees 64 MiB of it)
  await nativeEncode;
  const native = statSync(join(dir, 'native.vcdiff')).size;
  t.ok(vcdiff.length < 1.1 * native, `ours ${vcdiff.length} bytes, xdelta3 -9 ${native}`);
  const plan = await planOf(join(dir, 'v1.tar'), join(dir, 'v2.tar'));
  t.ok(plan.some((w) => w.targetEnd - w.targetStart < 64 * 1024), 'moved files get small windows of their own');
});
