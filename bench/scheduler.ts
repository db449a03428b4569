// Scheduler simulation (no real processes): 1,600 jobs over 7 systems with several
// workers each, skewed durations (most 10–40 s, a tenth 2–5 min). Makespan against the
// lower bound for random order, spread's order, and ours after one recorded run.
// Run: node --import tsx bench/scheduler.ts [--append]
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobQueue, permutation, prng, type SchedJob } from '../src/run/scheduler.js';
import { Timings } from '../src/run/timings.js';
import { today } from './lib/today.js';

const SYSTEMS = 7;
const WORKERS = [4, 4, 5, 3, 4, 6, 4];
const JOBS = 1600;
const SUITES = 8;
const NOISE = 0.1; // each run's duration varies ±10% around the job's true duration

interface World {
  jobs: SchedJob[];
  base: Map<string, number>;
}

function makeWorld(seed: number): World {
  const rnd = prng(BigInt(seed));
  const tasks = Math.ceil(JOBS / SYSTEMS);
  const taskBase = Array.from({ length: tasks }, () => (rnd() < 0.1 ? 120 + rnd() * 180 : 10 + rnd() * 30));
  const jobs: SchedJob[] = [];
  const base = new Map<string, number>();
  for (let t = 0; t < tasks && jobs.length < JOBS; t++) {
    const suite = `s${t % SUITES}/`;
    for (let s = 0; s < SYSTEMS && jobs.length < JOBS; s++) {
      const job: SchedJob = { name: `ci:sys${s}:${suite}t${t}`, backend: 'ci', system: `sys${s}`, suite, task: `${suite}t${t}`, variant: '', sample: 1 };
      jobs.push(job);
      base.set(job.name, taskBase[t]! * (0.9 + 0.2 * rnd()));
    }
  }
  return { jobs, base };
}

/** Actual durations of one run: the true duration with ±NOISE jitter. */
function runDurations(w: World, seed: number): Map<string, number> {
  const rnd = prng(BigInt(seed));
  return new Map([...w.base].map(([k, d]) => [k, d * (1 - NOISE + 2 * NOISE * rnd())]));
}

/** Event simulation: each worker takes its next job the moment it is free. */
function simulate(actual: Map<string, number>, next: (system: number, worker: number) => SchedJob | undefined): number {
  let makespan = 0;
  for (let s = 0; s < SYSTEMS; s++) {
    const free = Array.from({ length: WORKERS[s]! }, (_, i) => ({ i, t: 0 }));
    for (;;) {
      free.sort((a, b) => a.t - b.t || a.i - b.i);
      const wk = free[0]!;
      const job = next(s, wk.i);
      if (!job) {
        free.shift();
        if (!free.length) break;
        continue;
      }
      wk.t += actual.get(job.name)!;
      makespan = Math.max(makespan, wk.t);
    }
  }
  return makespan;
}

function randomOrder(w: World, actual: Map<string, number>, seed: number): number {
  const perm = permutation(w.jobs.length, BigInt(seed));
  const lists = Array.from({ length: SYSTEMS }, (_, s) => perm.map((i) => w.jobs[i]!).filter((j) => j.system === `sys${s}`));
  return simulate(actual, (s) => lists[s]!.shift());
}

function queueOrder(w: World, actual: Map<string, number>, seed: number, timings?: Timings): number {
  const q = new JobQueue(w.jobs, { seed: BigInt(seed), duration: timings ? (j) => timings.estimate(j) : undefined });
  const ids = WORKERS.map((n, s) => Array.from({ length: n }, () => q.addWorker('ci', `sys${s}`)));
  return simulate(actual, (s, i) => q.next(ids[s]![i]!));
}

function bounds(actual: Map<string, number>, w: World): { perSystem: number; global: number } {
  let perSystem = 0;
  let total = 0;
  let longest = 0;
  for (let s = 0; s < SYSTEMS; s++) {
    const ds = w.jobs.filter((j) => j.system === `sys${s}`).map((j) => actual.get(j.name)!);
    const sum = ds.reduce((a, b) => a + b, 0);
    total += sum;
    longest = Math.max(longest, ...ds);
    perSystem = Math.max(perSystem, sum / WORKERS[s]!, Math.max(...ds));
  }
  const workers = WORKERS.reduce((a, b) => a + b, 0);
  return { perSystem, global: Math.max(total / workers, longest) };
}

const dir = await mkdtemp(join(tmpdir(), 'fc-bench-'));
const rows: string[] = [];
const worst = { random: 0, spread: 0, ours: 0 };
const started = Date.now();
for (let trial = 1; trial <= 5; trial++) {
  const w = makeWorld(trial * 7919);
  // Run 1: spread's order, recording durations.
  const first = runDurations(w, trial * 31);
  const timings = await Timings.load(dir, `t${trial}.json`);
  queueOrder(w, first, trial);
  for (const j of w.jobs) timings.record(j, first.get(j.name)!);
  // Run 2: the measured run, same noise for all three orderings.
  const actual = runDurations(w, trial * 31 + 1);
  const b = bounds(actual, w);
  const r = randomOrder(w, actual, trial + 100) / b.perSystem;
  const s = queueOrder(w, actual, trial + 100) / b.perSystem;
  const o = queueOrder(w, actual, trial + 100, timings) / b.perSystem;
  worst.random = Math.max(worst.random, r);
  worst.spread = Math.max(worst.spread, s);
  worst.ours = Math.max(worst.ours, o);
  rows.push(`| ${trial} | ${b.perSystem.toFixed(0)} s | ${(b.global / b.perSystem).toFixed(3)} | ${r.toFixed(3)} | ${s.toFixed(3)} | ${o.toFixed(3)} |`);
}
await rm(dir, { recursive: true, force: true });

const report = [
  '',
  `## Scheduler simulation (issue 6) — ${today()}`,
  '',
  '`node --import tsx bench/scheduler.ts --append`: 1,600 jobs, 7 systems with 3–6 workers (30 in all), ' +
    'durations 10–40 s (90%) and 2–5 min (10%), ±10% noise per run. Makespan divided by the lower bound ' +
    'max over systems of max(system total / its workers, its longest job) (jobs never move between systems; ' +
    'the global bound max(total/workers, longest) is shown as a ratio to it). "ours" uses the timings of one ' +
    'earlier run (spread order), then runs with fresh noise.',
  '',
  '| trial | bound | global/bound | random | spread | ours |',
  '|---|---|---|---|---|---|',
  ...rows,
  '',
  `Worst of 5: random ${worst.random.toFixed(3)}×, spread ${worst.spread.toFixed(3)}×, ours ${worst.ours.toFixed(3)}× (goal ≤ 1.05×). Simulated in ${Date.now() - started} ms.`,
  '',
];
process.stdout.write(report.join('\n'));
if (process.argv.includes('--append')) await appendFile(new URL('./RESULTS.md', import.meta.url), report.join('\n'));
