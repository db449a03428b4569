// Durations recorded in earlier runs, kept in a small JSON file in the project
// (.fleetcache-timings.json) as moving averages, so the scheduler can start long jobs
// first without hand-set priorities. The estimates a run ordered its jobs by are kept too,
// under the seed it announced, so that `-seed N` replays that run's order although the
// averages have moved since.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { escapeRegex } from '../pack/rules.js';

export const TIMINGS_FILE = '.fleetcache-timings.json';
/**
 * The file save writes before its rename to `file`: one per process, as two runs of one
 * project may save at once. A run killed between the two leaves its own.
 */
function tempFileOf(file: string, pid: number | string): string {
  return `${file}.${pid}.tmp`;
}

const ANY_PID = '\0';
/** The temp files of the project's TIMINGS_FILE (tempFileOf, any pid): never packed. */
export const TIMINGS_TEMP_FILES = new RegExp(`^${tempFileOf(TIMINGS_FILE, ANY_PID).split(ANY_PID).map(escapeRegex).join('\\d+')}$`);
/** Weight of the newest run in the moving average. */
const ALPHA = 0.5;
/** Announced seeds whose estimates are kept for replay, newest last. */
const SEEDS_KEPT = 20;
/** A job not run for this long (renamed, removed) leaves the file when it is saved. */
const FORGET_AFTER_MS = 90 * 24 * 3600_000;

/** The job fields timings need (a subset of SchedJob). */
interface TimedJob {
  /** Full job name; a `#sample` suffix is ignored (samples share a duration). */
  name: string;
  /** Task name, `suite/task`, for the fallback estimate across systems. */
  task: string;
  variant: string;
}

interface Entry {
  /** Moving average, seconds. */
  avg: number;
  runs: number;
  task: string;
  variant: string;
  /** When it was last recorded, Unix ms (absent in older files: taken as the load time). */
  last?: number;
}

/** Estimated seconds per job key, as a run ordered its jobs by them. */
type Estimates = Record<string, number>;

interface FileFormat {
  version: 1;
  jobs: Record<string, Entry>;
  /** By announced seed (a decimal string), oldest first. */
  seeds?: Record<string, Estimates>;
}

