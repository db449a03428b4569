// strace (from Debian), for what only the system calls show: a module body run under it (the
// fsyncs that make a write outlive a power loss, and their order against renames and links),
// or a running server attached by PID (a kill or a delay at an exact system call).
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Test } from 'tap';
import { REPO_ROOT, SOURCE_LOADER, stopWithTest } from './processes.js';

/** Runs `code` (an ES module body importing src/ through treeModule, processes.ts) under strace with `options`; its trace, one system call a line. */
export function straced(code: string, trace: string, options: string[]): string {
  execFileSync('strace', ['-f', '-qq', '-y', ...options, '-o', trace, process.execPath, ...SOURCE_LOADER, '--input-type=module', '-e', code], {
    cwd: REPO_ROOT, stdio: 'ignore', timeout: 60_000,
  });
  return readFileSync(trace, 'utf8');
}

/**
 * Attaches strace with `options` to the running processes `pids` (each with its threads, and
 * the children they fork), writing its trace to `trace`; resolves once every one is attached
 * (within 20 s). Stopped by PID in `t`'s teardown, or sooner by the function it resolves
 * with: stopped, strace detaches, and a system call it holds (a delay) goes on at once.
 * `threadsOnly`: `pids` are threads, each traced alone (with -f, strace takes all threads of
 * a thread's process).
 */
export async function attachStrace(t: Pick<Test, 'teardown'>, pids: readonly number[], trace: string, options: string[], threadsOnly = false): Promise<() => Promise<void>> {
  const tracer = spawn('strace', [...(threadsOnly ? [] : ['-f']), ...pids.flatMap((pid) => ['-p', String(pid)]), '-o', trace, ...options], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stop = stopWithTest(t, tracer);
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`strace did not attach within 20 s: ${err}`)), 20_000);
    tracer.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      if (pids.every((pid) => new RegExp(`Process ${pid} attached`).test(err))) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return stop;
}
