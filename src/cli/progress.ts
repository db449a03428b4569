// Progress bars for the client commands' long transfers: on stderr, and only when it is a
// terminal, so that a pipe or a log file gets the parseable result lines alone.
import cliProgress from 'cli-progress';
import type { Progress } from '../client/http.js';
import { formatBytes } from '../config/units.js';
import { atSignal } from '../project-upload/signal-cleanup.js';

/** Bars that share the terminal, one per transfer; undefined when stderr is not a terminal (or `quiet`). */
export function terminalBars(format: string, quiet = false): cliProgress.MultiBar | undefined {
  if (quiet || !process.stderr.isTTY) return undefined;
  const multi = new cliProgress.MultiBar({ stream: process.stderr, format, hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic);
  // The bars hide the cursor and turn line wrapping off while they draw: a signal that ends
  // the process (Ctrl-C) turns them back on first, or the shell is left without a cursor.
  // (cli-progress's own gracefulExit would keep the process alive past the signal.)
  const forget = atSignal(() => multi.stop());
  multi.on('stop', forget);
  return multi;
}

/** A Progress drawing a bar per transfer (label, bytes so far, total when known); `stop` ends them all. */
export function transferBars(): { progress?: Progress; stop: () => void } {
  // the label last: a line longer than the terminal is cut there
  const multi = terminalBars(' {bar} {percentage}% | {got} of {size} | {label}');
  if (!multi) return { stop: () => undefined };
  return {
    progress: (label, total) => {
      const shown = total === undefined ? '?' : formatBytes(total);
      const bar = multi.create(total ?? 0, 0, { label, got: formatBytes(0), size: shown });
      let n = 0;
      return (bytes) => {
        n += bytes;
        if (total === undefined) bar.setTotal(n);
        bar.update(n, { label, got: formatBytes(n), size: shown });
      };
    },
    stop: () => multi.stop(),
  };
}
