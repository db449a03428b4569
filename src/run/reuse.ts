// Machines kept between runs (spread -reuse, spread-spec §14): a small JSON file in the
// project root lists each kept machine's record; a later -reuse run takes them back
// (one worker each), -discard releases them without running anything.
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineRecord } from '../backends/backend.js';

export const REUSE_FILE = '.fleetcache-reuse.json';

export class ReusePool {
  readonly #file: string;
  readonly #free: MachineRecord[];
  readonly #kept: MachineRecord[] = [];

  private constructor(file: string, records: MachineRecord[]) {
    this.#file = file;
    this.#free = records;
  }

  static async load(projectRoot: string): Promise<ReusePool> {
    const file = join(projectRoot, REUSE_FILE);
    let records: MachineRecord[] = [];
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as { machines?: MachineRecord[] };
      records = Array.isArray(parsed.machines) ? parsed.machines.filter((m) => typeof m?.backend === 'string' && typeof m.system === 'string' && typeof m.address === 'string') : [];
    } catch {
      // no machines kept yet
    }
    return new ReusePool(file, records);
  }

  /** Takes a kept machine of this backend and system, if one is left. */
  take(backend: string, system: string): MachineRecord | undefined {
    const i = this.#free.findIndex((r) => r.backend === backend && r.system === system);
    return i < 0 ? undefined : this.#free.splice(i, 1)[0];
  }

  /** Every machine not taken back (for -discard). */
  drain(): MachineRecord[] {
    return this.#free.splice(0);
  }

  keep(record: MachineRecord): void {
    this.#kept.push(record);
  }

  /** Writes what is kept now (machines not taken back stay listed); removes the file when empty. */
  async save(): Promise<void> {
    const machines = [...this.#kept, ...this.#free];
    if (machines.length === 0) {
      await rm(this.#file, { force: true });
      return;
    }
    await writeFile(`${this.#file}.tmp`, `${JSON.stringify({ machines }, null, 2)}\n`, { mode: 0o600 });
    await rename(`${this.#file}.tmp`, this.#file);
  }
}
