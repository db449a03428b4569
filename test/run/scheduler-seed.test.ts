// -seed N replays an order: with a given seed, recorded durations (rewritten after every
// run) take no part in it, only the seed, the jobs and their priorities.
import t from 'tap';
import { JobQueue, type SchedJob } from '../../src/run/scheduler.js';

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

t.test('a given seed gives the same order whatever the recorded durations', async (t) => {
  const jobs = Array.from({ length: 10 }, (_, i) => job(`s${i % 3}/`, `t${i}`, i === 4 ? 1 : undefined));
  // Two runs' timings files: the second run recorded other durations.
  const first = (j: SchedJob) => 10 * (1 + Number(j.task.slice(4)));
  const second = (j: SchedJob) => 1000 / (1 + Number(j.task.slice(4)));
  for (const seed of [0, 2, 7]) {
    const plain = order(jobs, { seed });
    t.not(order(jobs, { seed, duration: first }).join(), order(jobs, { seed, duration: second }).join(), `seed ${seed}: durations do reorder an unseeded run`);
    t.same(order(jobs, { seed, seedGiven: true, duration: first }), plain, `seed ${seed}: run 1 follows the seed alone`);
    t.same(order(jobs, { seed, seedGiven: true, duration: second }), plain, `seed ${seed}: run 2 replays run 1`);
    t.equal(plain[0], 'b:x:s1/t4', 'priorities still come first');
  }
});
