// spread's interactive modes (runner.go run, client.go Shell): -shell opens a shell on the
// machine instead of executing the task, -shell-before before executing it, -shell-after
// after executing it and after any failed script, -debug after any failed script (once its
// debug output is printed). Shells take the one terminal in turn; while one is open the
// other machines go on, their log lines held until it closes.
import type { EnvEntry, Machine } from '../backends/backend.js';
import type { RunLog } from './report.js';
import { errorMessage } from '../errors.js';

export interface ShellModes {
  /** -shell: a shell instead of each task's execute script (the task counts as successful). */
  readonly shell?: boolean;
  /** -shell-before: a shell before each task's execute script. */
  readonly before?: boolean;
  /** -shell-after: a shell after each task's execute script, and after a failed script. */
  readonly after?: boolean;
  /** -debug: a shell after a failed script. */
  readonly debug?: boolean;
}

/** spread's prompt: `backend:system dir# `, with the project path shown as `...`. */
const SHELL_PS1 = '\\$SPREAD_BACKEND:\\$SPREAD_SYSTEM \\${PWD/#\\$SPREAD_PATH/...}# ';

/** The terminal the run's shells share: one at a time, across every machine. */
export class ShellTerminal {
  #turn: Promise<void> = Promise.resolve();

  constructor(
    readonly modes: ShellModes,
    readonly log: RunLog,
  ) {}

  /**
   * Logs `message`, waits for the terminal, runs a shell on the machine with the job's
   * environment (plus spread's PS1, and SPREAD_REBOOT=0 as every script's first run has)
   * in `cwd`, then logs `Continuing...`. A shell that cannot start, or exits with an error
   * status, is logged as spread does; the run goes on either way.
   */
  async open(machine: Machine, message: string, env: readonly EnvEntry[], cwd: string, signal?: AbortSignal): Promise<void> {
    const { log } = this;
    log.line(message);
    const shellEnv: EnvEntry[] = [...env.filter(([k]) => k !== 'PS1' && k !== 'SPREAD_REBOOT'), ['PS1', SHELL_PS1], ['SPREAD_REBOOT', '0']];
    const previous = this.#turn;
    let done!: () => void;
    this.#turn = new Promise((resolve) => (done = resolve));
    try {
      // interrupted while waiting for the terminal: no shell any more
      await untilAborted(previous, signal);
      if (signal?.aborted) return;
      log.hold();
      let problem: string | undefined;
      try {
        const status = await machine.shell({ env: shellEnv, cwd, ...(signal ? { signal } : {}) });
        if (status !== 0) problem = `the shell exited with status ${status}`;
      } catch (err) {
        problem = errorMessage(err);
      } finally {
        // the lines held meanwhile, then this shell's last, before the next shell holds the log
        log.release();
      }
      // a shell ended by an interrupt is no problem of its own
      if (problem && !signal?.aborted) log.line(`Error running debug shell: ${problem}`);
      log.line('Continuing...');
    } finally {
      done(); // whatever happened, the next shell gets the terminal
    }
  }
}

/** Resolves when `p` does, or at once when `signal` is aborted. */
function untilAborted(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const stop = (): void => resolve();
    signal.addEventListener('abort', stop, { once: true });
    void p.then(() => {
      signal.removeEventListener('abort', stop);
      resolve();
    });
  });
}