function keyOf(job: TimedJob): string {
  return job.name.replace(/#\d+$/, '');
}

/** The averages and remembered seeds of a timings file; none when it is missing or unreadable. */
async function readHistory(path: string): Promise<{ jobs: Map<string, Entry>; seeds: Map<string, Estimates> }> {
  const jobs = new Map<string, Entry>();
  const seeds = new Map<string, Estimates>();
  try {
    const data = JSON.parse(await readFile(path, 'utf8')) as Partial<FileFormat>;
    if (data.version === 1 && data.jobs && typeof data.jobs === 'object') {
      for (const [k, e] of Object.entries(data.jobs)) {
        if (e && Number.isFinite(e.avg) && e.avg >= 0) {
          jobs.set(k, { avg: e.avg, runs: e.runs || 1, task: String(e.task), variant: String(e.variant ?? ''), last: Number.isFinite(e.last) ? e.last : Date.now() });
        }
      }
      for (const [seed, estimates] of Object.entries(data.seeds ?? {})) {
        if (estimates && typeof estimates === 'object') seeds.set(seed, Object.fromEntries(Object.entries(estimates).filter(([, v]) => Number.isFinite(v) && v >= 0)));
      }
    }
  } catch {
    // no history yet, or a damaged file: scheduling falls back to spread's order
  }
  return { jobs, seeds };
}

/** Sets `estimates` as the newest seed, then drops the oldest beyond SEEDS_KEPT. */
function rememberNewest(seeds: Map<string, Estimates>, seed: string, estimates: Estimates): void {
  seeds.delete(seed);
  seeds.set(seed, estimates);
  for (const oldest of seeds.keys()) {
    if (seeds.size <= SEEDS_KEPT) break;
    seeds.delete(oldest);
  }
}

export class Timings {
  readonly #file: string;
  readonly #jobs: Map<string, Entry>;
  readonly #seeds: Map<string, Estimates>;
  /** Sum and count of the averages by task and variant (estimate's fallback), made on first use. */
  #byTask: Map<string, { sum: number; n: number }> | undefined;
  /**
   * The jobs recorded and the seeds remembered by this run: what save() writes over the file
   * as it is then (another run of the project may have saved its own since this one loaded it).
   */
  readonly #recorded = new Set<string>();
  readonly #remembered = new Set<string>();

  private constructor(file: string, jobs: Map<string, Entry>, seeds: Map<string, Estimates>) {
    this.#file = file;
    this.#jobs = jobs;
    this.#seeds = seeds;
  }

  /** Reads `<projectRoot>/.fleetcache-timings.json`; a missing or unreadable file means no history. */
  static async load(projectRoot: string, file = TIMINGS_FILE): Promise<Timings> {
    const path = join(projectRoot, file);
    const { jobs, seeds } = await readHistory(path);
    return new Timings(path, jobs, seeds);
  }

  /**
   * Expected seconds for a job: its own average, else the mean of the same task and
   * variant on other systems, else undefined.
   */
  estimate(job: TimedJob): number | undefined {
    const own = this.#jobs.get(keyOf(job));
    if (own) return own.avg;
    // one pass over the history for all the jobs that have none of their own, not one each
    if (!this.#byTask) {
      this.#byTask = new Map();
      for (const e of this.#jobs.values()) {
        const key = `${e.task}\0${e.variant}`;
        const t = this.#byTask.get(key) ?? { sum: 0, n: 0 };
        t.sum += e.avg;
        t.n++;
        this.#byTask.set(key, t);
      }
    }
    const t = this.#byTask.get(`${job.task}\0${job.variant}`);
    return t ? t.sum / t.n : undefined;
  }

  /**
   * Keeps the estimates `jobs` are ordered by under the announced `seed` (saved with the
   * averages), so that replay(seed) gives them back.
   */
  rememberSeed(seed: bigint, jobs: readonly TimedJob[]): void {
    const estimates: Estimates = {};
    for (const job of jobs) {
      const d = this.estimate(job);
      if (d !== undefined) estimates[keyOf(job)] = d;
    }
    rememberNewest(this.#seeds, String(seed), estimates);
    this.#remembered.add(String(seed));
  }

  /**
   * The estimates the run that announced `seed` ordered its jobs by; a seed not on record
   * (given by hand, or from another checkout) orders by the seed alone.
   */
  replay(seed: bigint): (job: TimedJob) => number | undefined {
    const estimates = this.#seeds.get(String(seed));
    return (job) => estimates?.[keyOf(job)];
  }

  record(job: TimedJob, seconds: number): void {
    const key = keyOf(job);
    const old = this.#jobs.get(key);
    const avg = old ? old.avg + ALPHA * (seconds - old.avg) : seconds;
    this.#jobs.set(key, { avg: Math.round(avg * 1000) / 1000, runs: (old?.runs ?? 0) + 1, task: job.task, variant: job.variant, last: Date.now() });
    this.#recorded.add(key);
    this.#byTask = undefined;
  }

  get size(): number {
    return this.#jobs.size;
  }

  /**
   * Writes atomically (temp file + rename), keys sorted for stable diffs, without the jobs not
   * run for FORGET_AFTER_MS: this run's records and seeds over the file as it is now, so that
   * two runs of the project at once keep each other's (the last to save dropped the other's,
   * and `-seed N` of the other no longer replayed its order).
   */
  async save(now = Date.now()): Promise<void> {
    const current = await readHistory(this.#file);
    for (const k of this.#recorded) current.jobs.set(k, this.#jobs.get(k)!);
    for (const [seed, estimates] of this.#seeds) if (this.#remembered.has(seed)) rememberNewest(current.seeds, seed, estimates);
    const jobs: Record<string, Entry> = {};
    for (const k of [...current.jobs.keys()].sort()) {
      const e = current.jobs.get(k)!;
      if ((e.last ?? now) >= now - FORGET_AFTER_MS) jobs[k] = e;
    }
    const seeds = Object.fromEntries(current.seeds);
    const tmp = tempFileOf(this.#file, process.pid);
    await writeFile(tmp, `${JSON.stringify({ version: 1, jobs, seeds } satisfies FileFormat, null, 1)}\n`);
    await rename(tmp, this.#file);
  }
}
