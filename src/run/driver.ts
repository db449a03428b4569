// The async half of the scheduler: runs one worker per planned machine over a JobQueue,
// with dispatch-storm control (at most N machines of one executor in start-up at once,
// and a delay between two dispatches to the same executor) and load-aware admission
// (a machine above the load threshold gets no job until its load drops).
import { setTimeout as sleep } from 'node:timers/promises';
import { setMaxListeners } from 'node:events';
import { sleepFor } from '../long-timer.js';
import { NoMachineLeft, type Idle } from '../backends/backend.js';
import type { JobQueue, SchedJob, WorkerId } from './scheduler.js';

export interface WorkerInfo {
  id: WorkerId;
  backend: string;
  system: string;
  /** Index of the worker within its backend+system. */
  index: number;
}

interface DriverHooks<M> {
  /**
   * Start-up phase (allocate, connect, send project); counted against storm limits, save
   * what it runs through `idle` (a backend's retry delays). Undefined: this worker gets no
   * machine, and leaves its jobs to the others. `needed`: whether its system still has a job
   * pending (others may take them all while its machine is allocated); `idle` throws
   * NoMachineLeft once it has none.
   */
  start(worker: WorkerInfo, signal: AbortSignal, idle: Idle, needed: () => boolean): Promise<M | undefined>;
  /** Runs one job; resolve false when the machine is broken and the worker must stop. */
  run(machine: M, job: SchedJob, worker: WorkerInfo): Promise<boolean>;
  /** End of the worker: restores, discard or keep. */
  stop(machine: M, worker: WorkerInfo): Promise<void>;
  /**
   * The machine's 1-minute load average (e.g. `cat /proc/loadavg` through its executor);
   * `signal` cuts the read short (a machine too busy to answer holds no stopping run).
   */
  load?(machine: M, signal: AbortSignal): Promise<number>;
  /** Storm-control key of a worker: the host or backend its machine lives on (default backend). */
  executorKey?(worker: WorkerInfo): string;
}

interface DriverOptions {
  /** Machines of one executor in start-up at once (default 4). */
  startupLimit?: number;
  /** Minimum ms between two dispatches to the same executor (default 1000). */
  dispatchDelay?: number;
  /** Load average above which a machine gets no new job (default: no limit). */
  loadThreshold?: number;
  /** First and longest pause between two load polls of a waiting machine, ms (default 1 s, 30 s). */
  loadPoll?: { initial: number; max: number };
  /** Called once each time a machine starts waiting for its load to drop (to say why nothing runs). */
  onLoadWait?: (worker: WorkerInfo, load: number, threshold: number) => void;
  /** Called with each failure as it happens (a run of hours says at once that a system got no machine). */
  onFailure?: (failure: DriverFailure) => void;
  signal?: AbortSignal;
}

/** A hook's error: which worker, in which phase, and for `run` the job it was running. */
interface DriverFailure {
  worker: WorkerInfo;
  phase: 'start' | 'run' | 'stop';
  error: unknown;
  job?: SchedJob;
}

interface DriverResult {
  /**
   * Hook errors, per worker and phase. A failed start or run stops that worker only
   * (its jobs stay pending for the others); `run` should report task failures by
   * resolving, and throw only when the machine itself is lost. A `run` failure names the
   * job it was running: that job is neither done nor pending (the caller counts it).
   */
  failures: DriverFailure[];
  /** Jobs no worker took (aborted). */
  remaining: SchedJob[];
}

/** Counting semaphore plus a minimum spacing between two entries, per executor key. */
export class DispatchGate {
  readonly #limit: number;
  readonly #delay: number;
  readonly #active = new Map<string, number>();
  readonly #next = new Map<string, number>();
  readonly #waiters = new Map<string, Array<() => void>>();

  constructor(limit: number, delay: number) {
    this.#limit = Math.max(1, limit);
    this.#delay = Math.max(0, delay);
  }

