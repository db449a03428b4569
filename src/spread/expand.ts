// The job matrix (spread-spec §5, §6, §8, §9): suites × tasks × backends × systems ×
// variants × samples, filtered, manual rule applied, sorted. No I/O but the `$(HOST:…)`
// commands of the environments of the jobs made (host.ts), run as each is first needed.
import { fieldOrigin, type Backend, type Env, type Job, type Project, type Suite, type System } from './model.js';
import { evalHostOnly } from './env.js';
import { compileFilter } from './filter.js';
import { jobName, sortJobs } from './order.js';
import { resolveProjectFields, resolveRemotePath } from './resolve.js';
import { EMPTY_SET, applyLevel, applyLevels, envVariants, type Level, type SetState } from './sets.js';
import { projectError } from './yaml.js';

interface ExpandOptions {
  /** Apply spread's manual rule (§8). Default true; false keeps manual jobs. */
  readonly discardManual?: boolean;
}

const keysOf = (env: Env): string[] => env.map(([k]) => k);

/** Memoises per key object (a suite, a backend, ...) and optionally a second key. */
function memo<K extends object, K2, V>(): (k: K, k2: K2, make: () => V) => V {
  const outer = new WeakMap<K, Map<K2, V>>();
  return (k, k2, make) => {
    let inner = outer.get(k);
    if (!inner) outer.set(k, (inner = new Map()));
    let v = inner.get(k2);
    if (v === undefined) inner.set(k2, (v = make()));
    return v;
  };
}

