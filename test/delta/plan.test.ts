// How the windowed encode cuts its work, on made-up tar indexes: windows tile the target and
// stay within the bounds; a base within one segment is every window's segment, whole; a
// larger one's segments hold the window's counterparts and start where its first bytes come
// from, a window without counterparts is placed by position, moved files get windows of
// their own (small ones stay), deleted runs in the base cut a window rather than stretch its
// segment, large files go in pieces, and inputs that are not tars are mapped by relative
// position; a shuffled tar still plans quickly.
import t, { type Test } from 'tap';
import { DISPLACED_MIN, filesToSample, planWindows, type PlanLimits, type WindowPlan } from '../../src/delta/plan.js';
import type { TarEntry, TarIndex } from '../../src/delta/tar-index.js';
import { cpuMsOf } from '../helpers/cpu.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const LIMITS: PlanLimits = { window: 16 * MiB, segment: 32 * MiB };

/** An index of a tar with these entries, in this order: [path, data size, content key]. */
function tarOf(files: ReadonlyArray<readonly [string, number, string?]>): { index: TarIndex; size: number } {
  const entries: TarEntry[] = [];
  let at = 0;
  for (const [path, size, contentKey] of files) {
    const end = at + 512 + Math.ceil(size / 512) * 512;
    entries.push({ path, start: at, dataStart: at + 512, end, contentKey });
    at = end;
  }
  const byPath = new Map(entries.map((e, i) => [e.path, i]));
  const byContent = new Map<string, number[]>();
  entries.forEach((e, i) => e.contentKey && byContent.set(e.contentKey, [...(byContent.get(e.contentKey) ?? []), i]));
  return { index: { entries, byPath, byContent }, size: at + 1024 };
}

function check(t: Test, plan: readonly WindowPlan[], targetSize: number, baseSize: number): void {
  let at = 0;
  for (const w of plan) {
    if (w.targetStart !== at) t.fail(`window at ${w.targetStart}, expected ${at}`);
    at = w.targetEnd;
    if (w.targetEnd - w.targetStart > LIMITS.window) t.fail(`window of ${w.targetEnd - w.targetStart} bytes`);
    if (w.sourceEnd - w.sourceStart > LIMITS.segment || w.sourceStart < 0 || w.sourceEnd > baseSize) t.fail(`segment ${w.sourceStart}-${w.sourceEnd}`);
  }
  t.equal(at, targetSize, 'windows tile the target');
}

const files = (n: number, size: number, prefix = 'f'): Array<[string, number, string]> =>
  Array.from({ length: n }, (_, i) => [`${prefix}/${String(i).padStart(5, '0')}`, size, `${prefix}${i}`]);

/** The entry of `tar` at `path`. */
const entryAt = (tar: { index: TarIndex }, path: string): TarEntry => tar.index.entries[tar.index.byPath.get(path) as number] as TarEntry;

t.test('the same tree: windows at entry boundaries, segments aligned on them', async (t) => {
  const base = tarOf(files(400, 100 * KiB));
  const plan = planWindows(base.size, base.index, base.size, base.index, LIMITS);
  check(t, plan, base.size, base.size);
  t.equal(plan.length, 3);
  for (const w of plan.slice(0, -1)) {
    t.equal(w.sourceStart, w.targetStart, 'the segment starts where the window does');
    t.equal(w.sourceEnd, w.targetEnd);
    t.ok(base.index.entries.some((e) => e.start === w.targetEnd), 'cut at an entry');
  }
});