  /** Waits for a start-up slot of `key`; returns the release function. */
  async enter(key: string, signal?: AbortSignal): Promise<() => void> {
    while ((this.#active.get(key) ?? 0) >= this.#limit) {
      await new Promise<void>((wake) => {
        const list = this.#waiters.get(key) ?? [];
        list.push(wake);
        this.#waiters.set(key, list);
      });
    }
    this.#active.set(key, (this.#active.get(key) ?? 0) + 1);
    // Reserve the next dispatch time before sleeping so concurrent entries space out.
    const at = Math.max(Date.now(), this.#next.get(key) ?? 0);
    this.#next.set(key, at + this.#delay);
    try {
      if (at > Date.now()) await sleepFor(at - Date.now(), signal);
    } catch (err) {
      this.#leave(key);
      throw err;
    }
    let released = false;
    return () => {
      if (!released) this.#leave(key);
      released = true;
    };
  }

  #leave(key: string): void {
    this.#active.set(key, (this.#active.get(key) ?? 1) - 1);
    this.#waiters.get(key)?.shift()?.();
  }
}

/** How long a load reading at or below the threshold admits the machine's next jobs without another read. */
const LOW_LOAD_FRESH_MS = 1000;

/**
 * Holds a machine back while its load is above the threshold. Polls with a doubling
 * pause, and re-polls at once when a job on the same executor finishes (the likeliest
 * moment the load drops), so a waiting worker never spins; a low reading is reused for
 * LOW_LOAD_FRESH_MS (reader).
 */
export class LoadGate {
  readonly #threshold: number;
  readonly #poll: { initial: number; max: number };
  /** Per executor key, the waiting workers' wake-ups, longest waiting first. */
  readonly #waiting = new Map<string, Array<() => void>>();

  constructor(threshold: number, poll = { initial: 1000, max: 30_000 }) {
    this.#threshold = threshold;
    this.#poll = poll;
  }

  /**
   * Signals that a job on `key` finished: the worker waiting longest looks at the load again.
   * One, not all: a finished job makes room for about one, and each look runs a command on a
   * machine (hundreds of waiting workers polled at every finished job).
   */
  jobFinished(key: string): void {
    this.#waiting.get(key)?.shift()?.();
  }

