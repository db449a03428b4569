// The `adhoc` backend (spec section 15): the user's allocate and discard scripts run
// locally with bash and the ADDRESS, ERROR and FATAL helpers; the address they print is
// then reached over SSH.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { errorMessage, FleetError, UpstreamError } from '../errors.js';
import { sleepFor } from '../long-timer.js';
import { shellQuote } from '../shell-quote.js';
import { waitForPort, type ConnectOptions } from '../ssh/client.js';
import { holdingNothing, MachineLeft, type AllocateOptions, type BackendContext, type EnvEntry, type Machine, type MachineRecord, type Provider, type SystemSpec } from './backend.js';
import { LocalExecutor } from './local.js';
import { endpointOf, parseAddress, splitAddress } from './endpoint.js';
import { SshMachine } from './ssh-machine.js';
import { LostScriptSweeps } from './lost-script-sweeps.js';
import { isKeyText, type AdhocOptions } from './adhoc-options.js';
import { durationMs, rebootSettings } from './ssh-reboot.js';
import { levelTimeouts } from '../spread/scripts.js';

const ADDRESS_HELPER = `ADDRESS() { { set +xu; } 2>/dev/null; [ -z "\${1:-}" ] && echo '<ADDRESS>' || echo "<ADDRESS $1>"; }`;
const MARKER = /^<(ADDRESS|ERROR|FATAL)(?: (.*))?>$/gm;

/** SSH retries to a machine allocate gave: spread retries SSH for about a minute after the port opens. */
const ALLOCATED_RETRIES = 30;
/** SSH retries to a machine taken back (--reuse): it was up when kept. */
const REUSED_RETRIES = 1;

interface AdhocOutcome {
  exitCode: number;
  output: string;
  /** Killed at its kill-timeout. */
  killed?: boolean;
  address?: string;
  error?: string;
  fatal?: string;
}

/** Reads spread's `<NAME value>` markers from a script's output. */
export function parseMarkers(exitCode: number, output: string): AdhocOutcome {
  const outcome: AdhocOutcome = { exitCode, output };
  for (const m of output.matchAll(MARKER)) {
    const value = (m[2] ?? '').trim();
    if (m[1] === 'ADDRESS') outcome.address = value;
    else if (m[1] === 'ERROR') outcome.error = value || 'ERROR called';
    else outcome.fatal = value || 'FATAL called';
  }
  return outcome;
}

/** Why a machine allocate made is released when the run stopped meanwhile. */
const INTERRUPTED = 'the run was interrupted';

/** Why a script that called neither ERROR nor FATAL failed, with the last lines of its output. */
function scriptFailure(what: 'allocate' | 'discard', r: AdhocOutcome): string {
  const how = r.killed ? ': kill-timeout reached' : ` with exit code ${r.exitCode}`;
  const tail = r.output.trim().split('\n').slice(-5).join('; ');
  return `${what} script failed${how}${tail ? `: ${tail}` : ''}`;
}

class AdhocProvider implements Provider {
  readonly type = 'adhoc';
  readonly name: string;
  readonly #options: AdhocOptions;
  readonly #ctx: BackendContext;
  readonly #local: LocalExecutor;
  readonly #retryDelay: number;
  readonly #allocateTimeout: number;
  /**
   * The machines of this run not discarded yet (allocated, taken back or kept), by endpoint:
   * an allocate script that gives one of their addresses again (a fixed address) would put
   * two workers on one machine at once, each emptying the project path under the other.
   */
  readonly #live = new Map<string, string>();
  /** The endpoints of #live whose discard script is running: the refusal says so. */
  readonly #discarding = new Set<string>();
  /**
   * The machines of this run whose discard failed, by endpoint: still there as far as the run
   * knows, on record for `run --discard` (which runs the discard again, on whatever then has
   * the address), so their address goes to no other machine of the run.
   */
  readonly #left = new Map<string, string>();
  /**
   * The machines an earlier run kept (holdKept: a --reuse or --abend run), by endpoint, not
   * taken back yet: kept past this run whether taken back or not, so their addresses go to
   * no allocation, only to the worker taking the machine back (reuse).
   */
  readonly #kept = new Map<string, string>();
  /**
   * The machines discarded whose lost scripts' processes could not be stopped (discard), by
   * endpoint: a machine at a fixed address (a device) may come back from its discard as it was,
   * so their address serves another machine only once a new sweep of them succeeds (#sweepLeft).
   */
  readonly #unswept = new LostScriptSweeps<string>();

