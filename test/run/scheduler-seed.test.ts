// -seed N replays an order: the run that announced seed N kept the duration estimates it
// ordered its jobs by, and a later run given that seed orders by them again, although the
// averages in the timings file have moved since. A seed not on record orders by the seed,
// the jobs and their priorities alone.
import t from 'tap';
import { JobQueue, type SchedJob } from '../../src/run/scheduler.js';
import { Timings } from '../../src/run/timings.js';

function job(suite: string, task: string, priority?: number): SchedJob {
  return { name: `b:x:${suite}${task}`, backend: 'b', system: 'x', suite, task: `${suite}${task}`, variant: '', sample: 1, ...(priority === undefined ? {} : { priority }) };
}

function order(jobs: SchedJob[], options: ConstructorParameters<typeof JobQueue>[1]): string[] {
  const q = new JobQueue(jobs, options);
  const w = q.addWorker('b', 'x');
  const out: string[] = [];
  for (let j = q.next(w); j; j = q.next(w)) out.push(j.name);
  return out;
}

t.test('a run given the seed another announced replays its order', async (t) => {
  const jobs = Array.from({ length: 10 }, (_, i) => job(`s${i % 3}/`, `t${i}`, i === 4 ? 1 : undefined));
  for (const seed of [0n, 2n, 7n]) await t.test(`seed ${seed}`, async (t) => {
    const dir = t.testdir();
    const history = await Timings.load(dir);
    jobs.forEach((j, i) => history.record(j, 10 * 2 ** i)); // later jobs took longer
    await history.save();
    // The run that announces `seed`, ordered by the averages it read.
    const before = await Timings.load(dir);
    const announced = order(jobs, { seed, duration: (j) => before.estimate(j) });
    t.not(announced.join(), order(jobs, { seed }).join(), `seed ${seed}: durations do reorder`);
    before.rememberSeed(seed, jobs);
    // ...which records other durations at its end (earlier jobs took longer this time).
    jobs.forEach((j, i) => before.record(j, 10 * 2 ** (40 - 4 * i)));
    await before.save();

    const later = await Timings.load(dir);
    t.not(order(jobs, { seed, duration: (j) => later.estimate(j) }).join(), announced.join(), 'the averages now give another order');
    t.same(order(jobs, { seed, duration: later.replay(seed) }), announced, `-seed ${seed} replays the announced order`);
    t.equal(announced[0], 'b:x:s1/t4', 'priorities still come first');
  });
  const unknown = await Timings.load(t.testdir());
  t.same(order(jobs, { seed: 99n, duration: unknown.replay(99n) }), order(jobs, { seed: 99n }), 'a seed not on record: the seed alone');
});

t.test('only the newest 20 announced seeds are kept', async (t) => {
  const dir = t.testdir();
  const jobs = [job('s/', 'a'), job('s/', 'b')];
  const timings = await Timings.load(dir);
  timings.record(jobs[0]!, 5);
  for (let seed = 1n; seed <= 25n; seed++) timings.rememberSeed(seed, jobs);
  await timings.save();
  const loaded = await Timings.load(dir);
  t.equal(loaded.replay(5n)(jobs[0]!), undefined, 'seed 5 dropped');
  t.equal(loaded.replay(6n)(jobs[0]!), 5, 'seed 6 kept');
  t.equal(loaded.replay(25n)(jobs[1]!), undefined, 'a job without an estimate has none on replay');
});

t.test('two runs of one project at once: neither save drops the seed or the durations the other recorded', async (t) => {
  const dir = t.testdir();
  const jobs = Array.from({ length: 10 }, (_, i) => job(`s${i % 3}/`, `t${i}`));
  const history = await Timings.load(dir);
  jobs.forEach((j, i) => history.record(j, 10 * 2 ** i));
  await history.save();
  // both runs start from the same file and announce their seeds
  const first = await Timings.load(dir);
  const second = await Timings.load(dir);
  first.rememberSeed(2n, jobs);
  await first.save();
  const announced = order(jobs, { seed: 7n, duration: (j) => second.estimate(j) });
  t.not(announced.join(), order(jobs, { seed: 7n }).join(), 'durations do reorder');
  second.rememberSeed(7n, jobs);
  await second.save();
  // the second run ends first, with its jobs' durations; the first ends later, with its own
  second.record(jobs[0]!, 7777);
  await second.save();
  first.record(jobs[1]!, 9999);
  await first.save();
  const later = await Timings.load(dir);
  t.same(order(jobs, { seed: 7n, duration: later.replay(7n) }), announced, "-seed 7 replays the second run's order");
  t.not(later.replay(7n)(jobs[0]!), undefined, "the second run's seed is kept");
  t.not(later.replay(2n)(jobs[0]!), undefined, "the first run's seed is kept too");
  t.not(later.estimate(jobs[0]!), 10, "the second run's duration is kept");
  t.not(later.estimate(jobs[1]!), 20, "the first run's duration is kept");
});
