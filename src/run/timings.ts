// Durations recorded in earlier runs, kept in a small JSON file in the project
// (.fleetcache-timings.json) as moving averages, so the scheduler can start long jobs
// first without hand-set priorities.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const TIMINGS_FILE = '.fleetcache-timings.json';
/** Weight of the newest run in the moving average. */
const ALPHA = 0.5;

/** The job fields timings need (a subset of SchedJob). */
export interface TimedJob {
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
}

interface FileFormat {
  version: 1;
  jobs: Record<string, Entry>;
}

function keyOf(job: TimedJob): string {
  return job.name.replace(/#\d+$/, '');
}

export class Timings {
  readonly #file: string;
  readonly #jobs: Map<string, Entry>;

  private constructor(file: string, jobs: Map<string, Entry>) {
    this.#file = file;
    this.#jobs = jobs;
  }

  /** Reads `<projectRoot>/.fleetcache-timings.json`; a missing or unreadable file means no history. */
  static async load(projectRoot: string, file = TIMINGS_FILE): Promise<Timings> {
    const path = join(projectRoot, file);
    const jobs = new Map<string, Entry>();
    try {
      const data = JSON.parse(await readFile(path, 'utf8')) as Partial<FileFormat>;
      if (data.version === 1 && data.jobs && typeof data.jobs === 'object') {
        for (const [k, e] of Object.entries(data.jobs)) {
          if (e && Number.isFinite(e.avg) && e.avg >= 0) jobs.set(k, { avg: e.avg, runs: e.runs || 1, task: String(e.task), variant: String(e.variant ?? '') });
        }
      }
    } catch {
      // no history yet, or a damaged file: scheduling falls back to spread's order
    }
    return new Timings(path, jobs);
  }

  /**
   * Expected seconds for a job: its own average, else the mean of the same task and
   * variant on other systems, else undefined.
   */
  estimate(job: TimedJob): number | undefined {
    const own = this.#jobs.get(keyOf(job));
    if (own) return own.avg;
    let sum = 0;
    let n = 0;
    for (const e of this.#jobs.values()) {
      if (e.task === job.task && e.variant === job.variant) {
        sum += e.avg;
        n++;
      }
    }
    return n ? sum / n : undefined;
  }

  record(job: TimedJob, seconds: number): void {
    const key = keyOf(job);
    const old = this.#jobs.get(key);
    const avg = old ? old.avg + ALPHA * (seconds - old.avg) : seconds;
    this.#jobs.set(key, { avg: Math.round(avg * 1000) / 1000, runs: (old?.runs ?? 0) + 1, task: job.task, variant: job.variant });
  }

  get size(): number {
    return this.#jobs.size;
  }

  /** Writes atomically (temp file + rename), keys sorted for stable diffs. */
  async save(): Promise<void> {
    const jobs: Record<string, Entry> = {};
    for (const k of [...this.#jobs.keys()].sort()) jobs[k] = this.#jobs.get(k)!;
    const tmp = `${this.#file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ version: 1, jobs } satisfies FileFormat, null, 1)}\n`);
    await rename(tmp, this.#file);
  }
}
