// `fleetcache run` in the test's process, for the tests of what a run does when a signal
// (or -abend) cuts one of its steps: its SIGINT/SIGTERM handlers (src/run/interrupt.ts) are
// on this process, and the test signals it as a user signals the binary.
import type { Test } from 'tap';
import { join } from 'node:path';
import { RunLog } from '../../src/run/report.js';
import { runProject, type RunOptions, type RunResult } from '../../src/run/runner.js';
import { agentBundle } from './project.js';

interface HereRun {
  out: () => string;
  /** The run's result, or what it threw. */
  ended: Promise<{ result?: RunResult; error?: unknown }>;
  /** `signal` to this process, as a user sends it to the binary: the run's handlers (interrupt.ts) take it. */
  interrupt: (signal?: NodeJS.Signals) => void;
}

/**
 * `fleetcache run` of `dir` in this process (runProject with its data in <dir>/cache, seed 1,
 * its SIGINT/SIGTERM handlers on this process), `bin` first on the PATH its local machines'
 * scripts inherit: what the run does when a signal cuts a step, without the second of CPU a
 * process of its own costs. What the binary does with a signal: test/run/interrupt.test.ts.
 */
export function runHere(t: Test, dir: string, extra: Partial<RunOptions> = {}, bin?: string): HereRun {
  const path = process.env.PATH;
  const restorePath = () => {
    process.env.PATH = path;
  };
  if (bin) process.env.PATH = `${bin}:${path ?? ''}`;
  t.teardown(restorePath);
  let out = '';
  const log = new RunLog((s) => (out += s));
  const ended = agentBundle()
    .then((agentBundle) => runProject({ agentBundle, cwd: dir, filters: [], seed: 1n, dataRoot: join(dir, 'cache'), log, ...extra }))
    .then((result) => ({ result }), (error: unknown) => ({ error }))
    .finally(restorePath);
  return { out: () => out, ended, interrupt: (signal = 'SIGINT') => process.kill(process.pid, signal) };
}

/** What `ended` settled with, or 'waiting' once `ms` passed. */
export function endedWithin<T>(ended: Promise<T>, ms: number): Promise<T | 'waiting'> {
  return Promise.race([ended, new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), ms).unref())]);
}

