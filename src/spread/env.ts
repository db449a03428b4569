// Environments (spread-spec §4): `$(HOST:…)` substitution (each command run on first use), the
// cascade (a key set again moves to the end), and variant resolution for one job.
import type { Env, EnvEntry, Job } from './model.js';
import { HOST_REF, type HostCommands } from './host.js';
import { projectError } from './yaml.js';

const VAR_REF = /\$(?:\(HOST:.+?\)|[a-zA-Z_][a-zA-Z0-9_]*|\{[a-zA-Z_][a-zA-Z0-9_]*\})/g;

function hostOutput(host: HostCommands, ref: string, context: string): string {
  const r = host.result(ref.slice('$(HOST:'.length, -1));
  if (!r.ok) throw projectError(`${ref} in ${context} environment returned error: ${r.error}`);
  return r.output;
}

/** One level with its `$(HOST:…)` references replaced (spread's evalenv with hostOnly). */
export function evalHostOnly(env: Env, context: string, host: HostCommands): Env {
  if (!env.some(([, v]) => v.includes('$(HOST:'))) return env;
  return env.map(([k, v]): EnvEntry => [k, v.includes('$(HOST:') ? v.replace(HOST_REF, (ref) => hostOutput(host, ref, context)) : v]);
}

/**
 * spread's evalenv: levels are cascaded in order; with `hostOnly` false, `$VAR` and
 * `${VAR}` are also replaced by the value cascaded so far (used for username/password).
 */
export function evalCascade(levels: ReadonlyArray<{ context: string; env: Env }>, host: HostCommands, hostOnly: boolean): Map<string, string> {
  const result = new Map<string, string>();
  const re = hostOnly ? HOST_REF : VAR_REF;
  for (const { context, env } of levels) {
    for (const [k, v] of env) {
      const value = v.replace(re, (ref) => (ref.startsWith('$(') ? hostOutput(host, ref, context) : result.get(ref.replace(/^\$\{?|\}$/g, '')) ?? ''));
      result.delete(k);
      result.set(k, value);
    }
  }
  return result;
}

/** Evaluates one value against levels (spread's evalone). */
export function evalValue(context: string, value: string, levels: ReadonlyArray<{ context: string; env: Env }>, host: HostCommands, hostOnly: boolean): string {
  const key = 'SPREAD_INTERNAL_EVAL';
  return evalCascade([...levels, { context, env: [[key, value]] }], host, hostOnly).get(key) ?? '';
}

/** Cascades entries: setting an existing key removes it and appends it at the end. */
function cascade(levels: readonly Env[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const env of levels) {
    for (const [k, v] of env) {
      m.delete(k);
      m.set(k, v);
    }
  }
  return m;
}

/**
 * Variant resolution (Environment.Variant): `NAME/list` keys whose list has the variant
 * are renamed in place to NAME, deleting any bare NAME; other suffixed keys are dropped.
 * When several suffixed keys resolve to one name, the last in cascade order wins.
 */
function resolveVariant(env: ReadonlyMap<string, string>, variant: string): EnvEntry[] {
  const slots: Array<EnvEntry | undefined> = [];
  const index = new Map<string, number>();
  for (const [k, v] of env) {
    if (!k.includes('/')) index.set(k, slots.length);
    slots.push([k, v]);
  }
  for (let i = 0; i < slots.length; i++) {
    const slot = slots[i];
    if (slot === undefined) continue; // a bare key removed by an earlier renamed one
    const [k, v] = slot;
    const slash = k.lastIndexOf('/');
    if (slash < 0) continue;
    if (!k.slice(slash + 1).split(',').includes(variant)) {
      slots[i] = undefined;
      continue;
    }
    const name = k.slice(0, slash);
    const prev = index.get(name);
    if (prev !== undefined) slots[prev] = undefined;
    slots[i] = [name, v];
    index.set(name, i);
  }
  return slots.filter((e): e is EnvEntry => e !== undefined);
}

/** The SPREAD_* variables every job starts with. */
function spreadVariables(job: Job, projectPath: string): EnvEntry[] {
  return [
    ['SPREAD_JOB', job.name],
    ['SPREAD_PROJECT', job.projectName],
    ['SPREAD_PATH', projectPath],
    ['SPREAD_BACKEND', job.backend.name],
    ['SPREAD_SYSTEM', job.system.name],
    ['SPREAD_SUITE', job.suite.name],
    ['SPREAD_TASK', job.task.name],
    ['SPREAD_VARIANT', job.variant],
    ['SPREAD_SAMPLE', String(job.sample)],
  ];
}

/**
 * The evaluated, ordered environment of a job, as its scripts see it. `projectPath`: where
 * the project is on the machine (local machines nest it), SPREAD_PATH's first value; an
 * `environment:` that sets SPREAD_PATH overrides it, as in spread.
 */
export function jobEnvironment(job: Job, projectPath = job.remotePath): EnvEntry[] {
  return resolveVariant(cascade([spreadVariables(job, projectPath), ...job.envLevels]), job.variant);
}
