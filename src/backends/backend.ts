// The backend interface: a Provider allocates Machines; a Machine runs scripts and moves
// files through an Executor (a local bash or an ssh2 session). One file per backend
// beside this one; registry.ts maps a backend `type:` to its factory.
import type { Readable } from 'node:stream';
import type { OutputBuffer } from './script.js';

/** A system as a backend needs it (narrow on purpose: the spread model owns the full type). */
export interface SystemSpec {
  /** The system name, e.g. "ubuntu-24.04". */
  name: string;
  /** SSH user; default root. */
  username?: string;
  /** SSH password; backends fall back to the session password. */
  password?: string;
}

/** One environment entry, emitted in order as `export KEY="value"` (spread's rule). */
export type EnvEntry = readonly [key: string, value: string];

export interface ExecOptions {
  /** Ordered environment; values are shell-evaluated on the machine like spread's. */
  env?: readonly EnvEntry[];
  /** Working directory on the machine (default: the machine's project path). */
  cwd?: string;
  /** `set -x` before the script (spread traces; default true). */
  trace?: boolean;
  /** Replace PATH by spread's fixed one (script.ts REMOTE_PATH), as spread does for its local allocate and discard scripts. */
  fixedPath?: boolean;
  /** Called with each chunk of combined stdout+stderr as it arrives. */
  onOutput?: (chunk: string) => void;
  /** Every warnTimeout ms while the script runs, called with the output tail. */
  warnTimeout?: number;
  onWarn?: (info: { elapsedMs: number; output: ReturnType<OutputBuffer['warnTail']> }) => void;
  /** After killTimeout ms the script's process group is killed (SIGKILL). */
  killTimeout?: number;
  /** Aborting kills the script like a kill timeout. */
  signal?: AbortSignal;
  /**
   * The job the script belongs to (a token of the caller's): on machines that have
   * stopJob, the script's processes carry it, and stopJob kills those still running.
   */
  job?: string;
  /**
   * With `job`: the script is the job's last. On machines that have stopJob, one that exits
   * 0 then kills what the job left, as stopJob would, within the script's kill timeout
   * (ExecResult.jobStopped says so): the job needs no stopJob after it.
   */
  endsJob?: boolean;
}

export interface ExecResult {
  exitCode: number;
  /** Combined output (its last 2^20 characters when longer: OUTPUT_CAP in script.ts). */
  output: string;
  /** True when the script was killed by the kill timeout or the signal. */
  killed: boolean;
  /** True when the script (ExecOptions.endsJob) killed what its job left running. */
  jobStopped?: boolean;
}

/** An interactive shell on the machine (spread's -shell, -debug, ...). */
export interface ShellOptions {
  /** Ordered environment, exported as for scripts. */
  env?: readonly EnvEntry[];
  /** Working directory on the machine (default: the machine's project path). */
  cwd?: string;
  /** Aborting ends the shell (the run was interrupted). */
  signal?: AbortSignal;
}

/** Where scripts run and files move. Implemented by LocalExecutor and SshExecutor. */
export interface Executor {
  /** Runs a script under `/bin/bash -` with spread's wrapper (see script.ts). */
  exec(script: string, options?: ExecOptions): Promise<ExecResult>;
  /**
   * Runs bash on the machine with this process's stdin, stdout and stderr until it exits:
   * interactive (a terminal, a pty over SSH) when stdin is a TTY, else reading commands
   * from stdin. Resolves with its exit status; rejects when it cannot be started.
   */
  shell(options?: ShellOptions): Promise<number>;
  /** Writes a stream or local file to a path on the machine (parents created); aborting `signal` cuts it. */
  upload(source: Readable | string, remotePath: string, mode?: number, signal?: AbortSignal): Promise<void>;
  /** Releases connections (not the machine). */
  close(): Promise<void>;
}

/** How long a reboot may take and how to say it is slow (spread: the script's timeouts). */
export interface RebootOptions {
  /** Give up when the machine is not back after this many ms. */
  timeout: number;
  /** Every warnTimeout ms while waiting, onWarn is called. */
  warnTimeout?: number;
  onWarn?: () => void;
  signal?: AbortSignal;
}

/** Enough to find a machine again with `-reuse` (written to the reuse file). */
export interface MachineRecord {
  backend: string;
  system: string;
  address: string;
  username?: string;
  password?: string;
  /** Backend-specific data (the local backend keeps its directory here). */
  data?: string;
  /**
   * Tokens of the scripts whose connection was lost, and of the jobs, whose processes could not
   * be stopped before the machine was kept (SSH machines): reuse stops them before it hands the
   * machine back. Absent from records written before, and where nothing was left.
   */
  lostScripts?: string[];
  lostJobs?: string[];
}

