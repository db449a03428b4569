// What the machines of one run may upload: a run token (client/run-token.ts) is handed to
// every machine of the run, so a machine that runs anything can upload under
// /artifacts/<run>/ for as long as the token lives. Without a budget one of them could fill
// the origin's disk. Uploads with a write token (the runner, an operator) do not take from it;
// counted from disk (after a restart), a run's stored artifacts count whoever uploaded them.
import { FleetError } from '../errors.js';
import { formatBytes } from '../config/units.js';
import type { NameRecord, NameStore } from '../store/names.js';

export interface RunArtifactLimits {
  /** Bytes a run token may upload for its run, artifacts already stored included. */
  readonly maxBytes: number;
  /** Uploads (files) a run token may make for its run, artifacts already stored included. */
  readonly maxFiles: number;
}

/** The defaults of limits.maxRunArtifactsSize and limits.maxRunArtifactsFiles (origin/config.ts). */
export const DEFAULT_RUN_ARTIFACTS: RunArtifactLimits = { maxBytes: 50 * 1024 ** 3, maxFiles: 100_000 };

interface Usage {
  bytes: number;
  files: number;
  /** Reservations whose upload has not ended: the entry is not forgotten meanwhile (a count from disk would miss them). */
  open: number;
}

/** How many runs' usage is kept in memory; an idle one forgotten is counted from disk again. */
const RUNS_KEPT = 10_000;

export class RunArtifactBudget {
  readonly #names: NameStore;
  readonly #limits: RunArtifactLimits;
  /**
   * Per run, least recently used first: at first what its stored artifacts add up to, then
   * every upload since (a replaced file counts twice: its old blob stays on disk).
   */
  readonly #usage = new Map<string, Promise<Usage>>();
  /** Usage counted (the promise settled), for #forgetIdle to read without waiting. */
  readonly #counted = new WeakMap<Promise<Usage>, Usage>();

  readonly #runsKept: number;

  constructor(names: NameStore, limits: RunArtifactLimits, runsKept = RUNS_KEPT) {
    this.#names = names;
    this.#limits = limits;
    this.#runsKept = runsKept;
  }

  /**
   * Takes `bytes` and one file from the run's budget before the upload is read, or refuses
   * it (FC_ERR_QUOTA) when they do not fit. Returns what to call once the upload ended:
   * `stored` false gives them back. Concurrent uploads each take their share first, so
   * together they never exceed the budget.
   */
  async reserve(run: string, bytes: number): Promise<(stored: boolean) => void> {
    const usage = await this.#usageOf(run);
    const { maxBytes, maxFiles } = this.#limits;
    if (usage.files + 1 > maxFiles) {
      throw new FleetError('FC_ERR_QUOTA', `run ${run} has used its budget of ${maxFiles} artifact files (limits.maxRunArtifactsFiles of the origin)`);
    }
    if (usage.bytes + bytes > maxBytes) {
      throw new FleetError(
        'FC_ERR_QUOTA',
        `run ${run} has uploaded ${formatBytes(usage.bytes)} of artifacts: ${formatBytes(bytes)} more exceeds its budget of ${formatBytes(maxBytes)} (limits.maxRunArtifactsSize of the origin)`,
      );
    }
    usage.bytes += bytes;
    usage.files += 1;
    usage.open += 1;
    let ended = false;
    return (stored) => {
      if (ended) return;
      ended = true;
      usage.open -= 1;
      if (stored) return;
      usage.bytes -= bytes;
      usage.files -= 1;
    };
  }

  #usageOf(run: string): Promise<Usage> {
    let usage = this.#usage.get(run);
    if (usage) {
      this.#usage.delete(run); // to the most recent end
    } else {
      usage = this.#stored(run);
      // a failed count is not kept: the next upload counts again
      usage.then((counted) => this.#counted.set(usage!, counted), () => this.#usage.get(run) === usage && this.#usage.delete(run));
      this.#forgetIdle();
    }
    this.#usage.set(run, usage);
    return usage;
  }

  /** Past runsKept runs, forgets the least recently used that are counted and have no upload in flight. */
  #forgetIdle(): void {
    let excess = this.#usage.size + 1 - this.#runsKept;
    for (const [run, usage] of this.#usage) {
      if (excess <= 0) return;
      const counted = this.#counted.get(usage);
      if (counted === undefined || counted.open > 0) continue;
      this.#usage.delete(run);
      excess--;
    }
  }

  /** What the run's stored artifacts add up to (after a restart, or once its entry was forgotten). */
  async #stored(run: string): Promise<Usage> {
    const usage: Usage = { bytes: 0, files: 0, open: 0 };
    for await (const segments of this.#names.walk(['artifacts', run])) {
      const record = await this.#names.find<NameRecord>(segments).catch(() => undefined);
      usage.files += 1;
      usage.bytes += typeof record?.size === 'number' ? record.size : 0;
    }
    return usage;
  }
}
