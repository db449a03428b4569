import t from 'tap';
import { JobQueue, chooseSeed, permutation, workerPlan, type SchedJob } from '../../src/run/scheduler.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TIMINGS_FILE, Timings } from '../../src/run/timings.js';
import { cpuMsOf } from '../helpers/cpu.js';

function job(system: string, suite: string, task: string, extra: Partial<SchedJob> = {}): SchedJob {
  const variant = extra.variant ?? '';
  const sample = extra.sample ?? 1;
  const name = `b:${system}:${suite}${task}${variant ? `:${variant}` : ''}${sample > 1 ? `#${sample}` : ''}`;
  return { name, backend: 'b', system, suite, task: `${suite}${task}`, variant, sample, ...extra };
}

function drain(q: JobQueue, w: number): string[] {
  const out: string[] = [];
  for (let j = q.next(w); j; j = q.next(w)) out.push(j.name);
  return out;
}

t.test('every int64 seed orders on its own: none is taken mod 2^32, nor cut to 53 bits', async (t) => {
  const max = 2n ** 63n - 1n;
  // seeds a 32-bit generator folds together (n, n + 2^32, n - 2^32), and neighbours past 2^53
  const pairs: Array<[bigint, bigint]> = [[1n, 1n + 2n ** 32n], [-1n, 2n ** 32n - 1n], [0n, -(2n ** 32n)], [2n ** 53n, 2n ** 53n + 1n], [max, max - 1n], [-max - 1n, -max]];
  for (const [a, b] of pairs) t.not(permutation(20, a).join(), permutation(20, b).join(), `seeds ${a} and ${b}`);
  for (const seed of [max, -max - 1n]) t.same([...permutation(20, seed)].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i), `seed ${seed}: a permutation`);
});

