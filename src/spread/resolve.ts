// Project fields spread evaluates on the controller besides environments (spread-spec
// §4.3): path, backend keys, system usernames and passwords, include/exclude/rename,
// and the environment the repack script sees. Pure: `$(HOST:…)` results come from load.
import path from 'node:path';
import { fieldOrigin, type EnvEntry, type Job, type Project } from './model.js';
import { evalCascade, evalValue } from './env.js';
import { projectError } from './yaml.js';

export interface ResolvedFields {
  readonly remotePath: string;
  /** By backend name. */
  readonly keys: ReadonlyMap<string, string>;
  /** By `backend:system`; only systems that set the field. */
  readonly usernames: ReadonlyMap<string, string>;
  readonly passwords: ReadonlyMap<string, string>;
  readonly include: readonly string[] | undefined;
  readonly exclude: readonly string[];
  readonly rename: readonly string[];
}

/** The evaluated `path:`; must be absolute and not `/`. */
export function resolveRemotePath(project: Project): string {
  const penv = [{ context: 'project', env: project.environment }];
  const value = path.posix.normalize(evalValue('remote project path', project.remotePath, penv, project.hostCommands, true));
  const clean = value.length > 1 ? value.replace(/\/+$/, '') : value;
  if (!path.posix.isAbsolute(clean) || clean === '/') {
    throw projectError(`remote project path must be absolute and not /: ${clean}`, fieldOrigin(project, 'path'));
  }
  return clean;
}

const WHOLE_REF = /^\$(?:\(HOST:.+?\)|[a-zA-Z_][a-zA-Z0-9_]*|\{[a-zA-Z_][a-zA-Z0-9_]*\})/;

export function resolveProjectFields(project: Project): ResolvedFields {
  const host = project.hostCommands;
  const penv = { context: 'project', env: project.environment };
  const keys = new Map<string, string>();
  const usernames = new Map<string, string>();
  const passwords = new Map<string, string>();
  for (const backend of project.backends) {
    const levels = [penv, { context: `backend ${JSON.stringify(backend.name)}`, env: backend.environment }];
    keys.set(backend.name, evalValue(`${backend.name} backend key`, backend.key, levels, host, true).trim());
    for (const system of backend.systems) {
      const label = `${backend.name}:${system.name}`;
      if (system.username !== '') usernames.set(label, evalValue(`${label} username`, system.username, levels, host, false));
      // Passwords may easily include $, so only a value that is one whole reference is expanded.
      if (system.password !== '') {
        const whole = WHOLE_REF.exec(system.password)?.[0] === system.password;
        passwords.set(label, whole ? evalValue(`${label} password`, system.password, levels, host, false) : system.password);
      }
    }
  }
  const list = (context: string, values: readonly string[]): string[] => values.map((v) => evalValue(context, v, [penv], host, false));
  return {
    remotePath: resolveRemotePath(project),
    keys,
    usernames,
    passwords,
    rename: list('rename expression', project.rename),
    include: project.include === undefined ? undefined : list('include list', project.include),
    exclude: list('exclude list', project.exclude),
  };
}

/** The environment of the repack script: project env without suffixed keys, plus SPREAD_BACKENDS. */
export function repackEnvironment(project: Project, jobs: readonly Job[]): EnvEntry[] {
  const env = evalCascade([{ context: 'project', env: project.environment }], project.hostCommands, true);
  const entries = [...env].filter(([k]) => !k.includes('/'));
  const backends = [...new Set(jobs.map((j) => j.backend.name))].sort();
  return [...entries.filter(([k]) => k !== 'SPREAD_BACKENDS'), ['SPREAD_BACKENDS', backends.join(' ')]];
}