  /**
   * Signals that the jobs a waiting worker may take are all gone: every worker waiting on
   * `key` looks again, and those with nothing left to wait for stop waiting.
   */
  jobsTaken(key: string): void {
    for (const wake of this.#waiting.get(key)?.splice(0) ?? []) wake();
  }

  /**
   * `load` of one machine, a reading at or below the threshold reused for LOW_LOAD_FRESH_MS
   * from when it was asked for: a machine running short jobs is not asked before each one (a
   * script on it, an SSH round trip; hundreds of spawns a second on a fleet of local machines).
   * A high reading is never reused: a waiting machine reads its load again at each wake-up.
   */
  reader(load: () => Promise<number>): () => Promise<number> {
    let low: { value: number; at: number } | undefined;
    return async () => {
      if (low && Date.now() - low.at < LOW_LOAD_FRESH_MS) return low.value;
      const at = Date.now();
      const value = await load();
      low = value <= this.#threshold ? { value, at } : undefined;
      return value;
    };
  }

  /**
   * Resolves once the load is at or below the threshold, or `wanted` (default: always) says
   * there is no job left to admit the machine for; `onWait` hears of the first high read.
   */
  async admit(key: string, load: () => Promise<number>, signal?: AbortSignal, onWait?: (load: number, threshold: number) => void, wanted: () => boolean = () => true): Promise<void> {
    let pause = this.#poll.initial;
    let current: number;
    // `wanted` again once the load is read: the last job may have gone meanwhile (jobsTaken woke no one then)
    for (let polls = 0; wanted() && (current = await load()) > this.#threshold && wanted(); polls++) {
      if (polls === 0) onWait?.(current, this.#threshold);
      const ac = new AbortController();
      const stop = (): void => ac.abort();
      signal?.addEventListener('abort', stop, { once: true });
      const waiting = this.#waiting.get(key) ?? [];
      this.#waiting.set(key, waiting);
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      waiting.push(wake);
      try {
        await Promise.race([sleep(pause, undefined, { signal: ac.signal }), woken]).catch(() => undefined);
      } finally {
        ac.abort();
        signal?.removeEventListener('abort', stop);
        const at = waiting.indexOf(wake);
        if (at >= 0) waiting.splice(at, 1);
      }
      signal?.throwIfAborted();
      pause = Math.min(pause * 2, this.#poll.max);
    }
  }
}

/**
 * Runs `plan` workers over the queue until no job is left. Each worker starts its
 * machine through the gate, then takes jobs (after load admission) until the queue has
 * none for it or its machine breaks, then stops the machine.
 */
export async function runWorkers<M>(
  queue: JobQueue,
  plan: ReadonlyArray<{ backend: string; system: string; count: number }>,
  hooks: DriverHooks<M>,
  o: DriverOptions = {},
): Promise<DriverResult> {
  const gate = new DispatchGate(o.startupLimit ?? 4, o.dispatchDelay ?? 1000);
  const loadGate = o.loadThreshold === undefined ? undefined : new LoadGate(o.loadThreshold, o.loadPoll);
  const signal = o.signal ?? new AbortController().signal;
  // every machine's running script and waiting start listen to it: hundreds are expected
  setMaxListeners(0, signal);
  const result: DriverResult = { failures: [], remaining: [] };
  const fail = (failure: DriverFailure): void => {
    result.failures.push(failure);
    o.onFailure?.(failure);
  };
  const workers: WorkerInfo[] = plan.flatMap((p) =>
    Array.from({ length: p.count }, (_, index) => ({ id: queue.addWorker(p.backend, p.system), backend: p.backend, system: p.system, index })),
  );

  async function work(w: WorkerInfo): Promise<void> {
    const key = hooks.executorKey?.(w) ?? w.backend;
    let machine: M | undefined;
    let release = await gate.enter(key, signal).catch(() => undefined);
    if (!release) return queue.leave(w.id);
    const needed = (): boolean => queue.hasPending(w.backend, w.system);
    /**
     * A start that waits (a retry's delay, a busy host) gives up, as NoMachineLeft, once the
     * other machines took every job of its system: an adhoc allocate refused for want of
     * capacity was retried until its allocate-timeout, holding the run's end for minutes.
     */
    const giveUpUnlessNeeded = (): void => {
      if (!signal.aborted && !needed()) throw new NoMachineLeft(`the jobs of ${w.backend}:${w.system} were all taken by the other machines`);
    };
    // the slot is given back while the start waits, then taken again
    const idle: Idle = async (wait) => {
      giveUpUnlessNeeded();
      release!();
      try {
        return await wait();
      } finally {
        giveUpUnlessNeeded();
        release = await gate.enter(key, signal);
      }
    };
    try {
      // Others may have drained this system's jobs while we waited for a slot.
      if (signal.aborted || !needed()) return queue.leave(w.id);
      machine = await hooks.start(w, signal, idle, needed);
      if (machine === undefined) return queue.leave(w.id);
    } catch (error) {
      fail({ worker: w, phase: 'start', error });
      return queue.leave(w.id);
    } finally {
      release();
    }
    const load = loadGate && hooks.load ? loadGate.reader(hooks.load.bind(hooks, machine, signal)) : undefined;
    try {
      for (;;) {
        if (signal.aborted) break;
        if (loadGate && load) {
          const onWait = o.onLoadWait && ((now: number, threshold: number) => o.onLoadWait!(w, now, threshold));
          await loadGate.admit(key, load, signal, onWait, () => queue.hasPending(w.backend, w.system)).catch(() => undefined);
          if (signal.aborted) break;
        }
        const job = queue.next(w.id);
        if (!job) break;
        // the system's last job: its machines waiting for their load to drop wait for nothing now
        if (loadGate && !queue.hasPending(w.backend, w.system)) loadGate.jobsTaken(key);
        let ok = false;
        try {
          ok = await hooks.run(machine, job, w);
        } catch (error) {
          fail({ worker: w, phase: 'run', error, job });
        }
        loadGate?.jobFinished(key);
        if (!ok) break;
      }
    } finally {
      queue.leave(w.id);
      await hooks.stop(machine, w).catch((error: unknown) => fail({ worker: w, phase: 'stop', error }));
    }
  }

  // Into the start-up gate (first come, first served) the first machine of every system,
  // then the second of each, and so on: in plan order, a system of 16 machines waited for
  // all 16 start-ups of the system before it, its jobs idle the while.
  const startOrder = [...workers].sort((a, b) => a.index - b.index);
  await Promise.all(startOrder.map(work));
  result.remaining = queue.remaining();
  return result;
}