t.test('permutations and seeds', async (t) => {
  t.same(permutation(10, 5n), permutation(10, 5n), 'same seed, same order');
  t.not(permutation(10, 5n).join(), permutation(10, 6n).join());
  t.same([...permutation(50, 1n)].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  t.same(chooseSeed(3, 5), { seed: 0n, announce: false }, 'jobs ≤ workers: seed 0, silent');
  t.same(chooseSeed(10, 2, 42n), { seed: 42n, announce: false });
  const s = chooseSeed(10, 2);
  t.ok(s.announce && Math.abs(Number(s.seed) - Date.now() / 1000) < 5, 'more jobs than workers: time seed, announced');
  const jobs = [job('x', 's/', 'a'), job('x', 's/', 'b'), job('y', 's/', 'a')];
  t.same(workerPlan(jobs, () => 4), [
    { backend: 'b', system: 'x', count: 2 },
    { backend: 'b', system: 'y', count: 1 },
  ]);
});

t.test('priority tiers come first and jobs never cross systems', async (t) => {
  const jobs = [job('x', 's/', 'low', { priority: -1 }), job('x', 's/', 'mid'), job('x', 's/', 'high', { priority: 5 }), job('y', 's/', 'other', { priority: 100 })];
  const q = new JobQueue(jobs, { seed: 1n });
  const w = q.addWorker('b', 'x');
  t.same(drain(q, w), ['b:x:s/high', 'b:x:s/mid', 'b:x:s/low']);
  t.equal(q.pending, 1);
  t.same(q.remaining().map((j) => j.name), ['b:y:s/other']);
});

t.test('suite affinity: a worker stays in its suite, others spread over suites', async (t) => {
  const jobs = ['a', 'b', 'c', 'd'].flatMap((task) => [job('x', 's1/', task), job('x', 's2/', task)]);
  for (let seed = 0n; seed < 20n; seed++) {
    const q = new JobQueue(jobs, { seed });
    const w1 = q.addWorker('b', 'x');
    const w2 = q.addWorker('b', 'x');
    const first = q.next(w1)!;
    const second = q.next(w2)!;
    t.not(first.suite, second.suite, 'the second worker goes to the suite with fewer workers');
    // w1 keeps taking its own suite while that suite has jobs.
    for (let i = 0; i < 3; i++) t.equal(q.next(w1)!.suite, first.suite);
    t.equal(q.suiteOf(w1), first.suite);
  }
});

t.test('samples: the lowest pending sample of the same task first', async (t) => {
  const jobs = [1, 2, 3].flatMap((n) => [job('x', 's/', 'multi', { sample: n }), job('x', 's/', `single${n}`)]);
  const q = new JobQueue(jobs, { seed: 3n });
  const w = q.addWorker('b', 'x');
  const order = drain(q, w);
  const i = order.indexOf('b:x:s/multi');
  t.same(order.slice(i, i + 3), ['b:x:s/multi', 'b:x:s/multi#2', 'b:x:s/multi#3'], 'samples run back to back in order');
});

t.test('recorded durations: longest first without priorities, priorities still win', async (t) => {
  const timings = await Timings.load(t.testdir());
  const jobs = Array.from({ length: 12 }, (_, i) => job('x', `s${i % 3}/`, `t${i}`));
  jobs.forEach((j, i) => timings.record(j, i === 7 ? 300 : i === 2 ? 150 : 10 + i));
  await timings.save();
  t.equal((await Timings.load(join(t.testdir(), 'nowhere'))).size, 0, 'a missing file means no history');
  for (let seed = 0n; seed < 10n; seed++) {
    const q = new JobQueue(jobs, { seed, duration: (j) => timings.estimate(j) });
    const w = q.addWorker('b', 'x');
    const order = drain(q, w);
    t.equal(order[0], 'b:x:s1/t7', 'the longest job starts first');
    t.same(order.slice(0, 4).map((n) => n.split(':')[2]!.split('/')[0]), ['s1', 's1', 's1', 's1'], 'then the rest of its suite');
    t.equal(order[1], 'b:x:s1/t10', 'the longest of those first');
    t.equal(order[4], 'b:x:s2/t2', 'then the suite of the longest job left');
  }
  const withPriority = jobs.map((j, i) => (i === 0 ? { ...j, priority: 1 } : j));
  const q = new JobQueue(withPriority, { seed: 1n, duration: (j) => timings.estimate(j) });
  t.equal(q.next(q.addWorker('b', 'x'))!.name, 'b:x:s0/t0', 'an explicit priority beats duration');
  const fresh = [...jobs, job('x', 's0/', 'new')];
  const q2 = new JobQueue(fresh, { seed: 2n, duration: (j) => timings.estimate(j) });
  t.ok(['b:x:s0/new', 'b:x:s1/t7'].includes(q2.next(q2.addWorker('b', 'x'))!.name), 'an unknown job counts as long');
});

t.test('recorded durations never take a worker out of its suite: each suite entered once', async (t) => {
  // Two suites of slow and fast tasks, as a second run sees them (the reviewer's case: the
  // worker did a's slow jobs, b's, then came back to a for its fast ones).
  const jobs = ['a/', 'b/'].flatMap((suite) => ['fast1', 'fast2', 'slow1', 'slow2'].map((task) => job('x', suite, task)));
  const duration = (j: SchedJob): number => (j.task.includes('slow') ? 4.5 : 0.1);
  for (let seed = 0n; seed < 20n; seed++) {
    const q = new JobQueue(jobs, { seed, duration });
    const order = drain(q, q.addWorker('b', 'x')).map((n) => n.split(':')[2]!);
    const suites = order.map((n) => n.split('/')[0]!);
    t.equal(suites.filter((s, i) => i === 0 || s !== suites[i - 1]).length, 2, `seed ${seed}: ${order.join(' ')}`);
    t.ok(order[0]!.includes('slow') && order[4]!.includes('slow'), 'each suite its slow jobs first');
  }
  // Priority still takes a worker elsewhere, as in spread.
  const urgent = [...jobs, job('x', 'b/', 'urgent', { priority: 1 })];
  const q = new JobQueue(urgent, { seed: 1n, duration });
  t.equal(drain(q, q.addWorker('b', 'x'))[0], 'b:x:b/urgent');
});

t.test('timings file: moving average, fallback across systems, atomic save', async (t) => {
  const dir = t.testdir();
  const a = await Timings.load(dir);
  const j = job('x', 's/', 't');
  a.record(j, 100);
  a.record({ ...j, name: `${j.name}#2` }, 50);
  t.equal(a.estimate(j), 75, 'samples share an entry; newest run weighs half');
  await a.save();
  const b = await Timings.load(dir);
  t.equal(b.estimate(j), 75);
  t.equal(b.estimate(job('other', 's/', 't')), 75, 'same task on another system');
  t.equal(b.estimate(job('x', 's/', 'unknown')), undefined);
  await writeFile(join(dir, TIMINGS_FILE), '{broken');
  t.equal((await Timings.load(dir)).size, 0, 'a damaged file means no history');
});

t.test('timings file: the fallback follows new records; jobs not run for 90 days leave the file', async (t) => {
  const dir = t.testdir();
  const a = await Timings.load(dir);
  a.record(job('x', 's/', 't'), 10);
  t.equal(a.estimate(job('y', 's/', 't')), 10);
  a.record(job('z', 's/', 't'), 20);
  t.equal(a.estimate(job('y', 's/', 't')), 15, 'a record made after an estimate counts in the next');
  a.record(job('old', 's/', 'u'), 5);
  await a.save(Date.now() + 91 * 24 * 3600_000);
  t.equal((await Timings.load(dir)).size, 0, 'saved 91 days on: every job forgotten');
  await a.save(Date.now() + 89 * 24 * 3600_000);
  t.equal((await Timings.load(dir)).size, 3, 'saved 89 days on: all kept');
});

t.test('timings: estimating 20,000 jobs with no history of their own against 20,000 entries is one pass', async (t) => {
  const a = await Timings.load(t.testdir());
  for (let i = 0; i < 20_000; i++) a.record(job(`sys-${i % 200}`, 's/', `t${i}`), i % 17);
  const { result: known, ms } = await cpuMsOf(() => {
    let n = 0;
    for (let i = 0; i < 20_000; i++) if (a.estimate(job('renamed', 's/', `t${i}`)) !== undefined) n++;
    return n;
  });
  t.equal(known, 20_000);
  t.ok(ms < 500, `${ms.toFixed(0)} ms of CPU (a scan of every entry per job took seconds)`);
});

t.test('20,000 jobs of one system drained by 20 workers: each pick looks at a few jobs, not all', async (t) => {
  const jobs = Array.from({ length: 20_000 }, (_, i) => job('s0', `su${i % 7}/`, `t${i}`));
  const { result: seen, ms } = await cpuMsOf(() => {
    const q = new JobQueue(jobs, { seed: 7n });
    const workers = Array.from({ length: 20 }, () => q.addWorker('b', 's0'));
    const names = new Set<string>();
    for (let live = workers.length; live > 0;) {
      live = 0;
      for (const w of workers) {
        const next = q.next(w);
        if (!next) continue;
        names.add(next.name);
        live++;
      }
    }
    return names;
  });
  t.equal(seen.size, 20_000, 'every job once');
  t.ok(ms < 2000, `${ms.toFixed(0)} ms of CPU (a scan of every job per pick took 9 s)`);
});
