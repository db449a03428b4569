// Ctrl-C and SIGTERM during a run, as spread takes an interrupt: the first one stops the
// run (no new job, the running scripts killed, no restore, the machines discarded or kept
// as the run would have, the summary so far); a second one gives up waiting and exits at
// once, killing the scripts still running here and leaving the machines on record for
// `run --discard` (reuse.ts: RunningMachines).
import { setMaxListeners } from 'node:events';
import { constants } from 'node:os';
import { killLiveGroups } from '../backends/process-group.js';
import type { RunLog } from './report.js';

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

export class RunInterrupt {
  readonly #ac = new AbortController();
  readonly #log: RunLog;
  /** The command that discards the machines left on record, as the user types it. */
  readonly #discardCommand: string;
  #received: NodeJS.Signals | undefined;

  private constructor(log: RunLog, discardCommand: string) {
    this.#log = log;
    this.#discardCommand = discardCommand;
    // every machine's agent command listens to it: hundreds are expected
    setMaxListeners(0, this.#ac.signal);
  }

  /** Takes SIGINT and SIGTERM from now until dispose(); a second one names `discardCommand`. */
  static install(log: RunLog, discardCommand: string): RunInterrupt {
    const interrupt = new RunInterrupt(log, discardCommand);
    for (const sig of SIGNALS) process.on(sig, interrupt.#handle);
    return interrupt;
  }

  readonly #handle = (sig: NodeJS.Signals): void => {
    if (this.#received) {
      this.#log.release(); // what a shell's turn held is printed before the exit
      this.#log.line(`Received ${sig} again, exiting at once; discard the machines left with: ${this.#discardCommand}`);
      // the scripts running here (a discard, an allocate) end with the run: the machines'
      // records stay true, and --discard runs what did not finish
      killLiveGroups();
      process.exit(128 + constants.signals[sig]);
    }
    this.#received = sig;
    this.#log.line(`Received ${sig}, stopping: running scripts are killed, machines discarded (again to exit at once)...`);
    this.#ac.abort();
  };

  /** Aborted at the first signal. */
  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  /** The signal that stopped the run, if one did. */
  get received(): NodeJS.Signals | undefined {
    return this.#received;
  }

  dispose(): void {
    for (const sig of SIGNALS) process.off(sig, this.#handle);
  }
}
