// spread's scheduling (spec section 10) as a pure core: one shared pending list,
// per-worker seeded permutations, priority tiers, suite affinity and samples. Beyond
// spread, jobs of equal priority are tiered by their recorded duration, longest first,
// unless the seed was given (-seed N must replay an order; durations change every run).
// With -order (fleetcache's own: spread has none), jobs are taken in the order of the command line instead. No I/O here;
// driver.ts runs workers on top of it.
import { compileFilter } from '../spread/filter.js';

/** What the scheduler needs of a job (narrow: the spread model owns the full type). */
export interface SchedJob {
  /** Full name, `backend:system:suite/task[:variant][#sample]`. */
  name: string;
  backend: string;
  system: string;
  /** Suite name with its trailing slash, e.g. `tests/`. */
  suite: string;
  /** Task name, `suite/task`. */
  task: string;
  variant: string;
  /** 1-based sample number. */
  sample: number;
  /** The first explicitly set priority (task, suite, system, backend), if any. */
  priority?: number;
}

interface QueueOptions {
  /** An int64, as spread's -seed. */
  seed: bigint;
  /**
   * Expected seconds of a job (Timings.estimate, or Timings.replay for a given seed);
   * undefined when unknown. The order depends only on the seed, the jobs, their priorities
   * and these estimates.
   */
  duration?: (job: SchedJob) => number | undefined;
  /**
   * -order: each worker takes the first pending job of its backend+system in the
   * order of the job list (see orderByFilters); no priorities, no permutation, no suite
   * affinity, no durations, and the seed plays no part.
   */
  ordered?: boolean;
}

/**
 * The job order of -order: each job at the place of the first filter argument
 * that matches it (a job named twice runs once), jobs of one argument in list order;
 * with no arguments, the list order.
 */
export function orderByFilters<J extends Pick<SchedJob, 'name' | 'sample'>>(jobs: readonly J[], filters: readonly string[]): J[] {
  const args = filters.map((f) => compileFilter([f]));
  const place = (j: J): number => {
    const i = args.findIndex((a) => a.pass(j.name, j.sample));
    return i < 0 ? args.length : i;
  };
  return jobs
    .map((job, i) => ({ job, i, at: place(job) }))
    .sort((a, b) => a.at - b.at || a.i - b.i)
    .map((e) => e.job);
}

const MASK64 = 2n ** 64n - 1n;
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n;

/** splitmix64's mix of state `x` mod 2^64 (a bijection of 64-bit words: no two states give one word). */
function mix64(x: bigint): bigint {
  let z = x & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/**
 * Seeded PRNG (xoshiro128**, its 128-bit state from splitmix64 of the seed): same seed, same
 * order, and every int64 seed a state of its own. (Its 32-bit mulberry32 took a seed mod
 * 2^32: -seed=1 and -seed=4294967297 ran one order.)
 */
export function prng(seed: bigint): () => number {
  const a = mix64(seed + GOLDEN_GAMMA);
  // never all zero: mix64 is 0 only at 0, and the two states differ
  const b = mix64(seed + 2n * GOLDEN_GAMMA);
  let [s0, s1, s2, s3] = [a >> 32n, a, b >> 32n, b].map((w) => Number(BigInt.asIntN(32, w))) as [number, number, number, number];
  const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));
  return () => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result / 4294967296;
  };
}

