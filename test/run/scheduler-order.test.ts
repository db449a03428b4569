// -order (fleetcache's own: spread has none): jobs run in the order the filter arguments name them, with no
// priorities, no shuffle, no suite affinity and no durations.
import t from 'tap';
import { JobQueue, orderByFilters, type SchedJob } from '../../src/run/scheduler.js';

function job(system: string, suite: string, task: string, extra: Partial<SchedJob> = {}): SchedJob {
  const sample = extra.sample ?? 1;
  return { name: `b:${system}:${suite}${task}${sample > 1 ? `#${sample}` : ''}`, backend: 'b', system, suite, task: `${suite}${task}`, variant: '', sample, ...extra };
}

t.test('filter order: each job at the first argument that matches it, list order within one', async (t) => {
  const jobs = [job('x', 'a/', 't1'), job('x', 'a/', 't2'), job('x', 'b/', 't1'), job('x', 'b/', 't2'), job('y', 'a/', 't1')];
  const names = (js: SchedJob[]) => js.map((j) => j.name);
  t.same(names(orderByFilters(jobs, ['b/t2', 'a/', 'b/t1', 'b/t2'])), ['b:x:b/t2', 'b:x:a/t1', 'b:x:a/t2', 'b:y:a/t1', 'b:x:b/t1'], 'a job named twice runs once, at its first place');
  t.same(names(orderByFilters(jobs, [])), names(jobs), 'no filters: the list order');
  t.same(names(orderByFilters(jobs, ['y', 'x:b/'])), ['b:y:a/t1', 'b:x:b/t1', 'b:x:b/t2', 'b:x:a/t1', 'b:x:a/t2'], 'jobs no argument matches come last');
  const samples = [job('x', 'a/', 's', { sample: 1, name: 'b:x:a/s#1' }), job('x', 'a/', 's', { sample: 2, name: 'b:x:a/s#2' })];
  t.same(names(orderByFilters(samples, ['a/s#2', 'a/s#1'])), ['b:x:a/s#2', 'b:x:a/s#1'], 'sample filters count');
});

t.test('ordered queue: the list order, whatever the seed, priorities, suites and durations', async (t) => {
  const jobs = [job('x', 'b/', 't3'), job('x', 'a/', 't1', { priority: -5 }), job('y', 'a/', 'other'), job('x', 'b/', 't2'), job('x', 'a/', 't9', { priority: 50 }), job('x', 'c/', 't4')];
  for (const seed of [0n, 1n, 99n]) {
    const q = new JobQueue(jobs, { seed, ordered: true, duration: (j) => (j.task === 'a/t9' ? 1 : 1000) });
    const w1 = q.addWorker('b', 'x');
    const w2 = q.addWorker('b', 'x');
    const taken = [q.next(w1), q.next(w2), q.next(w2), q.next(w1), q.next(w1), q.next(w2)].map((j) => j?.name);
    t.same(taken, ['b:x:b/t3', 'b:x:a/t1', 'b:x:b/t2', 'b:x:a/t9', 'b:x:c/t4', undefined], `seed ${seed}: each worker takes the next job of its system in order`);
    t.same(q.remaining().map((j) => j.name), ['b:y:a/other']);
  }
});
