// Test helper: a script that leaves processes behind on its machine (here: this host), in
// its process group and out of it (setsid), and checks on them by PID.
import { existsSync, readFileSync } from 'node:fs';
import { isAlive, undoAtExit } from '../helpers/processes.js';

/** A script line: a sleep in the script's process group and one out of it (setsid), their PIDs appended to `file`, their output not the script's. */
export function leavingScript(file: string): string {
  return `sleep 300 >/dev/null 2>&1 & echo $! >> ${file}; setsid sleep 301 >/dev/null 2>&1 & echo $! >> ${file}`;
}

/**
 * Whether `file` holds `lines` whole lines at least: a shell appending a PID (`echo $$ >> file`)
 * creates the file before it writes, so a file that exists may still be empty.
 */
export function wroteLines(file: string, lines = 1): boolean {
  return existsSync(file) && readFileSync(file, 'utf8').split('\n').length > lines;
}

interface Teardown {
  teardown(fn: () => void): void;
}

/**
 * The PIDs the script wrote to `file`, each killed (SIGKILL) with the test if still running,
 * also when the test process ends without teardowns. Read before the script finished its line
 * (the shell creates the file, then writes), `file` is refused: an empty line would be PID 0,
 * and a kill of 0 is one of this process's own group, the test runner's and CI's included.
 */
export function leftPids(t: Teardown, file: string): number[] {
  const text = readFileSync(file, 'utf8');
  const pids = text.split('\n').slice(0, -1).map(Number);
  if (!text.endsWith('\n') || !pids.every((p) => Number.isSafeInteger(p) && p > 0)) throw new Error(`${file} is not whole lines of PIDs: ${JSON.stringify(text)}`);
  const stop = (): void => {
    for (const p of pids) {
      try {
        if (isAlive(p)) process.kill(p, 'SIGKILL');
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