/** A permutation of 0..n-1 (Fisher–Yates over the seeded PRNG). */
export function permutation(n: number, seed: bigint): number[] {
  const next = prng(seed);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/**
 * spread's seed rule: the given one; else, with more jobs than workers, the current
 * Unix time (to be printed as `Sequence of jobs produced with -seed=N`); else 0.
 */
export function chooseSeed(jobs: number, workers: number, given?: bigint): { seed: bigint; announce: boolean } {
  if (given !== undefined) return { seed: given, announce: false };
  if (jobs > workers) return { seed: BigInt(Math.floor(Date.now() / 1000)), announce: true };
  return { seed: 0n, announce: false };
}

/** Workers per backend+system: min(configured workers, selected jobs), spread's rule. */
export function workerPlan(
  jobs: readonly SchedJob[],
  workersOf: (backend: string, system: string) => number,
): Array<{ backend: string; system: string; count: number }> {
  const counts = new Map<string, { backend: string; system: string; jobs: number }>();
  for (const j of jobs) {
    const k = `${j.backend}\0${j.system}`;
    const c = counts.get(k) ?? { backend: j.backend, system: j.system, jobs: 0 };
    c.jobs++;
    counts.set(k, c);
  }
  return [...counts.values()].map((c) => ({ backend: c.backend, system: c.system, count: Math.min(Math.max(1, workersOf(c.backend, c.system)), c.jobs) }));
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** Duration tiers double: jobs within a factor of two share a tier, so suite affinity still acts. */
function tierOf(seconds: number): number {
  return Math.floor(Math.log2(Math.max(seconds, 1)));
}

interface WorkerState {
  backend: string;
  system: string;
  /** The worker's permutation of all jobs, keeping only its backend+system's (their order unchanged). */
  perm: number[];
  /** Where in `perm` a pending job may be: the ones before it were taken (-order). */
  start: number;
  /**
   * The positions in `perm` of the jobs of each suite and rank (`suite\0rank`), ascending,
   * with a cursor past the taken ones at their front: a pick looks at the first pending job
   * of each suite in the top rank, not at every job it passed over before.
   */
  lanes: Map<string, { positions: number[]; start: number }>;
  /** The suites of its system's jobs. */
  suites: string[];
  suite: string | undefined;
  lastTask: number | undefined;
  done: boolean;
}

export type WorkerId = number;

export class JobQueue {
  readonly #jobs: readonly SchedJob[];
  readonly #pending: boolean[];
  readonly #priority: number[];
  readonly #tier: number[];
  /** Task key (backend, system, task) of each job, and which tasks have samples > 1. */
  readonly #taskKey: string[];
  readonly #sampled = new Set<string>();
  readonly #seed: bigint;
  readonly #ordered: boolean;
  readonly #workers: WorkerState[] = [];
  readonly #perSystem = new Map<string, number>();
  /**
   * The jobs of each backend+system, and of each task key, in list order: a worker only
   * ever looks at its own system's (a scan of every job per pick made runs of 20,000 jobs
   * quadratic), and samples at their task's.
   */
  readonly #bySystem = new Map<string, number[]>();
  readonly #byTask = new Map<string, number[]>();
  /**
   * Each job's rank by priority, then duration tier, both highest first: 0 is the highest. With the
   * pending jobs of each system counted by rank, a pick finds its system's highest rank
   * among a few ranks rather than all its jobs.
   */
  readonly #rank: number[];
  /** The priority of each rank: the ranks of one priority are neighbours, longest tier first. */
  readonly #rankPriority: number[];
  readonly #pendingByRank = new Map<string, number[]>();
  /** Workers inside each suite, keyed `backend\0system\0suite`. */
  readonly #inside = new Map<string, number>();
  #left: number;

  constructor(jobs: readonly SchedJob[], options: QueueOptions) {
    this.#jobs = jobs;
    this.#seed = options.seed;
    this.#ordered = options.ordered === true;
    this.#pending = jobs.map(() => true);
    this.#left = jobs.length;
    this.#priority = jobs.map((j) => j.priority ?? 0);
    this.#taskKey = jobs.map((j) => `${j.backend}\0${j.system}\0${j.task}`);
    jobs.forEach((j, i) => {
      if (j.sample > 1) this.#sampled.add(this.#taskKey[i]!);
      const system = `${j.backend}\0${j.system}`;
      push(this.#bySystem, system, i);
      push(this.#byTask, this.#taskKey[i]!, i);
    });
    const est = jobs.map((j) => options.duration?.(j));
    const known = est.filter((d): d is number => d !== undefined);
    // Unknown jobs (new tasks) are assumed as long as the longest known one.
    const unknownTier = known.length ? tierOf(Math.max(...known)) : 0;
    this.#tier = est.map((d) => (d === undefined ? unknownTier : tierOf(d)));
    const classes = [...new Set(jobs.map((_, i) => `${this.#priority[i]}\0${this.#tier[i]}`))]
      .map((c) => c.split('\0').map(Number) as [number, number])
      .sort(([pa, ta], [pb, tb]) => (pa !== pb ? pb - pa : tb - ta));
    const rankOf = new Map(classes.map(([p, t], r) => [`${p}\0${t}`, r]));
    this.#rank = jobs.map((_, i) => rankOf.get(`${this.#priority[i]}\0${this.#tier[i]}`)!);
    this.#rankPriority = classes.map(([p]) => p);
    jobs.forEach((j, i) => {
      const system = `${j.backend}\0${j.system}`;
      const counts = this.#pendingByRank.get(system) ?? new Array<number>(classes.length).fill(0);
      counts[this.#rank[i]!]!++;
      this.#pendingByRank.set(system, counts);
    });
  }

  /** Adds worker i of its backend+system; its permutation is seeded with seed+i (past int64 it wraps, as in Go: prng takes it mod 2^64). */
  addWorker(backend: string, system: string): WorkerId {
    const k = `${backend}\0${system}`;
    const i = this.#perSystem.get(k) ?? 0;
    this.#perSystem.set(k, i + 1);
    const own = this.#bySystem.get(k) ?? [];
    const perm = this.#ordered ? [...own] : permutation(this.#jobs.length, this.#seed + BigInt(i)).filter((j) => this.#jobs[j]!.backend === backend && this.#jobs[j]!.system === system);
    const lanes = new Map<string, { positions: number[]; start: number }>();
    perm.forEach((j, k) => {
      const lane = `${this.#jobs[j]!.suite}\0${this.#rank[j]}`;
      const positions = lanes.get(lane)?.positions;
      if (positions) positions.push(k);
      else lanes.set(lane, { positions: [k], start: 0 });
    });
    const suites = [...new Set(own.map((j) => this.#jobs[j]!.suite))];
    this.#workers.push({ backend, system, perm, start: 0, lanes, suites, suite: undefined, lastTask: undefined, done: false });
    return this.#workers.length - 1;
  }

  get pending(): number {
    return this.#left;
  }

  /** Whether any job of this backend+system is still pending. */
  hasPending(backend: string, system: string): boolean {
    return this.#pendingByRank.get(`${backend}\0${system}`)?.some((n) => n > 0) ?? false;
  }

  /** Jobs never taken (reported as aborted at the end of a run). */
  remaining(): SchedJob[] {
    return this.#jobs.filter((_, i) => this.#pending[i]);
  }

  /** The suite a worker is inside (its last job's), for suite prepare/restore decisions. */
  suiteOf(worker: WorkerId): string | undefined {
    return this.#workers[worker]!.suite;
  }

  #suiteKey(w: WorkerState, suite: string): string {
    return `${w.backend}\0${w.system}\0${suite}`;
  }

  #enter(w: WorkerState, suite: string | undefined): void {
    if (w.suite === suite) return;
    if (w.suite !== undefined) this.#inside.set(this.#suiteKey(w, w.suite), (this.#inside.get(this.#suiteKey(w, w.suite)) ?? 1) - 1);
    if (suite !== undefined) this.#inside.set(this.#suiteKey(w, suite), (this.#inside.get(this.#suiteKey(w, suite)) ?? 0) + 1);
    w.suite = suite;
  }

  /** Lowest pending sample of the same backend, system and task (any variant). */
  #minSample(key: string): number | undefined {
    let best: number | undefined;
    for (const i of this.#byTask.get(key) ?? []) {
      if (this.#pending[i] && (best === undefined || this.#jobs[i]!.sample < this.#jobs[best]!.sample)) best = i;
    }
    return best;
  }

  /** The position in w.perm of the first pending job of `suite` in rank `rank`. */
  #firstPending(w: WorkerState, suite: string, rank: number): number | undefined {
    const lane = w.lanes.get(`${suite}\0${rank}`);
    if (!lane) return undefined;
    while (lane.start < lane.positions.length && !this.#pending[w.perm[lane.positions[lane.start]!]!]) lane.start++;
    return lane.positions[lane.start];
  }

  /**
   * The position in w.perm of the first pending job of `suite` with the priority of rank
   * `top`, its longest tier first: duration orders the jobs of a suite, and never takes a
   * worker out of its suite while that suite has jobs of the top priority (each time it
   * left, the suite's restore and prepare would run again).
   */
  #firstPendingOfPriority(w: WorkerState, suite: string, top: number): number | undefined {
    const priority = this.#rankPriority[top];
    for (let rank = top; rank < this.#rankPriority.length && this.#rankPriority[rank] === priority; rank++) {
      const at = this.#firstPending(w, suite, rank);
      if (at !== undefined) return at;
    }
    return undefined;
  }

  /**
   * spread's pick: the first job in the worker's permutation among its system's pending jobs
   * of the highest priority; of its own suite when it has one (the longest first), else of
   * the suite the fewest workers are inside among those with a job of the top duration tier
   * (the earliest in the permutation among those).
   */
  #select(w: WorkerState): number | undefined {
    if (this.#ordered) {
      // the taken jobs at the front of the worker's list are passed once, not on every pick
      while (w.start < w.perm.length && !this.#pending[w.perm[w.start]!]) w.start++;
      return w.perm[w.start];
    }
    if (w.lastTask !== undefined && this.#sampled.has(this.#taskKey[w.lastTask]!)) {
      const s = this.#minSample(this.#taskKey[w.lastTask]!);
      if (s !== undefined) return s;
    }
    const top = this.#pendingByRank.get(`${w.backend}\0${w.system}`)?.findIndex((n) => n > 0) ?? -1;
    if (top < 0) return undefined;
    let at = w.suite === undefined ? undefined : this.#firstPendingOfPriority(w, w.suite, top);
    if (at === undefined) {
      let fewest = Infinity;
      for (const suite of w.suites) {
        const k = suite === w.suite ? undefined : this.#firstPending(w, suite, top);
        if (k === undefined) continue;
        const inside = this.#inside.get(this.#suiteKey(w, suite)) ?? 0;
        if (inside < fewest || (inside === fewest && k < at!)) {
          at = k;
          fewest = inside;
        }
      }
    }
    const best = at === undefined ? undefined : w.perm[at];
    if (best !== undefined && this.#sampled.has(this.#taskKey[best]!)) return this.#minSample(this.#taskKey[best]!) ?? best;
    return best;
  }

  /** The worker's next job, or undefined when it has none left (it then leaves). */
  next(worker: WorkerId): SchedJob | undefined {
    const w = this.#workers[worker]!;
    if (w.done) return undefined;
    const i = this.#select(w);
    if (i === undefined) {
      this.leave(worker);
      return undefined;
    }
    this.#pending[i] = false;
    this.#left--;
    this.#pendingByRank.get(`${w.backend}\0${w.system}`)![this.#rank[i]!]!--;
    w.lastTask = i;
    this.#enter(w, this.#jobs[i]!.suite);
    return this.#jobs[i];
  }

  /** The worker stops (finished, or its machine broke): it leaves its suite for good. */
  leave(worker: WorkerId): void {
    const w = this.#workers[worker]!;
    this.#enter(w, undefined);
    w.done = true;
  }
}
