// The machines an SSH backend (ssh, adhoc) discarded while the processes of a script whose
// connection was lost could not be stopped (the machine did not answer the sweep), by the
// place another machine of the run may get (an ssh host, an adhoc endpoint): where a job may
// still run, no other job runs, so the place is swept again before it serves another machine.
import type { Machine } from './backend.js';
import type { ConnectOptions } from '../ssh/client.js';
import { SshMachine } from './ssh-machine.js';

export class LostScriptSweeps<K> {
  readonly #unswept = new Map<K, SshMachine>();

  /** Whether the machine discarded at `key` left processes not stopped yet. */
  has(key: K): boolean {
    return this.#unswept.has(key);
  }

  /**
   * Stops what the lost scripts of `machine`, being discarded from `key`, left running; when it
   * cannot, `key` is on record for sweepAgain and `unstopped` is told why. `signal` (the run's)
   * cuts it short, the connection and the sweep alike (as it does sweepAgain): `key` is then on
   * record too, and `unstopped` is told the run was interrupted.
   */
  async atDiscard(key: K, machine: Machine, unstopped: (err: unknown) => void, signal?: AbortSignal): Promise<void> {
    if (!(machine instanceof SshMachine)) return;
    await machine.stopLostScripts(signal).catch((err: unknown) => {
      this.#unswept.set(key, machine);
      unstopped(signal?.aborted ? new Error('the run was interrupted') : err);
    });
  }

  /**
   * Sweeps again, connecting as `connect` says, what the machine discarded at `key` left (if
   * any), now that `key` is taken again: rejects with `refusal(err, machine)` when it still
   * cannot, and `key` stays on record. The signal of `connect` (the run's) cuts it short, the
   * connection and the sweep alike: it then rejects with what the abort gave, no refusal of `key`.
   */
  async sweepAgain(key: K, connect: ConnectOptions, refusal: (err: unknown, machine: SshMachine) => unknown): Promise<void> {
    const left = this.#unswept.get(key);
    if (left === undefined) return;
    try {
      await left.stopLostScriptsOver(connect);
    } catch (err) {
      if (connect.signal?.aborted) throw err;
      throw refusal(err, left);
    }
    this.#unswept.delete(key);
  }
}
