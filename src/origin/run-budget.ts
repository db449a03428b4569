// What the machines of one run may upload: a run token (client/run-token.ts) is handed to
// every machine of the run, so a machine that runs anything can upload under
// /artifacts/<run>/ for as long as the token lives. Without a budget one of them could fill
// the origin's disk. Write tokens (the runner, an operator) are not counted against it.
import { LRUCache } from 'lru-cache';
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
}

/** How many runs' usage is kept in memory; one pushed out is counted from disk again. */
const RUNS_KEPT = 10_000;

export class RunArtifactBudget {
  readonly #names: NameStore;
  readonly #limits: RunArtifactLimits;
  /** Per run, its usage: at first what its stored artifacts add up to, then every upload since (a replaced file counts twice: its old blob stays until a prune). */
  readonly #usage = new LRUCache<string, Promise<Usage>>({ max: RUNS_KEPT });

  constructor(names: NameStore, limits: RunArtifactLimits) {
    this.#names = names;
    this.#limits = limits;
  }

  /**
   * Takes `bytes` and one file from the run's budget before the upload is read, or refuses
   * it (507) when they do not fit. Returns what gives them back: to call when the upload
   * fails (nothing was stored). Concurrent uploads each take their share first, so together
   * they never exceed the budget.
   */
  async reserve(run: string, bytes: number): Promise<() => void> {
    const usage = await this.#usageOf(run);
    const { maxBytes, maxFiles } = this.#limits;
    if (usage.files + 1 > maxFiles) {
      throw new FleetError('FC_ERR_INSUFFICIENT_STORAGE', `run ${run} has used its budget of ${maxFiles} artifact files (limits.maxRunArtifactsFiles of the origin)`);
    }
    if (usage.bytes + bytes > maxBytes) {
      throw new FleetError(
        'FC_ERR_INSUFFICIENT_STORAGE',
        `run ${run} has uploaded ${formatBytes(usage.bytes)} of artifacts: ${formatBytes(bytes)} more exceeds its budget of ${formatBytes(maxBytes)} (limits.maxRunArtifactsSize of the origin)`,
      );
    }
    usage.bytes += bytes;
    usage.files += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      usage.bytes -= bytes;
      usage.files -= 1;
    };
  }

  #usageOf(run: string): Promise<Usage> {
    let usage = this.#usage.get(run);
    if (!usage) {
      usage = this.#stored(run);
      // a failed count is not kept: the next upload counts again
      usage.catch(() => this.#usage.delete(run));
      this.#usage.set(run, usage);
    }
    return usage;
  }

  /** What the run's stored artifacts add up to (after a restart, or once its entry was pushed out). */
  async #stored(run: string): Promise<Usage> {
    const usage: Usage = { bytes: 0, files: 0 };
    for await (const segments of this.#names.walk(['artifacts', run])) {
      const record = await this.#names.find<NameRecord>(segments).catch(() => undefined);
      usage.files += 1;
      usage.bytes += typeof record?.size === 'number' ? record.size : 0;
    }
    return usage;
  }
}
