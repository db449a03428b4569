// One worker's machine through a run, in spread's order (spread-spec §10): project and
// backend prepare before the first job; suite prepare/restore on suite changes; per job
// the combined prepare, execute, artifacts, the combined restore; at the end suite,
// backend and project restore. Failures are tallied as spread counts them. Every script
// may REBOOT the machine (reboot.ts); one that does not come back ends the session.
// spread's -shell, -shell-before, -shell-after and -debug open shells around the scripts (shell.ts).
import { randomUUID } from 'node:crypto';
import type { EnvEntry, Machine } from '../backends/backend.js';
import { lateWarning, ScriptLostError } from '../backends/script.js';
import { jobDebug, jobEnvironment, jobPrepare, jobRestore, scriptTimeouts, type Job, type Project, type ScriptLevel } from '../spread/index.js';
import { execWithReboots, type ScriptRun } from './reboot.js';
import { summaryItem, type FailureKind, type JobCounter, type RunLog, type RunTally } from './report.js';
import type { ShellTerminal } from './shell.js';
import type { FailLogs } from './fail-logs.js';
import { errorMessage } from '../errors.js';

export interface SessionContext {
  readonly project: Project;
  readonly log: RunLog;
  readonly tally: RunTally;
  /** The `(k/n)` of "Executing" lines. */
  readonly progress: JobCounter;
  /** Called after each job's artifacts step when the task has artifacts. */
  readonly artifacts?: (machine: Machine, job: Job, env: EnvEntry[]) => Promise<void>;
  /** Fetches the job's tooltool assets on the machine (before the prepare scripts). */
  readonly assets?: (machine: Machine, job: Job) => Promise<void>;
  readonly onJobTime?: (job: Job, seconds: number) => void;
  /** spread -repeat N: extra rounds of each job. */
  readonly repeat?: number;
  /** spread -restore: run only the restore scripts. */
  readonly restoreOnly?: boolean;
  /**
   * spread -abend: aborted at the first failure of any script (or assets fetch); after it
   * no script starts on any machine (no restore, no new job) and no artifacts are fetched.
   */
  readonly abend?: AbortController;
  /**
   * Aborted when the run is interrupted (SIGINT/SIGTERM): the running script is killed,
   * nothing more runs (no restore: the machine is discarded), the job is aborted.
   */
  readonly stop?: AbortSignal;
  /** spread's -shell, -shell-before, -shell-after or -debug: when shells open, and the terminal they share. */
  readonly shell?: ShellTerminal;
  /** run --fail-logs: each failed script's blocks also go to the file of the job being run. */
  readonly failLogs?: FailLogs;
}

/**
 * A failed script's output, then why it failed beyond it, as spread's client words it: the
 * marker it appends to a script it kills, or, when there is nothing else to show, the exit
 * status (its SSH library's words), never an empty block.
 */
function withReason(res: ScriptRun): string {
  const why = res.killed ? '<kill-timeout reached>' : res.failure;
  const output = res.output.trim();
  if (!why) return output || `Process exited with status ${res.exitCode}`;
  return output ? `${output}\n${why}` : why;
}

/** How spread's summary lists a failed script: `backend:system:` + task, suite/, backend name or `project`. */
function failureItem(job: Job, level: ScriptLevel, context: string): string {
  if (level === 'task') return summaryItem(job.name);
  if (level === 'backend') return `${context}:${job.backend.name}`;
  if (level === 'project') return `${context}:project`;
  return context;
}

