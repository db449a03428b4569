// The `local` backend: each machine is a private directory on this host, scripts run
// under bash there. The project's `path` is placed inside the directory and SPREAD_PATH
// names where it really is, so any number of local machines never collide. With `netns:`
// the scripts run inside that network namespace (`ip netns exec`, needs root): the
// multi-region test bed puts each region's machines beside its cache that way.
//
// REBOOT on a local machine is emulated, not refused: a directory cannot reboot, but what a
// task relies on across a reboot is that nothing it started still runs, and that much is
// real here: reboot() ends every process the machine's scripts left behind, as discard does.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { constants } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Type, type Static } from '@sinclair/typebox';
import { RebootError } from '../errors.js';
import type { BackendContext, ExecOptions, ExecResult, Executor, Machine, MachineRecord, Provider, RebootOptions, ShellOptions, SystemSpec } from './backend.js';
import { endMachineProcesses, MACHINE_MARK } from './local-processes.js';
import { killGroup, trackGroup } from './process-group.js';
import { OutputBuffer, renderScript, renderShell, utf8Chunks, watchScript } from './script.js';
import { TOKEN_ENV } from '../client/token.js';

export const localOptions = Type.Object(
  {
    /** Where machine directories go (default `<stateDir>/machines`). */
    root: Type.Optional(Type.String({ minLength: 1 })),
    /** Network namespace the scripts run in (`ip netns exec NAME /bin/bash -`). */
    netns: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]+$' })),
  },
  { additionalProperties: true },
);
export type LocalOptions = Static<typeof localOptions>;

/** Runs scripts with the host's bash, each in its own process group. */
export class LocalExecutor implements Executor {
  readonly #base: string;
  readonly #netns: string | undefined;
  readonly #env: NodeJS.ProcessEnv;

  /**
   * `base` resolves relative cwd and file paths (the machine's project path); `mark`, when
   * given, is set as MACHINE_MARK in every script's environment.
   */
  constructor(base: string, netns?: string, mark?: string) {
    this.#base = base;
    this.#netns = netns;
    // The runner's own token (the origin's write token) stays out of the machines' scripts:
    // they get a run token, and only when they need one (client/run-token.ts).
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env[TOKEN_ENV];
    if (mark !== undefined) env[MACHINE_MARK] = mark;
    this.#env = env;
  }

  #path(p: string): string {
    return isAbsolute(p) ? p : resolve(this.#base, p);
  }