t.test('files added and removed shift the segments; a deleted run cuts the window', async (t) => {
  // (c: a base larger than one segment, whose windows get the ranges of their counterparts)
  const base = tarOf([...files(50, 100 * KiB, 'a'), ...files(100, 100 * KiB, 'gone'), ...files(50, 100 * KiB, 'b'), ...files(150, 100 * KiB, 'c')]);
  const target = tarOf([...files(50, 100 * KiB, 'a'), ...files(20, 100 * KiB, 'new'), ...files(50, 100 * KiB, 'b'), ...files(150, 100 * KiB, 'c')]);
  t.ok(base.size > LIMITS.segment);
  const plan = planWindows(target.size, target.index, base.size, base.index, LIMITS);
  check(t, plan, target.size, base.size);
  const b0 = entryAt(target, 'b/00000');
  const cut = plan.find((w) => w.targetStart === b0.start);
  t.ok(cut, 'a window starts at the first entry after 10 MiB deleted from the base');
  t.equal(cut?.sourceStart, base.index.entries[base.index.byPath.get('b/00000') as number]?.start, 'its segment starts at that entry in the base');
  t.ok(plan.every((w) => w.sourceEnd - w.sourceStart <= 2 * (w.targetEnd - w.targetStart) + MiB), 'no segment stretched over the deleted run');
});

t.test('new files first: a window with no counterpart gets the range after the last matched one, or its relative position', async (t) => {
  const base = tarOf(files(400, 100 * KiB, 'm'));
  // (names the base does not have: a file of the base with the same name would be taken for its counterpart)
  const fresh = files(170, 100 * KiB, 'a-new').map(([p, size, key]) => [p.replace('/', '/n-'), size, key] as [string, number, string]);
  const target = tarOf([...fresh, ...files(400, 100 * KiB, 'm')]);
  const plan = planWindows(target.size, target.index, base.size, base.index, LIMITS);
  check(t, plan, target.size, base.size);
  t.equal(plan[0]?.how, 'position', 'the first window found no counterpart');
  t.ok(plan.length >= 3 && plan.slice(1).every((w) => w.how === 'entries'), 'the others did');
});

t.test('a base within one segment is every window\'s segment, whole: content moved between files is found', async (t) => {
  const base = tarOf(files(200, 100 * KiB, 'a'));
  const target = tarOf([...files(200, 100 * KiB, 'b'), ...files(200, 100 * KiB, 'a')]);
  t.ok(base.size <= LIMITS.segment && target.size > LIMITS.window);
  const plan = planWindows(target.size, target.index, base.size, base.index, LIMITS);
  check(t, plan, target.size, base.size);
  t.ok(plan.length >= 2, `${plan.length} windows`);
  t.ok(plan.every((w) => w.sourceStart === 0 && w.sourceEnd === base.size), 'each against the whole base');
});

type Tar = ReturnType<typeof tarOf>;

/**
 * The plan of `target` against `base` (checked), the window starting at the moved file
 * `moved` of the target (checked to exist), its old place `oldPath` in the base, and whether
 * a window starts at another path of the target.
 */
function movedFilePlan(t: Test, base: Tar, target: Tar, moved: string, oldPath: string) {
  const plan = planWindows(target.size, target.index, base.size, base.index, LIMITS);
  check(t, plan, target.size, base.size);
  const startsWindow = (path: string): boolean => plan.some((w) => w.targetStart === entryAt(target, path).start);
  const own = plan.find((w) => w.targetStart === entryAt(target, moved).start);
  t.ok(own, 'the moved file starts a window');
  return { own, old: entryAt(base, oldPath), startsWindow };
}

t.test('moved files: a window of their own above DISPLACED_MIN, left in place below', async (t) => {
  // 20 MiB between the files and their old place: beyond what a window's segment may stretch to
  const base = tarOf([...files(100, 100 * KiB, 'a'), ...files(200, 100 * KiB, 'm'), ['z/far', 200 * KiB, 'far'], ['z/tiny', 600, 'tiny'], ...files(100, 100 * KiB, 'zz')]);
  const target = tarOf([...files(50, 100 * KiB, 'a'), ['a/moved-far', 200 * KiB, 'far'], ['a/moved-tiny', 600, 'tiny'], ...files(50, 100 * KiB, 'a').map(([p, s, k]) => [`${p}-x`, s, `${k}x`] as [string, number, string]), ...files(200, 100 * KiB, 'm'), ...files(100, 100 * KiB, 'zz')]);
  t.ok(600 < DISPLACED_MIN && 200 * KiB > DISPLACED_MIN);
  const { own, old, startsWindow } = movedFilePlan(t, base, target, 'a/moved-far', 'z/far');
  t.equal(own?.sourceStart, old.start, 'against its place in the base');
  t.notOk(startsWindow('a/moved-tiny'), 'the tiny one does not');
});

