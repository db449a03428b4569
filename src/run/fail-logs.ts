// `run --fail-logs DIR`: the error and debug output of each failed job, as the run's log
// prints it, also in DIR/<job name>.log, for a CI to keep beside the run (spread users ask
// for it: canonical/spread#174). A file that cannot be written is said once, not fatal.
import { appendFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { blockText, type RunLog } from './report.js';

export class FailLogs {
  readonly #dir: string;
  readonly #log: RunLog;
  #warned = false;

  private constructor(dir: string, log: RunLog) {
    this.#dir = dir;
    this.#log = log;
  }

  static async create(dir: string, log: RunLog): Promise<FailLogs> {
    await mkdir(dir, { recursive: true });
    return new FailLogs(dir, log);
  }

  /** The file of a job: a flat directory, the name's "/" as "_". */
  fileOf(jobName: string): string {
    return join(this.#dir, `${jobName.replaceAll('/', '_')}.log`);
  }

  /** Appends one block (an error, a debug output) to the job's file. */
  async add(jobName: string, title: string, body: string): Promise<void> {
    await appendFile(this.fileOf(jobName), blockText(title, body)).catch((err: Error) => {
      if (this.#warned) return;
      this.#warned = true;
      this.#log.line(`WARNING: cannot write the fail log of ${jobName}: ${err.message}`);
    });
  }
}
