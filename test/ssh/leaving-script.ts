// Test helper: a script that leaves processes behind on its machine (here: this host), in
// its process group and out of it (setsid), and checks on them by PID.
import { readFileSync } from 'node:fs';
import { undoAtExit } from '../helpers/processes.js';

/** Whether process `pid` runs (not gone, nor a zombie waiting to be reaped). */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const after = stat.lastIndexOf(')');
    return stat.slice(after + 2, after + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** A script line: a sleep in the script's process group and one out of it (setsid), their PIDs appended to `file`, their output not the script's. */
export function leavingScript(file: string): string {
  return `sleep 300 >/dev/null 2>&1 & echo $! >> ${file}; setsid sleep 301 >/dev/null 2>&1 & echo $! >> ${file}`;
}

interface Teardown {
  teardown(fn: () => void): void;
}

/** The PIDs the script wrote to `file`, each killed (SIGKILL) with the test if still running, also when the test process ends without teardowns. */
export function leftPids(t: Teardown, file: string): number[] {
  const pids = readFileSync(file, 'utf8').trim().split('\n').map(Number);
  const stop = (): void => {
    for (const p of pids) {
      try {
        if (running(p)) process.kill(p, 'SIGKILL');
      } catch {
        // gone since
      }
    }
  };
  const forget = undoAtExit(stop);
  t.teardown(() => {
    stop();
    forget();
  });
  return pids;
}