t.test('a file moved and edited: the one file of the base with its name, of a like size, is its counterpart', async (t) => {
  // 20 MiB between the file's new place and its old one; its content changed (another key)
  const base = tarOf([...files(100, 100 * KiB, 'a'), ...files(200, 100 * KiB, 'm'), ['z/lib/big-module.js', 400 * KiB, 'old'], ['z/lib/index.js', 4 * KiB, 'i1'], ['zz/index.js', 4 * KiB, 'i2'], ...files(100, 100 * KiB, 'zz')]);
  const target = tarOf([...files(100, 100 * KiB, 'a'), ['a/lib/big-module.js', 410 * KiB, 'new'], ['a/lib/index.js', 4 * KiB, 'i3'], ['a/lib/other.js', 400 * KiB, 'o'], ...files(200, 100 * KiB, 'm'), ...files(100, 100 * KiB, 'zz')]);
  const { own, old, startsWindow } = movedFilePlan(t, base, target, 'a/lib/big-module.js', 'z/lib/big-module.js');
  t.ok(own && own.sourceStart <= old.start && own.sourceEnd >= old.end, 'against its old place in the base');
  // index.js: two files of the base have that name, so neither is taken for the new one
  t.notOk(startsWindow('a/lib/index.js'), 'a name the base has twice finds nothing');
});

t.test('a large file goes in pieces against the same offsets of its counterpart', async (t) => {
  const base = tarOf([...files(10, 100 * KiB, 'a'), ['big', 40 * MiB, 'big'], ...files(10, 100 * KiB, 'b')]);
  const target = tarOf([...files(5, 100 * KiB, 'a'), ['big', 40 * MiB + 3 * KiB, 'big2'], ...files(10, 100 * KiB, 'b')]);
  const plan = planWindows(target.size, target.index, base.size, base.index, LIMITS);
  check(t, plan, target.size, base.size);
  const bigT = target.index.entries[5] as TarEntry;
  const bigB = base.index.entries[10] as TarEntry;
  const pieces = plan.filter((w) => w.targetStart >= bigT.start && w.targetEnd <= bigT.end);
  t.equal(pieces.length, 3, '40 MiB in windows of 16 MiB');
  for (const w of pieces) {
    const expected = bigB.dataStart + (w.targetStart - bigT.dataStart);
    t.ok(w.sourceStart <= Math.max(bigB.start, expected) && w.sourceEnd >= Math.min(bigB.end, expected + (w.targetEnd - w.targetStart)), 'holds the same offsets');
    t.ok(w.sourceEnd - w.sourceStart <= w.targetEnd - w.targetStart + 2 * 3 * KiB + 1024, 'widened by the change in size');
  }
});