export function expandJobs(project: Project, filters: readonly string[] = [], options: ExpandOptions = {}): Job[] {
  const filter = compileFilter(filters);
  const host = project.hostCommands;
  const remotePath = resolveRemotePath(project);
  const byName = new Map(project.backends.map((b) => [b.name, b]));

  const envMemo = new WeakMap<object, Env>();
  const levelEnv = (owner: object, env: Env, context: string): Env => {
    let e = envMemo.get(owner);
    if (!e) envMemo.set(owner, (e = evalHostOnly(env, context, host)));
    return e;
  };
  const projectEnv = levelEnv(project, project.environment, 'project');

  const pbke: Level = { context: 'project', entries: project.backends.map((b) => b.name), origin: fieldOrigin(project, 'backends') };
  const pevr: Level = { context: 'project', entries: envVariants(keysOf(project.environment), ''), origin: fieldOrigin(project, 'environment') };

  const backendsOfSuite = memo<Suite, null, SetState>();
  const systemsOfSuite = memo<Suite, Backend, SetState>();
  const variantsOfSystem = memo<System, null, SetState>();
  const variantsOfSuite = memo<Suite, System, SetState>();

  const jobs: Job[] = [];
  const manual = { backends: !filter.empty, systems: !filter.empty, suites: !filter.empty, tasks: !filter.empty };

  for (const suite of project.suites) {
    const slabel = `suite ${suite.name}`;
    const suiteBackends = backendsOfSuite(suite, null, () => applyLevels(EMPTY_SET, [pbke, { context: slabel, entries: suite.backends, origin: fieldOrigin(suite, 'backends') }], 'backends'));
    // An unknown name is refused where it reaches a task's final set (spread evaluates the
    // backends per task: a task's own plain list replaces the suite's, and a suite with no
    // task is never evaluated); said at the suite's line when the task inherited it.
    for (const task of suite.tasks) {
      const backends = [...applyLevel(suiteBackends, { context: task.name, entries: task.backends, origin: fieldOrigin(task, 'backends') }, 'backends').final].sort();
      for (const bname of backends) {
        const backend = byName.get(bname);
        if (!backend) {
          const fromSuite = suiteBackends.final.has(bname) && !task.backends.some((entry) => entry.replace(/^[+-]/, '') === bname);
          throw fromSuite
            ? projectError(`${slabel} refers to unknown backend ${JSON.stringify(bname)} (for ${task.name})`, fieldOrigin(suite, 'backends'))
            : projectError(`${task.name} refers to unknown backend ${JSON.stringify(bname)}`, fieldOrigin(task, 'backends'));
        }
        const blabel = `backend ${JSON.stringify(backend.name)}`;
        const suiteSystems = systemsOfSuite(suite, backend, () =>
          applyLevels(EMPTY_SET, [{ context: blabel, entries: backend.systems.map((s) => s.name), origin: fieldOrigin(backend, 'systems') }, { context: slabel, entries: suite.systems, origin: fieldOrigin(suite, 'systems') }], 'systems'),
        );
        const systems = [...applyLevel(suiteSystems, { context: task.name, entries: task.systems, origin: fieldOrigin(task, 'systems') }, 'systems').final].sort();
        for (const sysname of systems) {
          const system = backend.systems.find((s) => s.name === sysname);
          if (!system) continue; // not for us
          const ylabel = `${backend.name}:${system.name}`;
          const sysVariants = variantsOfSystem(system, null, () =>
            applyLevels(EMPTY_SET, [
              pevr,
              { context: blabel, entries: envVariants(keysOf(backend.environment), '+'), origin: fieldOrigin(backend, 'environment') },
              { context: blabel, entries: backend.variants, origin: fieldOrigin(backend, 'variants') },
              { context: ylabel, entries: envVariants(keysOf(system.environment), '+'), origin: fieldOrigin(system, 'environment') },
              { context: ylabel, entries: system.variants, origin: fieldOrigin(system, 'variants') },
            ], 'variants'),
          );
          const suiteVariants = variantsOfSuite(suite, system, () =>
            applyLevels(sysVariants, [
              { context: slabel, entries: envVariants(keysOf(suite.environment), '+'), origin: fieldOrigin(suite, 'environment') },
              { context: slabel, entries: suite.variants, origin: fieldOrigin(suite, 'variants') },
            ], 'variants'),
          );
          const taskVariants = applyLevels(suiteVariants, [
            { context: task.name, entries: envVariants(keysOf(task.environment), '+'), origin: fieldOrigin(task, 'environment') },
            { context: task.name, entries: task.variants, origin: fieldOrigin(task, 'variants') },
          ], 'variants').final;
          const variants = taskVariants.size === 1 && taskVariants.has('') ? [''] : [...taskVariants].filter((v) => v !== '').sort();
          // as spread, a task's environment is evaluated for each of its jobs: a task of no sample
          // makes none, and a $(HOST:...) of its that fails is no error
          if (variants.length === 0 || task.samples < 1) continue;

          const envLevels = [
            projectEnv,
            levelEnv(backend, backend.environment, blabel),
            levelEnv(system, system.environment, ylabel),
            levelEnv(suite, suite.environment, slabel),
            levelEnv(task, task.environment, task.name),
          ] as const;
          const priority = task.priority ?? suite.priority ?? system.priority ?? backend.priority ?? 0;
          for (const variant of variants) {
            for (let sample = 1; sample <= task.samples; sample++) {
              const name = jobName(backend.name, system.name, task.name, variant, task.samples > 1 ? sample : 0);
              if (!filter.pass(name, sample)) continue;
              jobs.push({ name, backend, system, suite, task, variant, sample, priority, remotePath, projectName: project.name, envLevels });
              if (!backend.manual) manual.backends = false;
              if (!system.manual) manual.systems = false;
              if (!suite.manual) manual.suites = false;
              if (!task.manual) manual.tasks = false;
            }
          }
        }
      }
    }
  }

  const kept = options.discardManual === false ? jobs : jobs.filter((j) => keep(j, manual));
  // Evaluated for its errors, as spread does before reporting jobs.
  resolveProjectFields(project);
  if (kept.length === 0) throw projectError(filter.empty ? 'cannot find any tasks' : 'nothing matches provider filter');
  return sortJobs(kept);
}

function keep(job: Job, manual: { backends: boolean; systems: boolean; suites: boolean; tasks: boolean }): boolean {
  return (manual.backends || !job.backend.manual) && (manual.systems || !job.system.manual) && (manual.suites || !job.suite.manual) && (manual.tasks || !job.task.manual);
}

