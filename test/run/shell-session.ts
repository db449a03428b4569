// Driving `fleetcache run -shell` (and -debug, -shell-before, -shell-after) from a test:
// the CLI as a real child process whose stdin is a pipe (or, through util-linux
// `script`, a real pseudo-terminal), with input typed as each shell opens.
import { spawn, spawnSync } from 'node:child_process';
import type { Test } from 'tap';
import { cliArgs, stopWithTest } from '../helpers/processes.js';

/** A running `fleetcache run` to type into. */
interface ShellRun {
  /** Everything it printed so far (stdout and stderr; through a pty, one stream). */
  out(): string;
  type(text: string): void;
  /** Resolves once `pattern` is in the output the `nth` time (1-based); rejects after `ms`, or when the run exits first. */
  seen(pattern: RegExp, nth?: number, ms?: number): Promise<void>;
  /** Resolves with the exit status; rejects after `ms`. */
  exit(ms?: number): Promise<number | null>;
  readonly pid: number;
}

/** Whether util-linux `script` is there to give the CLI a pseudo-terminal. */
export const HAS_SCRIPT = spawnSync('script', ['--version']).status === 0;

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Starts `fleetcache run <args>` in `cwd`. With `tty`, it runs under `script`, its stdin,
 * stdout and stderr a pty of `rows`x`cols` (set with stty first). Stopped by PID in teardown.
 */
export function startRun(t: Test, cwd: string, args: string[], o: { tty?: { rows: number; cols: number } } = {}): ShellRun {
  const argv = [process.execPath, ...cliArgs(['run', ...args])];
  const child = o.tty
    ? spawn('script', ['-qefc', `stty rows ${o.tty.rows} cols ${o.tty.cols}; exec ${argv.map(quote).join(' ')}`, '/dev/null'], { cwd, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TERM: 'xterm' } })
    : spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  stopWithTest(t, child, 'SIGKILL');
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (b: Buffer): void => {
    out += b.toString('utf8');
    for (const wake of waiters) wake();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  child.stdin!.on('error', () => undefined);
  let ended = false;
  const exited = new Promise<number | null>((resolve) =>
    // 'close': the output is all read by then
    child.once('close', (code) => {
      ended = true;
      resolve(code);
      for (const wake of waiters) wake();
    }),
  );
  return {
    pid: child.pid!,
    out: () => out,
    type: (text) => void child.stdin!.write(text),
    seen(pattern, nth = 1, ms = 60_000) {
      const count = () => [...out.matchAll(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))].length;
      return new Promise((resolve, reject) => {
        const fail = (why: string): void => {
          waiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`${pattern} not seen ${nth} time(s) ${why}; output:\n${out.slice(-3000)}`));
        };
        const check = (): void => {
          if (count() >= nth) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve();
          } else if (ended) {
            fail('before the run exited');
          }
        };
        const timer = setTimeout(() => fail(`within ${ms} ms`), ms);
        waiters.add(check);
        check();
      });
    },
    exit(ms = 120_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms; output:\n${out.slice(-3000)}`)), ms);
        void exited.then((code) => {
          clearTimeout(timer);
          resolve(code);
        });
      });
    },
  };
}

/** The lines of the run's log (timestamped), without the timestamps. */
export function logLines(out: string): string[] {
  return [...out.replace(/\r/g, '').matchAll(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.*)$/gm)].map((m) => m[1]!);
}