t.test('content sources: a new file found by nothing else takes the first; a large changed file adds the others to its segments', async (t) => {
  const base = tarOf([...files(100, 100 * KiB, 'a'), ['lib/compiler.js', 6 * MiB, 'c1'], ['lib/server.js', 9 * MiB, 's1'], ['lib/library.js', 9 * MiB, 'l1'], ...files(100, 100 * KiB, 'z')]);
  // compiler.js split: most of it went to a new _compiler.js; library.js took in the server
  const target = tarOf([['lib/_compiler.js', 6 * MiB, 'c3'], ...files(100, 100 * KiB, 'a'), ['lib/compiler.js', 10 * KiB, 'c2'], ['lib/library.js', 12 * MiB, 'l2'], ['lib/server.js', 10 * KiB, 's2'], ['lib/same.js', 9 * MiB, 'l1'], ...files(100, 100 * KiB, 'z')]);
  const at = (path: string) => entryAt(target, path);
  const old = (path: string) => entryAt(base, path);
  t.same(filesToSample(target.index, base.index, base.size, LIMITS, 4 * KiB).map((e) => e.path), ['lib/_compiler.js', 'lib/library.js'],
    'the file without a counterpart, and the large one whose content changed (not the small changed ones, nor a large one renamed whole)');
  t.same(filesToSample(target.index, base.index, 30 * MiB, LIMITS, 4 * KiB), [], 'none when the base fits in one segment: it is every segment, whole');

  const sources = new Map([[at('lib/_compiler.js'), [old('lib/compiler.js')]], [at('lib/library.js'), [old('lib/server.js'), old('lib/library.js'), old('a/00000')]]]);
  const without = planWindows(target.size, target.index, base.size, base.index, LIMITS);
  const plan = planWindows(target.size, target.index, base.size, base.index, LIMITS, sources);
  check(t, plan, target.size, base.size);
  const covers = (w: WindowPlan | undefined, e: TarEntry) => w !== undefined && w.sourceStart <= e.start && w.sourceEnd >= e.end;
  const windowOf = (p: readonly WindowPlan[], e: TarEntry) => p.find((w) => w.targetStart <= e.dataStart && w.targetEnd > e.dataStart);
  t.notOk(covers(windowOf(without, at('lib/_compiler.js')), old('lib/compiler.js')), 'without sources, _compiler.js is encoded without compiler.js');
  t.ok(covers(windowOf(plan, at('lib/_compiler.js')), old('lib/compiler.js')), 'with them, against it');
  t.notOk(covers(windowOf(without, at('lib/library.js')), old('lib/server.js')));
  const library = plan.filter((w) => w.targetStart < at('lib/library.js').end && w.targetEnd > at('lib/library.js').dataStart);
  t.equal(library.length, 1, 'a large file of 12 MiB: one window of its own');
  t.ok(covers(library[0], old('lib/server.js')) && covers(library[0], old('lib/library.js')), 'its segment holds its counterpart and the server');
  t.notOk(covers(library[0], old('a/00000')), 'a source that would stretch the segment past its bound is left out');
});

t.test('not tars, empty inputs', async (t) => {
  const plan = planWindows(100 * MiB, undefined, 50 * MiB, undefined, LIMITS);
  check(t, plan, 100 * MiB, 50 * MiB);
  t.ok(plan.every((w) => w.how === 'position'));
  const middle = plan[3] as WindowPlan;
  const center = (middle.sourceStart + middle.sourceEnd) / 2;
  t.ok(Math.abs(center - ((middle.targetStart + middle.targetEnd) / 2) * 0.5) < MiB, 'the same relative position');
  t.equal(middle.sourceEnd - middle.sourceStart, LIMITS.segment, 'with margins for the shift');

  t.same(planWindows(0, undefined, 10, undefined, LIMITS), [{ targetStart: 0, targetEnd: 0, sourceStart: 0, sourceEnd: 0, how: 'position' }], 'an empty target: one empty window');
  const tree = tarOf(files(10, 10 * KiB));
  const fromNothing = planWindows(tree.size, tree.index, 0, tarOf([]).index, LIMITS);
  t.same(fromNothing.map((w) => [w.sourceStart, w.sourceEnd]), [[0, 0]], 'an empty base: an empty segment');
});

t.test('a shuffled tar plans quickly, a window for each moved file', async (t) => {
  const base = tarOf(files(200_000, 1500));
  const order = base.index.entries.map((_, i) => i);
  let seed = 7;
  for (let i = order.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const target = tarOf(order.map((i) => [`g/${i}`, 1500, `f${i}`] as [string, number, string]));
  // A quadratic plan of 200,000 entries takes minutes; this one takes under a second.
  const { result: plan, ms } = await cpuMsOf(() => planWindows(target.size, target.index, base.size, base.index, LIMITS));
  check(t, plan, target.size, base.size);
  t.ok(plan.length > 150_000, `${plan.length} windows for 200,000 moved entries`);
  t.ok(ms < 3000, `planned in ${ms.toFixed(0)} ms of CPU`);
});

t.test('bytes after the end of the archive still go in bounded windows', async (t) => {
  const tree = tarOf(files(10, 10 * KiB));
  const size = tree.size + 40 * MiB; // a tar followed by 40 MiB of anything
  const plan = planWindows(size, tree.index, tree.size, tree.index, LIMITS);
  check(t, plan, size, tree.size);
  t.ok(plan.length >= 3);
});
