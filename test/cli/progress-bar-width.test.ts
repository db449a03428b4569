// A push's progress bar on an 80-column terminal: the label (what is uploaded) used to come
// last, after a 40-column bar, and the terminal cut it after "upload". The label now comes
// first and the bar takes what the width leaves. Drawn into a stream that stands for the
// terminal (isTTY, 80 columns): cli-progress draws what it would draw on stderr. The same for
// `assets fetch`, whose file name came last and was cut off whole.
import t from 'tap';
import { PassThrough } from 'node:stream';
import { progressReporter } from '../../src/cli/assets.js';
import { transferBars } from '../../src/cli/progress.js';

/** The lines drawn, escape sequences taken out. */
function drawnLines(raw: string): string[] {
  // eslint-disable-next-line no-control-regex
  return raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '\n').split(/[\r\n]+/).filter((l) => l.trim() !== '');
}

const HEX = 'ab12'.repeat(16);

/** A stream standing for an 80-column terminal, and what was drawn on it. */
function terminal80(): { terminal: PassThrough & { isTTY: true; columns: number }; drawn: () => string[] } {
  const terminal = Object.assign(new PassThrough(), { isTTY: true as const, columns: 80 });
  let raw = '';
  terminal.on('data', (c: Buffer) => (raw += c.toString('utf8')));
  return { terminal, drawn: () => drawnLines(raw) };
}

for (const [what, label, shown] of [
  ['a delta, named by its sha256', `upload ${HEX}`, `upload ${HEX.slice(0, 12)}…`],
  ['a base, named by its id', 'upload 20261205T204319Z-0123456789ab', 'upload 20261205T204319Z-0123456789ab'],
] as const) {
  t.test(`uploading ${what}, the bar's line fits an 80-column terminal with its label whole`, async (t) => {
    const { terminal, drawn } = terminal80();
    const bars = transferBars(terminal);
    t.ok(bars.progress, 'bars drawn on a terminal');
    const total = 300 * 1024 * 1024;
    bars.progress!(label, total)(total / 2);
    bars.stop();
    const lines = drawn();
    const last = lines.at(-1) ?? '';
    t.match(last, / 50% \| 150\.0 MiB of 300\.0 MiB$/, 'the last line drawn is the bar at half');
    t.ok(last.startsWith(` ${shown} `), `the label first: ${last}`);
    for (const line of lines) t.ok(line.length <= terminal.columns, `within ${terminal.columns} columns (${line.length}): ${line}`);
  });
}

t.test("assets fetch: a file's bar fits an 80-column terminal with the file's name whole, first", async (t) => {
  const { terminal, drawn } = terminal80();
  const reporter = progressReporter(false, terminal);
  t.ok(reporter.onProgress, 'bars drawn on a terminal');
  const filename = 'gcc-13.2.0-linux64.tar.xz';
  const total = 300 * 1024 * 1024;
  reporter.onProgress!({ filename, received: 0, total, source: 'download', done: false });
  reporter.onProgress!({ filename, received: total / 2, total, source: 'download', done: false });
  reporter.stop();
  const lines = drawn();
  const last = lines.at(-1) ?? '';
  t.match(last, / 50% \| 150\.0 MiB of 300\.0 MiB \(download\)$/, 'the last line drawn is the bar at half');
  t.ok(last.startsWith(` ${filename} `), `the file's name first: ${last}`);
  for (const line of lines) t.ok(line.length <= terminal.columns, `within ${terminal.columns} columns (${line.length}): ${line}`);
});
