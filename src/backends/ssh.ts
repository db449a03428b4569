// The `ssh` backend: a static list of hosts reached over SSH. A host serves one
// machine at a time; allocate waits for a free host of the system when all are busy.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, errorMessage, UpstreamError } from '../errors.js';
import { holdingNothing, NoMachineLeft, type AllocateOptions, type BackendContext, type Idle, type Machine, type MachineRecord, type Provider, type SystemSpec } from './backend.js';
import { splitAddress } from './endpoint.js';
import { SshMachine } from './ssh-machine.js';
import { LostScriptSweeps } from './lost-script-sweeps.js';
import type { ConnectOptions } from '../ssh/client.js';
import { rebootSettings } from './ssh-reboot.js';
import type { Host, SshOptions } from './ssh-options.js';

/**
 * The address a host's machine goes by (its records, log lines, which host a discard
 * frees): with the host's `port:` when its address has none, so that hosts of one address
 * on several ports are several machines.
 */
function addressOf(h: Host): string {
  return h.port === undefined || /:\d+$/.test(h.address) ? h.address : `${h.address}:${h.port}`;
}

/** A worker waiting for a host of `system`: `wake` ends its wait, handing it `h` (busy for it) or none, to look again. */
interface Waiter {
  system: string;
  wake(h?: Host): void;
}

class SshProvider implements Provider {
  readonly type = 'ssh';
  readonly name: string;
  readonly #options: SshOptions;
  readonly #ctx: BackendContext;
  readonly #busy = new Set<Host>();
  /** Hosts whose machine is kept past the run: busy until the run ends. */
  readonly #kept = new Set<Host>();
  /** Hosts of machines on record in the reuse file (holdKept), not taken back yet: busy and kept, for reuse alone. */
  readonly #held = new Set<Host>();
  /**
   * Hosts no connection reached (every attempt failed), or where a lost script's processes
   * still could not be stopped (#sweepLeft), with why: passed over for the rest of the run. Left in the rotation, one that is down was the first free host again as soon as
   * its failure freed it, and took worker after worker down with it while others stood free.
   */
  readonly #down = new Map<Host, unknown>();
  /**
   * Hosts whose machine was discarded with the processes of a lost script not stopped (the
   * sweep got no answer), with that machine. A host cut off for a while comes back: the sweep
   * is tried again when the host is next taken (#sweepLeft), taken after the other free hosts
   * to give it time, and passed over for the rest of the run (#down) only when it fails again.
   */
  readonly #unswept = new LostScriptSweeps<Host>();
  /** The workers waiting for a free host of their system, first come first: see #release. */
  readonly #waiters: Waiter[] = [];

  constructor(name: string, options: SshOptions, ctx: BackendContext) {
    this.name = name;
    this.#options = options;
    this.#ctx = ctx;
  }

