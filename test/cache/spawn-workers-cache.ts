// A multi-process cache as a real child process, for the tests of its start: apart from
// harness.ts, which loads the cache's server into the test process.
import { spawn } from 'node:child_process';
import type { Test } from 'tap';
import { cliArgs, removeSocketDirIfKilled, REPO_ROOT, stopWithTest } from '../helpers/processes.js';

/**
 * `fleetcache cache --workers 2` on `listen` with its data in `data`, started with `nodeArgs`
 * and `env`, and what it writes; stopped by PID in the teardown, or sooner by `stop`.
 */
export function spawnWorkersCache(t: Test, listen: string, data: string, nodeArgs: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [...nodeArgs, ...cliArgs(['cache', '--upstream', 'http://127.0.0.1:1', '--listen', listen, '--data', data, '--workers', '2'])], {
    cwd: REPO_ROOT, env: { ...process.env, FLEETCACHE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const stop = stopWithTest(t, child);
  removeSocketDirIfKilled(child, env.TMPDIR);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, stop, stdout: () => stdout, stderr: () => stderr };
}
