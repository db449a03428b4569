// A child process running an ES module given as text, from the repository root (importing
// src/ through treeModule, processes.ts), that prints a line once it reached the point under test.
import { spawn } from 'node:child_process';
import type { Test } from 'tap';
import { REPO_ROOT, SOURCE_LOADER, stopWithTest } from './processes.js';

/** Starts `script`; resolves once it printed its line, with its stderr so far and its exit code to come. */
export async function startScript(t: Test, script: string) {
  const child = spawn(process.execPath, [...SOURCE_LOADER, '--input-type=module', '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  stopWithTest(t, child, 'SIGKILL');
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    void exited.then((code) => reject(new Error(`the script exited (${code}) before its line: ${stderr.trim()}`)));
  });
  return { child, exited, stderr: () => stderr };
}
