// Small spread projects for `fleetcache run` tests: written into a tap test directory and
// run on the embedded fleet with the log captured.
import type { Test } from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { RunLog } from '../../src/run/report.js';
import type { RunOptions, RunResult } from '../../src/run/runner.js';

/** Writes spread.yaml and `suite/task` → task.yaml into <testdir>/project. */
export async function project(t: Test, spread: string, tasks: Record<string, string> = { 's/t': 'summary: t\nexecute: echo\n' }): Promise<string> {
  return writeProject(join(t.testdir(), 'project'), spread, tasks);
}

/** Writes spread.yaml and `suite/task` → task.yaml into `dir`; returns it. */
export async function writeProject(dir: string, spread: string, tasks: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'spread.yaml'), spread);
  for (const [name, yaml] of Object.entries(tasks)) {
    await mkdir(join(dir, name), { recursive: true });
    await writeFile(join(dir, name, 'task.yaml'), yaml);
  }
  return dir;
}

/** spread.yaml of project `name` from groups of lines, then the one suite s/. */
export function spreadYaml(name: string, ...lines: string[][]): string {
  return [`project: ${name}`, `path: /home/${name}`, ...lines.flat(), 'suites:', '  s/:', '    summary: s', ''].join('\n');
}

export const LOCAL = ['backends:', '  local:', '    type: local', '    systems: [alpha-1]'];

let bundle: Promise<string> | undefined;

/** The agent's bundle, looked for once per test process (each look walks src/ for a newer file). */
export function agentBundle(): Promise<string> {
  return (bundle ??= ensureAgentBundle());
}

/** Runs the project with its data in <dir>/cache, or in `extra.dataRoot`; `out` is the log. */
export async function run(dir: string, filters: string[] = [], extra: Partial<Omit<RunOptions, 'cwd' | 'filters' | 'log'>> = {}): Promise<{ result: RunResult; out: string }> {
  let out = '';
  // loaded here: the files that only write projects (the shell tests) do not load the runner, a second of CPU
  const { runProject } = await import('../../src/run/runner.js');
  const result = await runProject({ agentBundle: await agentBundle(), dataRoot: join(dir, 'cache'), ...extra, cwd: dir, filters, log: new RunLog((s) => (out += s)) });
  return { result, out };
}