  #serves(h: Host, system: string): boolean {
    return !h.systems || h.systems.includes(system);
  }

  async #take(system: SystemSpec, signal?: AbortSignal, idle: Idle = holdingNothing): Promise<Host> {
    if (!this.#options.hosts.some((h) => this.#serves(h, system.name))) {
      throw new ConfigError(`backend ${this.name}: no host serves system ${system.name}`);
    }
    for (;;) {
      const isFree = (h: Host): boolean => !this.#busy.has(h) && !this.#down.has(h) && this.#serves(h, system.name);
      const free = this.#options.hosts.find((h) => isFree(h) && !this.#unswept.has(h)) ?? this.#options.hosts.find(isFree);
      if (free) {
        this.#busy.add(free);
        return free;
      }
      signal?.throwIfAborted();
      // waiting for a host that no one will release this run would never end
      const serving = this.#options.hosts.filter((h) => this.#serves(h, system.name));
      if (serving.every((h) => this.#kept.has(h) || this.#down.has(h))) {
        const down = serving.find((h) => this.#down.has(h));
        if (down) throw this.#down.get(down);
        throw new NoMachineLeft(`every host of backend ${this.name} serving ${system.name} is kept`);
      }
      let handed: Host | undefined;
      try {
        await idle(() => new Promise<void>((resolve) => {
          const waiter: Waiter = {
            system: system.name,
            // its listener goes with each wake-up, handed a host or not
            wake: (h) => {
              handed = h;
              signal?.removeEventListener('abort', stop);
              resolve();
            },
          };
          // out of the queue, so that no host is handed to a worker that stopped waiting
          const stop = (): void => {
            this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
            waiter.wake();
          };
          this.#waiters.push(waiter);
          signal?.addEventListener('abort', stop, { once: true });
        }));
      } catch (err) {
        // handed a host and gone without it (the jobs were all taken, the run stopped while it
        // took its start-up slot back): the next worker's
        if (handed) this.#release(handed);
        throw err;
      }
      if (handed) return handed;
    }
  }

  /**
   * Frees `h`, or hands it (busy still) to the first worker waiting whose system it serves: one
   * worker woken, not every waiter to find it taken and wait again, each through the run's
   * start-up slots; and not taken meanwhile by a worker that came later.
   */
  #release(h: Host): void {
    const next = this.#down.has(h) ? -1 : this.#waiters.findIndex((w) => this.#serves(h, w.system));
    if (next >= 0) return this.#waiters.splice(next, 1)[0]!.wake(h);
    this.#busy.delete(h);
    // passed over: those waiting for a host of its systems may wait for nothing now (#take)
    if (this.#down.has(h)) this.#wakeWaiters();
  }

  /** Wakes every waiter, handing none a host, to look again at what it waits for. */
  #wakeWaiters(): void {
    for (const waiter of this.#waiters.splice(0)) waiter.wake();
  }

  keep(machine: Machine): void {
    const h = this.#hostOf(machine.address);
    if (!h) return;
    this.#kept.add(h);
    this.#wakeWaiters(); // those waiting for it only for it allocate nothing (NoMachineLeft)
  }

  holdKept(records: readonly MachineRecord[]): void {
    for (const record of records) {
      const h = this.#hostOf(record.address);
      if (!h) continue; // reuse says so when the record is taken back
      this.#held.add(h);
      this.#busy.add(h);
      this.#kept.add(h);
    }
  }

  #hostOf(address: string): Host | undefined {
    // a record written before the port was part of the address names the host's `address:` alone
    return this.#options.hosts.find((h) => addressOf(h) === address) ?? this.#options.hosts.find((h) => h.address === address);
  }

  async #connect(h: Host, system: SystemSpec, signal?: AbortSignal): Promise<SshMachine> {
    const { host: hostname, port } = splitAddress(h.address, h.port ?? 22);
    const target = {
      host: hostname,
      port,
      username: h.user ?? system.username ?? 'root',
      password: h.password ?? system.password ?? this.#ctx.password,
      privateKey: h.key ? readFileSync(resolve(this.#ctx.projectRoot, h.key)) : undefined,
      knownHosts: this.#ctx.knownHosts,
    };
    return SshMachine.connect(this, system, addressOf(h), target, this.#ctx.remotePath, this.#connectOptions(signal), rebootSettings(this.#options));
  }

  /** How a host of the backend is connected to: connect-timeout per attempt, connect-retries after the first. */
  #connectOptions(signal?: AbortSignal): ConnectOptions {
    return { timeout: this.#options['connect-timeout'] ?? 10_000, retries: this.#options['connect-retries'] ?? 2, ...(signal ? { signal } : {}) };
  }

  async allocate(system: SystemSpec, options?: AllocateOptions): Promise<Machine> {
    for (;;) {
      const h = await this.#take(system, options?.signal, options?.idle);
      try {
        await this.#sweepLeft(h, options?.signal);
        return await this.#connect(h, system, options?.signal);
      } catch (err) {
        if (!options?.signal?.aborted) {
          this.#down.set(h, err);
          this.#ctx.log?.(`Host ${addressOf(h)} of backend ${this.name} is passed over for the rest of the run: ${errorMessage(err)}`);
        }
        this.#release(h);
        if (options?.signal?.aborted) throw err;
      }
    }
  }

  async reuse(record: MachineRecord, system: SystemSpec, signal?: AbortSignal): Promise<Machine> {
    const h = this.#hostOf(record.address);
    if (!h) throw new ConfigError(`backend ${this.name}: reused host ${record.address} is not in its hosts list`);
    const held = this.#held.delete(h);
    // a host on record twice (a reuse file of two runs at once, or written before kept hosts
    // were held) may have gone to the other record's worker: as spread's reserve, the kept
    // machine is not taken back onto it (it stays kept)
    if (!held && this.#busy.has(h)) throw new UpstreamError(`host ${addressOf(h)} of backend ${this.name} serves another machine of this run`);
    this.#busy.add(h);
    try {
      await this.#sweepLeft(h, signal);
      const machine = await this.#connect(h, system, signal);
      await machine.stopLeftOnRecord(record, signal);
      return machine;
    } catch (err) {
      // a kept machine not taken back stays kept: its host is still held
      if (held) this.#held.add(h);
      else this.#release(h);
      throw err;
    }
  }

  async discard(machine: Machine, signal?: AbortSignal): Promise<void> {
    const h = this.#hostOf(machine.address);
    if (!h) return;
    // a host where a job may still run serves no other: the next would run beside it
    await this.#unswept.atDiscard(h, machine, (err) =>
      this.#ctx.log?.(`The processes of a script on host ${addressOf(h)} of backend ${this.name} whose connection was lost could not be stopped: the host serves another machine of this run only once they are: ${errorMessage(err)}`),
    signal);
    this.#release(h);
  }

  /**
   * Stops what the lost scripts of the machine discarded from `h` (#unswept) left running, now
   * that the host is taken again: where a job may still run, no other job runs. Tried as a
   * connection to the host is (connect-timeout, connect-retries); rejects when it still cannot,
   * and the host is then passed over (allocate).
   */
  #sweepLeft(h: Host, signal?: AbortSignal): Promise<void> {
    return this.#unswept.sweepAgain(h, this.#connectOptions(signal), (err) =>
      new UpstreamError(`a script whose connection was lost may still run on host ${addressOf(h)} of backend ${this.name}: its processes still cannot be stopped: ${errorMessage(err)}`),
    );
  }

  /** A kept host is busy in no process but the one that kept it: nothing to release. */
  async discardRecord(): Promise<void> {}
}

export function create(name: string, options: SshOptions, ctx: BackendContext): Provider {
  return new SshProvider(name, options, ctx);
}
