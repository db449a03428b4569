// Machines kept between runs (spread -reuse, spread-spec §14): a small JSON file in the
// project root lists each kept machine's record; a later -reuse run takes them back
// (one worker each), -discard releases them without running anything.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { MachineRecord } from '../backends/backend.js';
import { isRunning, startTimeOf } from '../pid-alive.js';
import { fsyncFile } from '../store/durable.js';
import { isMissing } from '../store/missing.js';

export const REUSE_FILE = '.fleetcache-reuse.json';
/** The file writeRecords writes before its rename: a run killed between the two leaves it, machines' passwords in it. */
export const REUSE_TEMP_FILE = `${REUSE_FILE}.tmp`;

/** The machine records of a file `{ "machines": [...] }`; none when it is missing or unreadable. */
async function readRecords(file: string): Promise<MachineRecord[]> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as { machines?: MachineRecord[] };
    return Array.isArray(parsed.machines)
      ? parsed.machines.filter((m) => typeof m?.backend === 'string' && typeof m.system === 'string' && typeof m.address === 'string' && tokensOrAbsent(m.lostScripts) && tokensOrAbsent(m.lostJobs))
      : [];
  } catch {
    return [];
  }
}

/** A record's lost tokens are a list of strings or absent (a record written before they were kept). */
const tokensOrAbsent = (tokens: unknown): boolean => tokens === undefined || (Array.isArray(tokens) && tokens.every((t) => typeof t === 'string'));

/**
 * Replaces the file at once (through a .tmp); removes it when nothing is listed. Durably:
 * the records are what finds the machines again after the runner's host lost power (a
 * preempted CI VM), and a list renamed into place before its bytes reached the disk can
 * come back empty, the machines it named left running unlisted. The content is flushed
 * before the rename, the directory after it (and after a removal).
 */
async function writeRecords(file: string, machines: readonly MachineRecord[]): Promise<void> {
  if (machines.length === 0) {
    await rm(file, { force: true });
  } else {
    await mkdir(dirname(file), { recursive: true });
    const temp = `${file}.tmp`; // REUSE_TEMP_FILE beside the project's REUSE_FILE
    await writeFile(temp, `${JSON.stringify({ machines }, null, 2)}\n`, { mode: 0o600, flush: true });
    await rename(temp, file);
  }
  // no directory (nothing was ever listed there): nothing to sync
  await fsyncFile(dirname(file)).catch((err: unknown) => {
    if (!isMissing(err)) throw err;
  });
}

export class ReusePool {
  readonly #file: string;
  readonly #free: MachineRecord[];
  readonly #kept: MachineRecord[] = [];
  readonly #loaded: readonly MachineRecord[];

  private constructor(file: string, records: MachineRecord[]) {
    this.#file = file;
    this.#free = records;
    this.#loaded = [...records];
  }

  static async load(projectRoot: string): Promise<ReusePool> {
    const file = join(projectRoot, REUSE_FILE);
    return new ReusePool(file, await readRecords(file));
  }

  /** Whether machines of this backend and system were kept when the pool was loaded (taken back since or not). */
  hadKept(backend: string, system: string): boolean {
    return this.#loaded.some((r) => r.backend === backend && r.system === system);
  }

  /** The machines of this backend on record when the pool was loaded (taken back since or not). */
  keptBy(backend: string): MachineRecord[] {
    return this.#loaded.filter((r) => r.backend === backend);
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
    await writeRecords(this.#file, [...this.#kept, ...this.#free]);
  }
}

/** Where a run lists its machines while it has them, one file per runner process. */
export const RUNNING_DIR = 'running';
/** `<pid>-<start time>.json`, or `<pid>.json` (see RunningMachines). */
const RUNNING_FILE = /^(\d+)(?:-(\d+))?\.json$/;

/** One machine, whichever record of it (a backend's address names it). */
export const sameMachine = (a: MachineRecord, b: MachineRecord): boolean => a.backend === b.backend && a.address === b.address;

/**
 * The machines a run holds, on disk from the moment each is allocated or taken back until
 * it is discarded or kept (spread's .spread-reuse.<pid>.yaml):
 * `<data>/running/<pid>-<start time>.json` (`<pid>.json` where the start time is unknown).
 * A runner killed outright (SIGKILL, a crash) leaves its file, and `run --discard` discards
 * the machines listed in the files of runners no longer alive: the start time tells a
 * dead runner whose PID another process has since taken.
 */
export class RunningMachines {
  readonly #file: string;
  readonly #machines: MachineRecord[] = [];
  #writes: Promise<void> = Promise.resolve();

  constructor(dataRoot: string, pid = process.pid) {
    const started = startTimeOf(pid);
    this.#file = join(dataRoot, RUNNING_DIR, started === undefined ? `${pid}.json` : `${pid}-${started}.json`);
  }

  add(record: MachineRecord): Promise<void> {
    this.#machines.push(record);
    return this.#write();
  }

  /** The machine is discarded or kept elsewhere (the reuse file). */
  remove(record: MachineRecord): Promise<void> {
    const i = this.#machines.findIndex((m) => sameMachine(m, record));
    if (i >= 0) this.#machines.splice(i, 1);
    return this.#write();
  }

  get size(): number {
    return this.#machines.length;
  }

  /** Writes are queued: concurrent workers never interleave two versions of the file. */
  #write(): Promise<void> {
    const machines = [...this.#machines];
    this.#writes = this.#writes.catch(() => undefined).then(() => writeRecords(this.#file, machines));
    return this.#writes;
  }

  /** After a discard: each of `files` keeps only the machines of `left` it lists (removed when none). */
  static async prune(files: readonly string[], left: readonly MachineRecord[]): Promise<void> {
    for (const file of files) await writeRecords(file, (await readRecords(file)).filter((r) => left.some((l) => sameMachine(l, r))));
  }

  /** Machines listed by runners that are gone, with the files that listed them. */
  static async orphans(dataRoot: string): Promise<{ records: MachineRecord[]; files: string[] }> {
    const dir = join(dataRoot, RUNNING_DIR);
    const names = await readdir(dir).catch(() => [] as string[]);
    const files = names.filter((n) => {
      const m = RUNNING_FILE.exec(n);
      return m !== null && !isRunning(Number(m[1]), m[2]);
    }).map((n) => join(dir, n));
    const records: MachineRecord[] = [];
    for (const file of files) records.push(...(await readRecords(file)));
    return { records, files };
  }
}
