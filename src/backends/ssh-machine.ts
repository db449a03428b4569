// A machine reached over SSH (the `ssh` and `adhoc` backends): an SshClient plus the
// identity a provider needs to release it, and a reboot that swaps in a new client.
import type { Readable } from 'node:stream';
import type { ExecOptions, ExecResult, Machine, MachineRecord, Provider, RebootOptions, ShellOptions, SystemSpec } from './backend.js';
import { errorMessage, UpstreamError } from '../errors.js';
import { rebootOverSsh, type RebootSettings } from './ssh-reboot.js';
import { SshClient, type ConnectOptions, type SshTarget } from '../ssh/client.js';

/** How stopLostScripts connects: one attempt and one retry of 10 s each. */
const LOST_SCRIPTS_CONNECT: ConnectOptions = { timeout: 10_000, retries: 1 };

export class SshMachine implements Machine {
  readonly name: string;
  readonly address: string;
  readonly system: SystemSpec;
  readonly backendName: string;
  readonly projectPath: string;
  readonly executorKey: string;
  #client: SshClient;
  readonly #provider: Provider;
  readonly #target: SshTarget;
  readonly #reboot: RebootSettings;
  /** Jobs whose processes stopJob could not kill (the connection was lost, not an interrupt): stopLostScripts does. */
  readonly #jobsLeft: string[] = [];
  /** Lost scripts' tokens stopLostScripts has stopped, and those of an earlier run's record it has yet to stop. */
  readonly #scriptsStopped = new Set<string>();
  #scriptsLeft: string[] = [];

  private constructor(provider: Provider, system: SystemSpec, address: string, target: SshTarget, client: SshClient, projectPath: string, reboot: RebootSettings) {
    this.#provider = provider;
    this.#client = client;
    this.#target = target;
    this.#reboot = reboot;
    this.backendName = provider.name;
    this.name = `${provider.name}:${system.name}`;
    this.system = system;
    this.address = address;
    this.projectPath = projectPath;
    this.executorKey = `ssh:${target.host}`;
  }

  static async connect(
    provider: Provider,
    system: SystemSpec,
    address: string,
    target: SshTarget,
    projectPath: string,
    options: ConnectOptions,
    reboot: RebootSettings,
  ): Promise<SshMachine> {
    const client = await SshClient.connect(target, options, projectPath);
    return new SshMachine(provider, system, address, target, client, projectPath, reboot);
  }

  exec(script: string, options?: ExecOptions): Promise<ExecResult> {
    return this.#client.exec(script, options);
  }

  shell(options?: ShellOptions): Promise<number> {
    return this.#client.shell(options);
  }

  upload(source: Readable | string, remotePath: string, mode?: number, signal?: AbortSignal): Promise<void> {
    return this.#client.upload(source, remotePath, mode, signal);
  }

  close(): Promise<void> {
    return this.#client.close();
  }

  async reboot(options: RebootOptions): Promise<void> {
    // the run's interrupt cuts an attempt short: a machine that takes connections and does not
    // answer yet (its sshd not up, its packets dropped) held a stopping run for the attempt's 10 s
    const connect = (timeout: number) => SshClient.connect(this.#target, { timeout, ...(options.signal ? { signal: options.signal } : {}) }, this.projectPath);
    // the old client's lost scripts (lostScripts) go with it, unswept: the machine answers with
    // another boot identity, so nothing they started runs any more
    this.#client = await rebootOverSsh(this.name, this.#client, connect, this.#reboot, options);
  }

  record(): MachineRecord {
    const r: MachineRecord = { backend: this.backendName, system: this.system.name, address: this.address };
    if (this.#target.username !== undefined) r.username = this.#target.username;
    if (this.#target.password !== undefined) r.password = this.#target.password;
    // what stopLostScripts could not stop goes on record, for the run taking the machine back
    const lostScripts = this.#lostScripts();
    if (lostScripts.length > 0) r.lostScripts = lostScripts;
    if (this.#jobsLeft.length > 0) r.lostJobs = [...this.#jobsLeft];
    return r;
  }

  /** The lost scripts' tokens not stopped yet: this run's (SshClient lostScripts) and the record's it was taken back with. */
  #lostScripts(): string[] {
    return [...this.#scriptsLeft, ...this.#client.lostScripts().filter((token) => !this.#scriptsStopped.has(token))];
  }

  /** Machine.stopLostScripts: connects as LOST_SCRIPTS_CONNECT says, `signal` (the run's) cutting it short. */
  stopLostScripts(signal?: AbortSignal): Promise<void> {
    return this.stopLostScriptsOver({ ...LOST_SCRIPTS_CONNECT, ...(signal ? { signal } : {}) });
  }

  /**
   * Stops what the lost scripts and jobs of `record` (a machine kept by an earlier run that
   * could not stop them) may still run, before the machine serves a job: rejects, its
   * connection closed, when it cannot, and the machine is not taken back. `signal` (the run's)
   * cuts it short, as it does stopLostScripts.
   */
  async stopLeftOnRecord(record: MachineRecord, signal?: AbortSignal): Promise<void> {
    this.#scriptsLeft = [...(record.lostScripts ?? [])];
    this.#jobsLeft.push(...(record.lostJobs ?? []));
    try {
      await this.stopLostScripts(signal);
    } catch (err) {
      await this.close().catch(() => undefined);
      throw new UpstreamError(`the processes of a script whose connection was lost in an earlier run may still run there, and they cannot be stopped: ${errorMessage(err)}`);
    }
  }

  /**
   * Stops what the scripts whose connection was lost may have left running (SshClient
   * lostScripts, and those an earlier run's record lists), and the jobs stopJob could not
   * stop, over a new connection: a machine that never saw its connection drop (a network
   * cut) runs them still. Rejects when it cannot (the machine does not answer): the machine
   * must then serve no other job. `connect`: how the new connection is tried; its signal (the
   * run's) cuts the sweep too, connected or not.
   */
  async stopLostScriptsOver(connect: ConnectOptions): Promise<void> {
    const lost = this.#lostScripts();
    if (lost.length === 0 && this.#jobsLeft.length === 0) return;
    const client = await SshClient.connect(this.#target, connect, this.projectPath);
    try {
      if (lost.length > 0) await client.stopScripts(lost, connect.signal);
      for (const job of this.#jobsLeft) await client.stopJob(job, connect.signal);
    } finally {
      await client.close();
    }
    // stopped: neither swept again nor kept on record
    for (const token of lost) this.#scriptsStopped.add(token);
    this.#scriptsLeft = [];
    this.#jobsLeft.length = 0;
  }

  async stopJob(job: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.#client.stopJob(job, signal);
    } catch (err) {
      // cut by the run's interrupt: nothing is killed after one (docs/run.md), at discard neither
      if (!signal?.aborted) this.#jobsLeft.push(job);
      throw err;
    }
  }

  async discard(signal?: AbortSignal): Promise<void> {
    await this.close();
    await this.#provider.discard(this, signal);
  }
}
