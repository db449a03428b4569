// Progress bars for the client commands' long transfers: on stderr, and only when it is a
// terminal, so that a pipe or a log file gets the parseable result lines alone.
import cliProgress from 'cli-progress';
import type { Progress } from '../client/http.js';
import { formatBytes } from '../config/units.js';
import { atSignal } from '../project-upload/signal-cleanup.js';

/** Where bars are drawn: stderr, or (in tests) a stream standing for a terminal. */
export type BarStream = NodeJS.WritableStream & { readonly isTTY?: boolean; readonly columns?: number };

/** Bars that share the terminal, one per transfer; undefined when `stream` is not a terminal (or `quiet`). */
export function terminalBars(format: string, quiet = false, stream: BarStream = process.stderr): cliProgress.MultiBar | undefined {
  if (quiet || stream.isTTY !== true) return undefined;
  const multi = new cliProgress.MultiBar({ stream, format, hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic);
  // The bars hide the cursor and turn line wrapping off while they draw: a signal that ends
  // the process (Ctrl-C) turns them back on first, or the shell is left without a cursor.
  // (cli-progress's own gracefulExit would keep the process alive past the signal.)
  const forget = atSignal(() => multi.stop());
  multi.on('stop', forget);
  return multi;
}

/** The widest and narrowest a bar is drawn. */
const BAR_WIDTH = { max: 40, min: 10 };

/** The widest `got` formatBytes draws (below the next unit, one decimal). */
const WIDEST_BYTES = '1023.9 KiB';

/**
 * The width of a bar drawn on `stream` in a line ' {name} {bar} {percentage}% | {got} of
 * {size}' followed by `after` (a transfer's and an asset's format): what the terminal's width
 * leaves beside the rest of the line at its widest, so that the line does not run past its
 * edge, where it is cut.
 */
export function barSize(stream: BarStream, name: string, size: string, after = ''): number {
  const besides = ` ${name}  100% | ${WIDEST_BYTES} of ${size}${after}`;
  return Math.max(BAR_WIDTH.min, Math.min(BAR_WIDTH.max, (stream.columns ?? 80) - besides.length));
}

/** A label as drawn: a sha256 in it cut to its first 12 hex digits (as git shows commits), enough to tell transfers apart. */
function shownLabel(label: string): string {
  return label.replace(/\b([0-9a-f]{12})[0-9a-f]{52}\b/g, '$1…');
}

/**
 * A Progress drawing a bar per transfer (label, bytes so far, total when known); `stop` ends
 * them all. The label comes first and the bar takes what the terminal's width leaves, so a
 * line does not run past the terminal's edge, where it is cut.
 */
export function transferBars(stream: BarStream = process.stderr): { progress?: Progress; stop: () => void } {
  const multi = terminalBars(' {label} {bar} {percentage}% | {got} of {size}', false, stream);
  if (!multi) return { stop: () => undefined };
  return {
    progress: (fullLabel, total) => {
      const label = shownLabel(fullLabel);
      const shown = total === undefined ? '?' : formatBytes(total);
      const barsize = barSize(stream, label, shown);
      const bar = multi.create(total ?? 0, 0, { label, got: formatBytes(0), size: shown }, { barsize });
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