export interface Machine extends Executor {
  /** Label used in logs: `backend:system` (spread's server label). */
  readonly name: string;
  /** host[:port] for remote machines; the directory for local ones. */
  readonly address: string;
  readonly system: SystemSpec;
  readonly backendName: string;
  /** Where the project lives on the machine: the value of SPREAD_PATH. */
  readonly projectPath: string;
  /** Key for dispatch-storm control: machines sharing a host share it. */
  readonly executorKey: string;
  record(): MachineRecord;
  /**
   * Reboots the machine for spread's REBOOT and resolves once it is back and usable
   * (a new connection where there is one). Throws RebootError when it is not.
   */
  reboot(options: RebootOptions): Promise<void>;
  /** Closes connections and releases the machine through its provider (Provider.discard, with `signal`). */
  discard(signal?: AbortSignal): Promise<void>;
  /**
   * Kills what the scripts run with ExecOptions.job `job` left running, on SSH machines;
   * absent where a job's processes cannot be told apart (a local machine).
   */
  stopJob?(job: string, signal?: AbortSignal): Promise<void>;
  /**
   * Kills what the scripts whose connection was lost (and the jobs stopJob could not stop)
   * may have left running, on SSH machines; rejects when it cannot (the machine does not answer).
   * `signal` (the run's interrupt) cuts it short, the connection and the kill alike.
   */
  stopLostScripts?(signal?: AbortSignal): Promise<void>;
}

/**
 * allocate's answer when every machine that could serve the system is kept by -reuse or
 * -abend (a fixed set of hosts): the worker allocates nothing, as spread, and its jobs go to
 * the other workers.
 */
export class NoMachineLeft extends Error {}

/**
 * allocate's error when the machine it made could not be set up (its SSH never answered) and
 * could not be released either (its discard failed): the machine is left where it was made,
 * and `record` names it, for the run to keep on record for `run --discard`.
 */
export class MachineLeft extends Error {
  constructor(message: string, readonly record: MachineRecord) {
    super(message);
  }
}

export interface AllocateOptions {
  readonly signal?: AbortSignal;
  /**
   * Runs `wait` (a retry's delay, a wait for a busy host) without holding the run's start-up
   * slot: other systems of the backend start meanwhile (runner's dispatch gate).
   */
  readonly idle?: Idle;
}

/** See AllocateOptions.idle. */
export type Idle = <T>(wait: () => Promise<T>) => Promise<T>;

/** Runs `wait` where no start-up slot is held to give back. */
export const holdingNothing: Idle = (wait) => wait();

export interface Provider {
  /** The backend's name in spread.yaml. */
  readonly name: string;
  readonly type: string;
  allocate(system: SystemSpec, options?: AllocateOptions): Promise<Machine>;
  /** Reconnects to a machine kept by an earlier `-reuse` run; `signal` (the run's) cuts the connect short. */
  reuse(record: MachineRecord, system: SystemSpec, signal?: AbortSignal): Promise<Machine>;
  /**
   * Releases a machine (runs discard scripts, frees hosts, removes directories). `signal` (the
   * run's) cuts short the sweep of what the machine's lost scripts left (SSH backends), not the
   * release: the place then stays unswept.
   */
  discard(machine: Machine, signal?: AbortSignal): Promise<void>;
  /**
   * The machine is kept past the run (-reuse, -abend): a backend with a fixed set of hosts
   * gives it to no other worker of this run, and tells those waiting for it (NoMachineLeft).
   */
  keep?(machine: Machine): void;
  /**
   * The machines of this backend on record in the reuse file when a -reuse or -abend run starts: a
   * backend with a fixed set of hosts (ssh), or whose allocate may give one address again
   * (adhoc), gives their addresses to no worker but one taking the machine back (reuse), for
   * they are kept past the run whether taken back or not.
   */
  holdKept?(records: readonly MachineRecord[]): void;
  /**
   * Releases a kept machine from its record alone, without reaching it (spread -discard):
   * a machine that no longer answers is exactly the one to discard.
   */
  discardRecord(record: MachineRecord, system: SystemSpec): Promise<void>;
}

/** What every backend factory receives besides its own options. */
export interface BackendContext {
  /** The spread project root on this host (cwd of adhoc scripts). */
  projectRoot: string;
  /** The project's `path:` on machines (e.g. /home/test). */
  remotePath: string;
  /** Session password (spread's -pass, or random). */
  password: string;
  /** Directory for local state, e.g. `cache/`. */
  stateDir: string;
  /** Log line sink (spread-style lines; the caller adds timestamps). */
  log?: (line: string) => void;
  /**
   * Warn and kill timeouts (ms) of the backend's own local scripts (adhoc allocate and
   * discard), as the spread model resolved them for the backend level; default 5m/15m.
   */
  scriptTimeouts?: { warn: number; kill: number };
  /**
   * Asked about each address a backend learns only on allocation (adhoc's ADDRESS) before
   * anything connects to it: a refusal, thrown, releases the machine and fails the allocation.
   */
  checkAddress?: (address: string) => void;
  /** The fleet's known_hosts file every SSH host's key must be in (client.ts SshTarget.knownHosts); undefined: any key. */
  knownHosts?: string;
}
