// Builds small spread projects in a tap test directory and lists their jobs.
import type { Test } from 'tap';
import { expandJobs, loadProject, type Job, type Project } from '../../src/spread/index.js';

/** Task files: "suite/task" → task.yaml text. */
interface ProjectFiles {
  spread: string;
  tasks?: Record<string, string>;
}

type Fixture = { [name: string]: string | Fixture };

export function writeProject(t: Test, files: ProjectFiles): string {
  const tree: Fixture = { 'spread.yaml': files.spread };
  for (const [taskPath, text] of Object.entries(files.tasks ?? {})) {
    let dir = tree;
    for (const part of taskPath.split('/')) dir = (dir[part] ??= {}) as Fixture;
    dir['task.yaml'] = text;
  }
  return t.testdir(tree);
}

export async function load(t: Test, files: ProjectFiles): Promise<Project> {
  return loadProject(writeProject(t, files));
}

export async function names(t: Test, files: ProjectFiles, filters: string[] = []): Promise<string[]> {
  return expandJobs(await load(t, files), filters).map((j: Job) => j.name);
}

/** Indents a block by four spaces (for embedding in YAML). */
export const task = (summary = 'a task', extra = ''): string => `summary: ${summary}\nexecute: echo ok\n${extra}`;
