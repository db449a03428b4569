// The spread project model: plain typed data produced by load.ts and read by expand.ts
// and the runner. Field meanings follow spread's project.go (see spread-spec.md §2).
import type { HostCommands } from './host.js';

/** One environment entry; environments are ordered lists of these. */
export type EnvEntry = readonly [key: string, value: string];
export type Env = readonly EnvEntry[];

/** Timeouts in milliseconds; DISABLED_TIMEOUT (written `-1` or `-1ns`) means "never". */
export const DISABLED_TIMEOUT = -1;

/** Where a value came from, for error messages. */
export interface Origin {
  /** File relative to the project root, e.g. "spread.yaml" or "tests/main/a/task.yaml". */
  readonly file: string;
  readonly line: number | undefined;
}

/** The fields whose line an error may name, beside the entity's own (see fieldOrigin). */
export type PlacedField = 'path' | 'type' | 'systems' | 'backends' | 'variants' | 'environment';

/** Where some fields of an entity are written: their values' lines. */
export type FieldOrigins = Readonly<Partial<Record<PlacedField, Origin>>>;

/** Where `field` of `entity` is written, else where the entity is. */
export function fieldOrigin(entity: { readonly origin: Origin; readonly at: FieldOrigins }, field: PlacedField): Origin {
  return entity.at[field] ?? entity.origin;
}

/** The scripts a level may carry; empty string = not set. All are trimmed. */
export interface LevelScripts {
  readonly prepare: string;
  readonly restore: string;
  readonly debug: string;
  readonly prepareEach: string;
  readonly restoreEach: string;
  readonly debugEach: string;
}

export interface Timeouts {
  readonly warnTimeout: number | undefined;
  readonly killTimeout: number | undefined;
}

/** Result of one `$(HOST:cmd)` run on the controller. */
export type HostResult = { readonly ok: true; readonly output: string } | { readonly ok: false; readonly error: string };

export interface Project extends LevelScripts, Timeouts {
  readonly name: string;
  /** Absolute project root (directory of spread.yaml, joined with `reroot`). */
  readonly rootDir: string;
  /** Absolute path of the spread.yaml that was read. */
  readonly file: string;
  /** `path:` as written; resolve.ts evaluates $(HOST:…) in it. */
  readonly remotePath: string;
  readonly environment: Env;
  /** In file order. */
  readonly backends: readonly Backend[];
  /** In file order. */
  readonly suites: readonly Suite[];
  readonly repack: string;
  /** undefined = spread's default (every entry of the root). */
  readonly include: readonly string[] | undefined;
  readonly exclude: readonly string[];
  readonly rename: readonly string[];
  /** Its `$(HOST:…)` commands, each run when first needed (spread's cmdcache). */
  readonly hostCommands: HostCommands;
  /** Keys of spread.yaml and the task files that fleetcache does not know, each `file:line: …` (a verbose run says them). */
  readonly ignoredKeys: readonly string[];
  readonly origin: Origin;
  readonly at: FieldOrigins;
}

export interface Backend extends LevelScripts, Timeouts {
  readonly name: string;
  readonly type: string;
  readonly key: string;
  readonly allocate: string;
  readonly discard: string;
  /** Sorted by name, like spread's map of systems. */
  readonly systems: readonly System[];
  readonly environment: Env;
  /** Sorted alphabetically at load, as spread does. */
  readonly variants: readonly string[];
  readonly haltTimeout: number | undefined;
  readonly priority: number | undefined;
  readonly manual: boolean;
  /** Bytes; 0 = unset. */
  readonly memory: number;
  readonly plan: string;
  readonly location: string;
  /** Bytes; 0 = unset; -1 = preserve-size. */
  readonly storage: number;
  /** fleetcache extension: the region whose cache this backend's machines use. */
  readonly region: string | undefined;
  /**
   * The backend's whole mapping as checked against its type's options (defaults filled in),
   * for its provider; empty for types fleetcache has no provider for.
   */
  readonly options: Readonly<Record<string, unknown>>;
  readonly origin: Origin;
  readonly at: FieldOrigins;
}

export interface System {
  readonly backend: string;
  readonly name: string;
  readonly image: string;
  /** Machines for this system; at least 1. */
  readonly workers: number;
  readonly username: string;
  readonly password: string;
  readonly kernel: string;
  /** As written; the backend's plan applies when empty. */
  readonly plan: string;
  /** Bytes; 0 = unset (the backend's applies). */
  readonly storage: number;
  readonly bios: string;
  readonly cpuFamily: string;
  readonly secureBoot: boolean;
  readonly environment: Env;
  readonly variants: readonly string[];
  readonly priority: number | undefined;
  readonly manual: boolean;
  /** fleetcache extension; undefined = the backend's region applies. */
  readonly region: string | undefined;
  readonly origin: Origin;
  readonly at: FieldOrigins;
}

export interface Suite extends LevelScripts, Timeouts {
  /** With trailing slash: "tests/main/". */
  readonly name: string;
  /** Absolute directory. */
  readonly dir: string;
  readonly summary: string;
  readonly systems: readonly string[];
  readonly backends: readonly string[];
  readonly variants: readonly string[];
  readonly environment: Env;
  readonly priority: number | undefined;
  readonly manual: boolean;
  /** fleetcache extension: path of a tooltool manifest, as written. */
  readonly assets: string | undefined;
  /** Sorted by directory name. */
  readonly tasks: readonly Task[];
  readonly origin: Origin;
  readonly at: FieldOrigins;
}

export interface Task extends Timeouts {
  /** Suite name + directory: "tests/main/install". */
  readonly name: string;
  /** The suite's name, "tests/main/". */
  readonly suite: string;
  /** Absolute directory. */
  readonly dir: string;
  readonly summary: string;
  readonly details: string;
  readonly systems: readonly string[];
  readonly backends: readonly string[];
  readonly variants: readonly string[];
  readonly environment: Env;
  /** At least 1 when written as 0 or absent. */
  readonly samples: number;
  readonly prepare: string;
  readonly execute: string;
  readonly restore: string;
  readonly debug: string;
  /** Normalised paths relative to the task directory. */
  readonly artifacts: readonly string[];
  readonly priority: number | undefined;
  readonly manual: boolean;
  /** fleetcache extension: path of a tooltool manifest, as written. */
  readonly assets: string | undefined;
  readonly origin: Origin;
  readonly at: FieldOrigins;
}

/**
 * The environment levels of a job, each with its `$(HOST:…)` references already
 * replaced: project, backend, system, suite, task. Shared between jobs; the final
 * ordered environment is computed by jobEnvironment() (env.ts).
 */
type EnvLevels = readonly [Env, Env, Env, Env, Env];

export interface Job {
  /** `backend:system:suite/task[:variant][#sample]`. */
  readonly name: string;
  readonly backend: Backend;
  readonly system: System;
  readonly suite: Suite;
  readonly task: Task;
  /** "" when the task has no variants. */
  readonly variant: string;
  /** 1-based. */
  readonly sample: number;
  /** First explicitly set of task, suite, system, backend; default 0. */
  readonly priority: number;
  /** The evaluated `path:` (SPREAD_PATH). */
  readonly remotePath: string;
  readonly projectName: string;
  readonly envLevels: EnvLevels;
}