  constructor(name: string, options: AdhocOptions, ctx: BackendContext) {
    this.name = name;
    this.#options = options;
    this.#ctx = ctx;
    this.#local = new LocalExecutor(ctx.projectRoot);
    // read now, so a bad value fails before any machine is asked for
    this.#retryDelay = durationMs(options['retry-delay'], 'retry-delay', 5000);
    this.#allocateTimeout = durationMs(options['allocate-timeout'], 'allocate-timeout', 5 * 60_000);
  }

  #password(system: SystemSpec): string {
    return system.password ?? this.#ctx.password;
  }

  /** Runs allocate or discard the way spread does (cwd project root, its env only, its fixed PATH); `signal` kills it. */
  async runScript(script: string, system: SystemSpec, address: string, signal?: AbortSignal): Promise<AdhocOutcome> {
    const env: EnvEntry[] = [
      // single-quoted, so that passwords with `$` reach the script unchanged
      ['SPREAD_BACKEND', shellQuote(this.name)],
      ['SPREAD_SYSTEM', shellQuote(system.name)],
      ['SPREAD_SYSTEM_USERNAME', shellQuote(system.username ?? '')],
      ['SPREAD_SYSTEM_PASSWORD', shellQuote(system.password ?? '')],
      ['SPREAD_SYSTEM_ADDRESS', shellQuote(address)],
    ];
    if (system.password === undefined) env.push(['SPREAD_PASSWORD', shellQuote(this.#ctx.password)]);
    const label = `${this.name}:${system.name}`;
    // without the runner's (tests), spread's defaults
    const timeouts = this.#ctx.scriptTimeouts ?? levelTimeouts([]);
    const r = await this.#local.exec(`${ADDRESS_HELPER}\n${script}`, {
      env,
      trace: false,
      // spread's localScript exports its fixed PATH, as on a machine: not the caller's
      fixedPath: true,
      // warn-timeout and kill-timeout are spread fields: the model parsed them (-1, -1ns, 100us)
      warnTimeout: timeouts.warn,
      killTimeout: timeouts.kill,
      onWarn: () => this.#ctx.log?.(`WARNING: ${label} script running late.`),
      ...(signal ? { signal } : {}),
    });
    return { ...parseMarkers(r.exitCode, r.output), killed: r.killed };
  }

  async allocate(system: SystemSpec, options?: AllocateOptions): Promise<Machine> {
    const label = `${this.name}:${system.name}`;
    const deadline = Date.now() + this.#allocateTimeout;
    let address: string | undefined;
    for (;;) {
      const r = await this.runScript(this.#options.allocate, system, '', options?.signal);
      // interrupted (the run is stopping): the script was killed, no machine is wanted any more;
      // one it announced (killed after its ADDRESS, or done as the signal came) is discarded,
      // not left running
      if (options?.signal?.aborted) {
        if (r.address) await this.#releaseOrLeave(system, r.address, INTERRUPTED);
        options.signal.throwIfAborted();
      }
      if (r.fatal) throw new FleetError('FC_ERR_UNAVAILABLE', `cannot allocate ${label}: ${r.fatal}`);
      if (r.exitCode === 0 && !r.error && !r.killed) {
        if (!r.address || /\s/.test(r.address) || parseAddress(r.address) === undefined) {
          const given = r.address ? `, not "${r.address}"` : '';
          throw new FleetError('FC_ERR_UNAVAILABLE', `cannot allocate ${label}: allocate script must print an address with ADDRESS <host[:port]>${given}`);
        }
        address = r.address;
        break;
      }
      const why = r.error ?? scriptFailure('allocate', r);
      if (Date.now() > deadline) throw new FleetError('FC_ERR_UNAVAILABLE', `cannot allocate ${label}: ${why}`);
      this.#ctx.log?.(`Cannot allocate ${label}: ${why}`);
      await (options?.idle ?? holdingNothing)(() => sleepFor(this.#retryDelay, options?.signal));
    }
    const endpoint = endpointOf(address);
    const holder = this.#runHolder(endpoint) ?? this.#keptHolder(endpoint);
    if (holder !== undefined) {
      // not discarded: the address is the machine the run holds, whose discard (a lab's
      // re-image or power cycle, a cloud's delete by address) would pull it from under its
      // job; it is discarded once, when the run is done with it
      throw new FleetError('FC_ERR_UNAVAILABLE', `cannot allocate ${label}: the allocate script of backend ${this.name} gave address ${address}, ${holder} (one machine serves one worker at a time)`);
    }
    const { host, port } = splitAddress(address);
    this.#live.set(endpoint, label);
    try {
      this.#ctx.checkAddress?.(address);
      this.#ctx.log?.(`Waiting for ${label} to make SSH available at ${host}:${port}...`);
      // a deadline of its own, as in spread: a slow allocate leaves the port its full wait
      await waitForPort(host, port, this.#allocateTimeout, options?.signal);
      await this.#sweepLeft(endpoint, label, ALLOCATED_RETRIES, options?.signal);
      return await this.#connect(address, system, ALLOCATED_RETRIES, options?.signal);
    } catch (err) {
      this.#live.delete(endpoint);
      const failure = err instanceof FleetError ? err : new UpstreamError(`cannot connect to ${label} at ${address}`, { cause: err });
      await this.#releaseOrLeave(system, address, options?.signal?.aborted ? INTERRUPTED : failure.message);
      // interrupted: the abort itself, which a run stopping does not report as a failure of the machine
      if (options?.signal?.aborted) throw options.signal.reason;
      throw failure;
    }
  }

  #connect(address: string, system: SystemSpec, retries: number, signal?: AbortSignal): Promise<SshMachine> {
    const { host, port } = splitAddress(address);
    const key = this.#options.key;
    const target = {
      host,
      port,
      username: system.username ?? 'root',
      password: this.#password(system),
      privateKey: privateKeyOf(key, this.#ctx.projectRoot),
      knownHosts: this.#ctx.knownHosts,
    };
    return SshMachine.connect(this, system, address, target, this.#ctx.remotePath, connectOptions(retries, signal), rebootSettings(this.#options));
  }

  async reuse(record: MachineRecord, system: SystemSpec, signal?: AbortSignal): Promise<Machine> {
    const endpoint = endpointOf(record.address);
    const holder = this.#runHolder(endpoint);
    if (holder !== undefined) throw new UpstreamError(`cannot reuse ${this.name}:${system.name} at ${record.address}, ${holder}`);
    const kept = this.#kept.get(endpoint);
    // held from now: an allocation while it connects is refused too
    this.#kept.delete(endpoint);
    const label = `${this.name}:${system.name}`;
    this.#live.set(endpoint, label);
    try {
      await this.#sweepLeft(endpoint, label, REUSED_RETRIES, signal);
      const machine = await this.#connect(record.address, { ...system, username: record.username ?? system.username, password: record.password ?? system.password }, REUSED_RETRIES, signal);
      await machine.stopLeftOnRecord(record, signal);
      return machine;
    } catch (err) {
      this.#live.delete(endpoint);
      // not taken back: it stays kept
      if (kept !== undefined) this.#kept.set(endpoint, kept);
      throw err;
    }
  }

  holdKept(records: readonly MachineRecord[]): void {
    for (const record of records) {
      let endpoint: string;
      try {
        endpoint = endpointOf(record.address);
      } catch {
        continue; // a malformed address: reuse says so when the record is taken back
      }
      this.#kept.set(endpoint, `${this.name}:${record.system}`);
    }
  }

  /** Which machine of this run has `endpoint`, as a clause of the refusal (`..., which machine m of this run holds`); undefined when none. */
  #runHolder(endpoint: string): string | undefined {
    const left = this.#left.get(endpoint);
    if (left !== undefined) return `where machine ${left} of this run was left by its failed discard (on record for run --discard)`;
    const live = this.#live.get(endpoint);
    if (live === undefined) return undefined;
    return this.#discarding.has(endpoint) ? `where machine ${live} of this run is being discarded (its discard script is running)` : `which machine ${live} of this run holds`;
  }

  /** Which machine an earlier run kept at `endpoint` (holdKept), as a clause of the refusal; undefined when none. */
  #keptHolder(endpoint: string): string | undefined {
    const kept = this.#kept.get(endpoint);
    return kept === undefined ? undefined : `which machine ${kept} kept by an earlier run holds`;
  }

  async #release(system: SystemSpec, address: string): Promise<void> {
    if (!this.#options.discard) return;
    const r = await this.runScript(this.#options.discard, system, address);
    if (r.exitCode !== 0 || r.killed || r.error || r.fatal) {
      throw new FleetError('FC_ERR_UNAVAILABLE', `cannot discard ${this.name}:${system.name} at ${address}: ${r.fatal ?? r.error ?? scriptFailure('discard', r)}`);
    }
  }

  /**
   * Releases a machine allocate made but will not hand out (`why`): one whose discard fails is
   * left, so allocate fails with MachineLeft, naming it for the run's record (it was silently
   * lost before: no line, no record for `run --discard`).
   */
  async #releaseOrLeave(system: SystemSpec, address: string, why: string): Promise<void> {
    const unreleased = await this.#release(system, address).then(() => undefined, (err: Error) => err);
    if (!unreleased) return;
    // one a killed allocate printed may be malformed: no machine of the run is held there
    if (parseAddress(address) !== undefined) this.#left.set(endpointOf(address), `${this.name}:${system.name}`);
    // the record an SshMachine of the address would give (SshMachine.record)
    const record = { backend: this.name, system: system.name, address, username: system.username ?? 'root', password: this.#password(system) };
    throw new MachineLeft(`${why}; ${unreleased.message}`, record);
  }

  async discard(machine: Machine, signal?: AbortSignal): Promise<void> {
    const endpoint = endpointOf(machine.address);
    // the signal cuts the sweep alone: the discard script runs after an interrupt too
    await this.#unswept.atDiscard(endpoint, machine, (err) =>
      this.#ctx.log?.(`The processes of a script on ${this.name}:${machine.system.name} at ${machine.address} whose connection was lost could not be stopped: its address serves another machine of this run only once they are: ${errorMessage(err)}`),
    signal);
    this.#discarding.add(endpoint);
    try {
      await this.#release(machine.system, machine.address);
    } catch (err) {
      this.#left.set(endpoint, machine.name);
      throw err;
    } finally {
      // held until the discard script ends: an allocation given the address meanwhile would
      // get the machine being torn down (a re-image, a power cycle, a delete by address);
      // after a failed one, as the machine it left (#left)
      this.#discarding.delete(endpoint);
      this.#live.delete(endpoint);
    }
  }

  /**
   * Stops what the lost scripts of the machine discarded at `endpoint` (#unswept) left running,
   * now that its address is back for `label`: where a job may still run, no other job runs.
   * Tried as the connection to the new machine that follows is (`retries`): a device whose
   * port opens before its sshd answers is not refused for a shorter wait.
   */
  #sweepLeft(endpoint: string, label: string, retries: number, signal?: AbortSignal): Promise<void> {
    return this.#unswept.sweepAgain(endpoint, connectOptions(retries, signal), (err, left) =>
      new FleetError('FC_ERR_UNAVAILABLE', `cannot use ${left.address} for ${label}: a script of machine ${left.name} whose connection was lost may still run there, and its processes still cannot be stopped: ${errorMessage(err)}`),
    );
  }

  /** The discard script needs only the address (SPREAD_SYSTEM_ADDRESS), as in spread. */
  discardRecord(record: MachineRecord, system: SystemSpec): Promise<void> {
    return this.#release(system, record.address);
  }
}

/** How a machine of the backend is connected to over SSH, `retries` times after the first attempt. */
function connectOptions(retries: number, signal?: AbortSignal): ConnectOptions {
  return { timeout: 10_000, retries, retryDelay: 2000, ...(signal ? { signal } : {}) };
}

export function create(name: string, options: AdhocOptions, ctx: BackendContext): Provider {
  return new AdhocProvider(name, options, ctx);
}

/** The SSH private key a backend `key` gives (see adhocOptions' `key`, adhoc-options.ts), or undefined. */
function privateKeyOf(key: string | undefined, projectRoot: string): string | Buffer | undefined {
  if (key === undefined || key === '') return undefined;
  if (isKeyText(key)) return key;
  const file = resolve(projectRoot, key);
  if (existsSync(file)) return readFileSync(file);
  // A name with a slash was meant as a file: say so rather than fall back to the password.
  if (key.includes('/')) throw new FleetError('FC_ERR_CONFIG', `adhoc backend key: no private key file ${file}`);
  return undefined;
}