export class MachineSession {
  readonly #ctx: SessionContext;
  readonly machine: Machine;
  readonly #label: string;
  /**
   * spread's `last`: the last job taken into a suite (not one aborted for its bad suite).
   * The suite restore when leaving, and the suite, backend and project restores at the
   * end, run with its environment and in its task directory (spec §10).
   */
  #last: Job | undefined;
  #projectPrepared = false;
  #backendPrepared = false;
  /** The suite this machine is inside (the last job's; its restore runs when leaving). */
  #suite: string | undefined;
  /** Suites whose prepare failed here: their later jobs on this machine are aborted (spread's badSuite). */
  readonly #badSuites = new Set<string>();
  #broken = false;
  /** A reboot left the machine unreachable: nothing more runs on it. */
  #lost = false;
  /** A shell was opened during the current job: its time is no measure of the job's. */
  #shelled = false;
  /** The current round's execute failed and was tallied so (an interrupt after it does not make the job aborted too). */
  #executeFailed = false;
  /** The token the current job's scripts run with (ExecOptions.job): what they leave running is killed at its end. */
  #jobMark: string | undefined;
  /** A script of the current job ran with its token, and what it left is not known to be killed yet (see #stopJob). */
  #jobLeftovers = false;

  /** `label` names the machine in log lines (default its name, spread's `backend:system`). */
  constructor(ctx: SessionContext, machine: Machine, label = machine.name) {
    this.#ctx = ctx;
    this.machine = machine;
    this.#label = label;
  }

  get label(): string {
    return this.#label;
  }

