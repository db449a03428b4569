// The scripts and timeouts a job needs, combined as spread's client does (spread-spec
// §10, §11): each non-empty piece in its own `( ... )` subshell, blank line between.
import { DISABLED_TIMEOUT, type Job, type Timeouts } from './model.js';

function joinScripts(...scripts: string[]): string {
  return scripts.filter((s) => s !== '').map((s) => `(\n${s}\n)`).join('\n\n');
}

/** project prepare-each, backend prepare-each, suite prepare-each, task prepare. */
export function jobPrepare(job: Job, project: { prepareEach: string }): string {
  return joinScripts(project.prepareEach, job.backend.prepareEach, job.suite.prepareEach, job.task.prepare);
}

/** task restore, suite restore-each, backend restore-each, project restore-each. */
export function jobRestore(job: Job, project: { restoreEach: string }): string {
  return joinScripts(job.task.restore, job.suite.restoreEach, job.backend.restoreEach, project.restoreEach);
}

/** task debug, suite debug-each, backend debug-each, project debug-each. */
export function jobDebug(job: Job, project: { debugEach: string }): string {
  return joinScripts(job.task.debug, job.suite.debugEach, job.backend.debugEach, project.debugEach);
}

export type ScriptLevel = 'task' | 'suite' | 'backend' | 'project';

const DEFAULT_WARN = 5 * 60_000;
const DEFAULT_KILL = 15 * 60_000;
/** What a disabled timeout becomes, as in spread: a year (the timers take any length, long-timer.ts). */
const NEVER = 365 * 24 * 3600_000;

/**
 * Effective warn and kill timeouts (ms) from a chain of levels, innermost first: the
 * first set value of each; defaults 5m/15m; disabled → never (spread: a year); a kill
 * timeout above 1 s that is an exact multiple of the warn timeout is reduced by 1 s.
 */
export function levelTimeouts(chain: readonly Timeouts[]): { warn: number; kill: number } {
  const pick = (get: (l: Timeouts) => number | undefined, dflt: number): number => {
    const v = chain.map(get).find((t) => t !== undefined && t !== 0) ?? dflt;
    return v === DISABLED_TIMEOUT ? NEVER : v;
  };
  const warn = pick((l) => l.warnTimeout, DEFAULT_WARN);
  let kill = pick((l) => l.killTimeout, DEFAULT_KILL);
  // never down to 0, which would mean no kill timer at all
  if (warn > 0 && kill !== NEVER && kill > 1000 && kill % warn === 0) kill -= 1000;
  return { warn, kill };
}

/** The timeouts of a script of the given level: that level's, then each outer one's. */
export function scriptTimeouts(job: Job, project: Timeouts, level: ScriptLevel): { warn: number; kill: number } {
  const chain = [job.task, job.suite, job.backend, project];
  return levelTimeouts(chain.slice({ task: 0, suite: 1, backend: 2, project: 3 }[level]));
}