  /** `ip netns exec NAME` before a command when the machine has a network namespace. */
  #command(args: string[]): [string, string[]] {
    return this.#netns ? ['ip', ['netns', 'exec', this.#netns, ...args]] : [args[0]!, args.slice(1)];
  }

  /**
   * A bash sharing this process's stdin, stdout and stderr. On a terminal it is not
   * detached: the interactive bash moves itself into a process group of its own and takes
   * the terminal's foreground (job control), so Ctrl-C and Ctrl-Z reach it and not the run,
   * and hands the terminal back when it exits; a detached one could not take it. Reading a
   * pipe it is detached as scripts are, and an interrupt ends its whole process group.
   */
  shell(o: ShellOptions = {}): Promise<number> {
    const [cmd, args] = this.#command(['/bin/bash', '-c', renderShell({ dir: this.#path(o.cwd ?? '.'), env: o.env })]);
    const tty = process.stdin.isTTY === true;
    return new Promise<number>((done, fail) => {
      const child = spawn(cmd, args, { cwd: this.#base, env: this.#env, stdio: 'inherit', detached: !tty });
      const end = (): void => {
        if (!tty) return killGroup(child, () => undefined);
        // an interactive bash ignores SIGTERM and SIGINT; a hangup ends it and its jobs
        child.kill('SIGHUP');
        setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), 2000).unref();
      };
      o.signal?.addEventListener('abort', end, { once: true });
      child.on('error', (err) => {
        o.signal?.removeEventListener('abort', end);
        fail(err);
      });
      child.on('exit', (code, sig) => {
        o.signal?.removeEventListener('abort', end);
        done(code ?? 128 + (sig ? constants.signals[sig] : 0));
      });
      if (o.signal?.aborted) end();
    });
  }

  exec(script: string, o: ExecOptions = {}): Promise<ExecResult> {
    const text = renderScript(script, { dir: this.#path(o.cwd ?? '.'), env: o.env, trace: o.trace, fixedPath: o.fixedPath });
    const out = new OutputBuffer();
    return new Promise<ExecResult>((done, fail) => {
      // detached: a new process group, so a kill reaches everything the script started.
      // `ip netns exec` execs bash in place: the child's PID and process group stay bash's.
      const [cmd, args] = this.#command(['/bin/bash', '-']);
      const child = spawn(cmd, args, { cwd: this.#base, env: this.#env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
      trackGroup(child);
      let killed = false;
      const disarm = watchScript(o, out, () => {
        killed = true;
        killGroup(child, (code, sig) => finish(code, sig));
      });
      const emit = (s: string): void => {
        out.push(s);
        o.onOutput?.(s);
      };
      const stdout = utf8Chunks(emit);
      const stderr = utf8Chunks(emit);
      child.stdout.on('data', stdout.write);
      child.stderr.on('data', stderr.write);
      child.stdin.on('error', () => undefined); // the script may exit before reading all of it
      child.on('error', (err) => {
        disarm();
        fail(err);
      });
      const finish = (code: number | null, sig: NodeJS.Signals | null): void => {
        disarm();
        stdout.end();
        stderr.end();
        const exitCode = code ?? 128 + (sig ? constants.signals[sig] : 0);
        done({ exitCode, output: out.text(), killed });
      };
      child.on('close', finish);
      child.stdin.end(text);
    });
  }

  async upload(source: Readable | string, remotePath: string, mode?: number, signal?: AbortSignal): Promise<void> {
    const target = this.#path(remotePath);
    await mkdir(dirname(target), { recursive: true });
    const input = typeof source === 'string' ? createReadStream(source) : source;
    await pipeline(input, createWriteStream(target, mode === undefined ? {} : { mode }), signal ? { signal } : {});
  }

  async close(): Promise<void> {}
}

class LocalMachine extends LocalExecutor implements Machine {
  readonly name: string;
  readonly address: string;
  readonly system: SystemSpec;
  readonly backendName: string;
  readonly projectPath: string;
  readonly executorKey = 'local';
  readonly #provider: LocalProvider;
  /** The MACHINE_MARK value of its processes. */
  readonly mark: string;

  constructor(provider: LocalProvider, system: SystemSpec, dir: string, remotePath: string) {
    const projectPath = join(dir, remotePath);
    // From the directory, so a machine taken back with -reuse still finds its processes.
    const mark = createHash('sha256').update(dir).digest('hex').slice(0, 24);
    super(projectPath, provider.netns, mark);
    this.mark = mark;
    this.#provider = provider;
    this.backendName = provider.name;
    this.name = `${provider.name}:${system.name}`;
    this.system = system;
    this.address = dir;
    this.projectPath = projectPath;
  }

  record(): MachineRecord {
    return { backend: this.backendName, system: this.system.name, address: this.address, data: this.address };
  }

  /**
   * The emulated reboot: every process the machine's scripts started and left behind ends,
   * as at shutdown; files stay, as on a disk. Not emulated: /tmp and the kernel's boot_id
   * are the host's.
   */
  async reboot(o: RebootOptions): Promise<void> {
    const survivors = await endMachineProcesses(this.mark, o.timeout);
    if (survivors.length > 0) throw new RebootError(`${this.name}: processes ${survivors.join(', ')} survived the reboot (SIGKILL)`);
  }

  discard(): Promise<void> {
    return this.#provider.discard(this);
  }
}

class LocalProvider implements Provider {
  readonly type = 'local';
  readonly name: string;
  readonly #root: string;
  readonly #remotePath: string;
  readonly netns: string | undefined;

  constructor(name: string, options: LocalOptions, ctx: BackendContext) {
    this.name = name;
    this.netns = options.netns;
    this.#root = resolve(options.root ?? join(ctx.stateDir, 'machines'));
    this.#remotePath = ctx.remotePath;
  }

  async allocate(system: SystemSpec): Promise<Machine> {
    // pid + random: machines of concurrent runs on one host never share a directory.
    const dir = join(this.#root, `${this.name}-${system.name}-${process.pid}-${randomBytes(4).toString('hex')}`);
    const machine = new LocalMachine(this, system, dir, this.#remotePath);
    await mkdir(machine.projectPath, { recursive: true });
    return machine;
  }

  async reuse(record: MachineRecord, system: SystemSpec): Promise<Machine> {
    const dir = record.data ?? record.address;
    const machine = new LocalMachine(this, system, dir, this.#remotePath);
    await mkdir(machine.projectPath, { recursive: true });
    return machine;
  }

  discardRecord(record: MachineRecord, system: SystemSpec): Promise<void> {
    return this.discard(new LocalMachine(this, system, record.data ?? record.address, this.#remotePath));
  }

  async discard(machine: Machine): Promise<void> {
    if (!(machine instanceof LocalMachine) || !machine.address.startsWith(this.#root)) {
      throw new Error(`${machine.name}: not a machine of local backend ${this.name}`);
    }
    // A discarded machine is gone, its processes too (what survives SIGKILL is left alone).
    await endMachineProcesses(machine.mark, 10_000);
    await rm(machine.address, { recursive: true, force: true });
  }
}

export function create(name: string, options: LocalOptions, ctx: BackendContext): Provider {
  return new LocalProvider(name, options, ctx);
}