  get #stopped(): boolean {
    return this.#ctx.stop?.aborted ?? false;
  }

  /** Interrupted, or -abend after a failure: no script starts any more. */
  get #halted(): boolean {
    return this.#stopped || (this.#ctx.abend?.signal.aborted ?? false);
  }

  /** Counts a failure; under -abend the first one stops the run. */
  #fail(kind: FailureKind | 'execute', item: string): void {
    if (kind === 'execute') this.#ctx.tally.failed.push(item);
    else this.#ctx.tally.fail(kind, item);
    this.#ctx.abend?.abort();
  }

  #env(job: Job): EnvEntry[] {
    return jobEnvironment(job, this.machine.projectPath);
  }

  #announce(job: Job, context: string, verb: string): void {
    // the job's k is assigned as it starts executing (or when it ends without, see run)
    const { progress } = this.#ctx;
    const counter = verb === 'Executing' ? ` (${progress.number(job.name)}/${progress.total})` : '';
    this.#ctx.log.line(`${verb} ${context} (${this.label})${counter}...`);
  }

  /** An interactive shell with the job's environment, in the directory its scripts run in. */
  async #shell(job: Job, cwd: string, message: string): Promise<void> {
    this.#shelled = true;
    await this.#ctx.shell?.open(this.machine, message, this.#env(job), cwd, this.#ctx.stop);
  }

  /**
   * Runs a script with the timeouts of its level, rebooting as it asks. `endsJob`: the job's
   * last script, which kills what the job left when it passes (ExecOptions.endsJob).
   */
  async #exec(job: Job, level: ScriptLevel, script: string, context: string, cwd: string, endsJob = false): Promise<ScriptRun> {
    const { log } = this.#ctx;
    const { warn, kill } = scriptTimeouts(job, this.#ctx.project, level);
    // spread's client names a running script machine first (its c.job, `label (context)`) in
    // the lines it prints meanwhile, unlike the runner's `Executing context (label)` lines
    const running = `${this.label} (${context})`;
    // the job's own scripts: not the project's, backend's or suite's, whose daemons may serve the jobs after it
    const marked = level === 'task' && this.#jobMark !== undefined;
    if (marked) this.#jobLeftovers = true;
    let res: ScriptRun;
    try {
      res = await execWithReboots(this.machine, script, {
        env: this.#env(job),
        cwd,
        warnTimeout: warn,
        killTimeout: kill,
        onWarn: ({ output }) => log.line(lateWarning(running, output)),
        ...(log.verbose > 1 ? { onOutput: (chunk: string) => log.output(chunk) } : {}),
        describe: running,
        log: (line) => log.line(line),
        ...(marked ? { job: this.#jobMark, ...(endsJob ? { endsJob } : {}) } : {}),
        ...(this.#ctx.stop ? { signal: this.#ctx.stop } : {}),
      });
    } catch (err) {
      // The script did not run or its session broke (spawn failed, connection dropped): a
      // failure with no exit status. It counts as the script's failure, and the machine
      // takes no more jobs (its restores are still tried).
      this.#broken = true;
      const output = err instanceof ScriptLostError ? err.output : '';
      return { exitCode: -1, output, killed: false, failure: `error: ${errorMessage(err)}` };
    }
    if (res.lost) this.#lost = this.#broken = true;
    if (res.jobStopped) this.#jobLeftovers = false;
    return res;
  }

  /**
   * Runs a script; on failure prints its output and the matching debug output, tallies,
   * returns false. Shells open around it as spread's run() opens them (shell.ts). `endsJob`:
   * the script is the job's last (#exec); its debug script, run when it fails, is not.
   */
  async #step(job: Job, level: ScriptLevel, script: string, context: string, verb: 'Preparing' | 'Executing' | 'Restoring', failure: FailureKind | 'execute', cwd: string, debug: string, endsJob = false): Promise<boolean> {
    // After a lost machine the scripts still due are not run (nor tallied): nothing can run them.
    // Nor after an interrupt or -abend, and a script an interrupt killed is no failure of its own (the job is aborted).
    if (this.#lost || this.#halted) return false;
    if (script === '') return true;
    this.#announce(job, context, verb);
    const modes = this.#ctx.shell?.modes ?? {};
    const executing = verb === 'Executing';
    if (executing && (modes.shell || modes.before)) {
      // spread's words for both modes
      await this.#shell(job, cwd, `Starting shell instead of executing ${job.name}...`);
      if (this.#stopped) return false;
      // -shell: the shell stands for the execute script, and the task counts as successful
      if (modes.shell) return true;
    }
    const res = await this.#exec(job, level, script, context, cwd, endsJob);
    if (this.#stopped) return false;
    if (res.exitCode === 0) {
      if (executing && modes.after) await this.#shell(job, cwd, `Starting shell after executing ${job.name}...`);
      return true;
    }
    const what = { Preparing: 'preparing', Executing: 'executing', Restoring: 'restoring' }[verb];
    await this.#block(job, `Error ${what} ${context} (${this.label})`, withReason(res));
    this.#fail(failure, failure === 'execute' ? summaryItem(job.name) : failureItem(job, level, context));
    if (failure === 'execute') this.#executeFailed = true;
    if (debug !== '' && !this.#lost) {
      const dbg = await this.#exec(job, level, debug, context, cwd);
      // as spread: a debug script that fails is an error of its own; output, when there is some, is shown
      if (dbg.exitCode !== 0) await this.#block(job, `Error debugging ${context} (${this.label})`, withReason(dbg));
      else if (dbg.output !== '') await this.#block(job, `Debug output for ${context} (${this.label})`, dbg.output);
    }
    // after any failed script, its debug output printed; the failure still counts
    if ((modes.debug || modes.after) && !this.#lost && !this.#stopped) await this.#shell(job, cwd, 'Starting shell to debug...');
    return false;
  }

  /** A script's output in the run's log, and in the job's fail log (--fail-logs). */
  async #block(job: Job, title: string, body: string): Promise<void> {
    this.#ctx.log.block(title, body);
    await this.#ctx.failLogs?.add(job.name, title, body);
  }

  #taskDir(job: Job): string {
    return job.task.name;
  }

  /** Runs one job; false when the machine must not take more jobs. */
  async run(job: Job): Promise<boolean> {
    this.#jobMark = randomUUID();
    this.#jobLeftovers = false;
    try {
      return await this.#run(job);
    } finally {
      await this.#stopJob();
      // a job finished without executing gets its k now (spec §16)
      this.#ctx.progress.number(job.name);
    }
  }

  /**
   * Kills what the job's scripts left running (a `cmd &`, a daemon), where the machine can
   * tell them apart: not after an interrupt (the machine is discarded) or an -abend (kept
   * for inspection as it is), nor on a machine that did not come back from a reboot. Not
   * when no script of the job ran, or when its last one killed them already (#exec).
   */
  async #stopJob(): Promise<void> {
    const mark = this.#jobMark;
    this.#jobMark = undefined;
    if (mark === undefined || !this.#jobLeftovers || this.#lost || this.#halted || !this.machine.stopJob) return;
    // one that cannot be reached now is reached again when it is discarded, one an interrupt cut is not (SshMachine.stopJob)
    await this.machine.stopJob(mark, this.#ctx.stop).catch(() => undefined);
  }

  async #run(job: Job): Promise<boolean> {
    const { project, tally } = this.#ctx;
    const sys = `${job.backend.name}:${job.system.name}`;
    if (this.#lost || this.#halted) return this.#abort(job);
    if (this.#ctx.restoreOnly) return this.#restoreOnly(job);
    if (this.#badSuites.has(job.suite.name)) {
      tally.aborted.push(summaryItem(job.name));
      return true;
    }
    if (this.#suite !== undefined && this.#suite !== job.suite.name && !(await this.#leaveSuite())) return this.#abort(job);
    this.#last = job;
    if (!this.#projectPrepared) {
      this.#projectPrepared = true;
      if (!(await this.#step(job, 'project', project.prepare, sys, 'Preparing', 'project prepare', '.', project.debug))) return this.#abort(job);
    }
    if (!this.#backendPrepared) {
      this.#backendPrepared = true;
      if (!(await this.#step(job, 'backend', job.backend.prepare, sys, 'Preparing', 'backend prepare', '.', job.backend.debug))) return this.#abort(job);
    }
    if (this.#suite === undefined) {
      this.#suite = job.suite.name;
      if (!(await this.#step(job, 'suite', job.suite.prepare, `${sys}:${job.suite.name}`, 'Preparing', 'suite prepare', this.#taskDir(job), job.suite.debug))) {
        this.#badSuites.add(job.suite.name);
        tally.aborted.push(summaryItem(job.name));
        // a prepare that failed goes on to the next job; one that could not run (the machine
        // dropped off or did not come back from a reboot) takes no more: its jobs go to the other machines
        return !this.#broken;
      }
    }
    const started = Date.now();
    this.#shelled = false;
    if (this.#ctx.assets) {
      try {
        await this.#ctx.assets(this.machine, job);
      } catch (err) {
        // killed by an interrupt: the job is aborted, as when its script is killed
        if (this.#stopped) return this.#abort(job);
        this.#ctx.log.line(`Error fetching assets of ${job.name} (${this.label}): ${errorMessage(err)}`);
        this.#fail('task prepare', summaryItem(job.name));
        tally.aborted.push(summaryItem(job.name));
        return !this.#halted;
      }
    }
    if (this.#halted) return this.#abort(job);
    const debug = jobDebug(job, project);
    const rounds = (this.#ctx.repeat ?? 0) + 1;
    // -repeat N: prepare, execute and restore N+1 times, stopping at the first failure.
    /**
     * The rounds that ran the job (their prepare passed) and when the last of them ended: a
     * round whose prepare failed measures no run of it, but the rounds before it did (an
     * unknown job is ordered as the longest, and an average on record would not move).
     */
    let measured = { rounds: 0, until: started };
    for (let round = 1; round <= rounds; round++) {
      /** This round's prepare failed: the job was aborted. */
      let unprepared = false;
      let ok = await this.#step(job, 'task', jobPrepare(job, project), job.name, 'Preparing', 'task prepare', this.#taskDir(job), debug);
      if (ok) {
        const runs = !this.#halted;
        this.#executeFailed = false;
        ok = await this.#step(job, 'task', job.task.execute, job.name, 'Executing', 'execute', this.#taskDir(job), debug);
        if (ok) tally.successful++;
        // not run (-abend elsewhere) or killed by an interrupt: the job is aborted, not failed
        else if ((!runs || this.#stopped) && !this.#executeFailed) tally.aborted.push(summaryItem(job.name));
      } else {
        tally.aborted.push(summaryItem(job.name));
        unprepared = true;
      }
      if (this.#halted) {
        // interrupted, or -abend (here or on another machine): no artifacts, no restore;
        // the machine is discarded, or kept as it is for -abend
        this.#broken = true;
        return false;
      }
      if (this.#ctx.artifacts && !this.#lost && job.task.artifacts.length > 0 && (!ok || round === rounds)) {
        // As spread, the run goes on; the summary lists the job (RunTally.artifactsLost).
        await this.#ctx.artifacts(this.machine, job, this.#env(job)).catch((err: Error) => {
          this.#ctx.log.line(`Error fetching artifacts of ${job.name}: ${err.message}`);
          tally.artifactsLost.push(summaryItem(job.name));
        });
      }
      // the job's debug ran already if its prepare or execute failed: spread runs it once per job;
      // the restore of the last round (-repeat), or of a failed one, is the job's last script
      const last = !ok || round === rounds;
      const restored = await this.#step(job, 'task', jobRestore(job, project), job.name, 'Restoring', 'task restore', this.#taskDir(job), ok ? debug : '', last);
      if (!restored) {
        this.#broken = true;
        return false;
      }
      if (!unprepared) measured = { rounds: round, until: Date.now() };
      if (!ok) break;
    }
    // the time of one round: what the next run's scheduling estimates the job by
    if (!this.#shelled && measured.rounds > 0) this.#ctx.onJobTime?.(job, (measured.until - started) / 1000 / measured.rounds);
    return !this.#broken;
  }

  /** spread -restore: nothing is prepared or executed; every level's restore runs as if it had been. */
  async #restoreOnly(job: Job): Promise<boolean> {
    this.#projectPrepared = true;
    this.#backendPrepared = true;
    if (this.#suite !== undefined && this.#suite !== job.suite.name && !(await this.#leaveSuite())) return this.#abort(job);
    this.#last = job;
    this.#suite = job.suite.name;
    const runs = !this.#halted;
    const restored = await this.#step(job, 'task', jobRestore(job, this.#ctx.project), job.name, 'Restoring', 'task restore', this.#taskDir(job), jobDebug(job, this.#ctx.project), true);
    // not run (-abend elsewhere) or killed by an interrupt: aborted
    if (!restored && (!runs || this.#stopped)) return this.#abort(job);
    if (!restored) this.#broken = true;
    return restored;
  }

  #abort(job: Job): boolean {
    this.#ctx.tally.aborted.push(summaryItem(job.name));
    this.#broken = true;
    return false;
  }

  /**
   * Runs the restore of the suite the machine is inside. The machine is out of the suite
   * only when it succeeds: a failed one (the machine takes no more jobs) is tried again,
   * and counted again, by finish() (spec §16: a suite restore failure can be listed twice).
   */
  async #leaveSuite(): Promise<boolean> {
    const job = this.#last;
    if (this.#suite === undefined || !job) return true;
    const sys = `${job.backend.name}:${job.system.name}`;
    const restored = await this.#step(job, 'suite', job.suite.restore, `${sys}:${job.suite.name}`, 'Restoring', 'suite restore', this.#taskDir(job), job.suite.debug);
    if (restored) this.#suite = undefined;
    return restored;
  }

  /** End of the worker: suite, backend and project restore (project restore even after a failed prepare). */
  async finish(): Promise<void> {
    const job = this.#last;
    if (!job || this.#lost || this.#halted) return;
    const { project } = this.#ctx;
    const sys = `${job.backend.name}:${job.system.name}`;
    await this.#leaveSuite();
    if (this.#backendPrepared) await this.#step(job, 'backend', job.backend.restore, sys, 'Restoring', 'backend restore', '.', job.backend.debug);
    if (this.#projectPrepared) await this.#step(job, 'project', project.restore, sys, 'Restoring', 'project restore', '.', project.debug);
  }
}
