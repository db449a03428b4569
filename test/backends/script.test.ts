// OutputBuffer, what a script's output is kept as: the running-late warning's view of it, as spread's client words it, and its cut to the last part.
import t from 'tap';
import { lateWarning, OutputBuffer } from '../../src/backends/script.js';

const lines = (from: number, to: number): string => Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}\n`).join('');

/** What each of a run of warnings says, each after its chunk of output ('' for none). */
function warnings(chunks: readonly string[]): string[] {
  const out = new OutputBuffer();
  return chunks.map((chunk) => {
    if (chunk) out.push(chunk);
    return lateWarning('m (c)', out.warnTail());
  });
}

const late = (shown: string): string => `WARNING: m (c) running late. Current output:\n-----\n${shown}\n-----`;

t.test("a warning shows what is new since the last one, as spread's Since and tail do", async (t) => {
  t.same(warnings(['', lines(1, 3), '', lines(4, 5), 'part', 'ial\n']), [
    'WARNING: m (c) running late. Output still empty.',
    late('line 1\nline 2\nline 3'),
    'WARNING: m (c) running late. Output unchanged.',
    late('(...)\nline 4\nline 5'),
    late('(...)\npart'),
    late('(...)\npartial'),
  ], 'the first: all of it, trimmed; a later one: from the line break before the new output, under (...)');
  t.same(warnings(['\n \n', '\n']), ['WARNING: m (c) running late. Output still empty.', 'WARNING: m (c) running late. Output unchanged.'], 'blank output is no output');
});

t.test('of 14 lines or more, the last 10 under a count of the others (spread counts one short)', async (t) => {
  t.same(warnings([lines(1, 13)]), [late(lines(1, 13).trim())], 'up to 13 lines whole');
  t.same(warnings([lines(1, 40)]), [late(`(... 29 lines above ...)\n${lines(31, 40).trim()}`)]);
});

t.test('output cut to its last part never starts with half of a character past U+FFFF', async (t) => {
  // the cap, as the dropped-output line names it
  const probe = new OutputBuffer();
  probe.push('a'.repeat(4 << 20));
  const cap = Number(/only the last (\d+) are kept/.exec(probe.text())?.[1]);
  t.ok(cap > 0, `the cap is named: ${cap}`);
  // an odd count of units past the cap: a plain cut would keep the low half of the first emoji it keeps
  const out = new OutputBuffer();
  const total = `${'\u{1F600}'.repeat(cap / 2)}end`;
  out.push(total);
  const [first, ...rest] = out.text().split('\n');
  const kept = rest.join('\n');
  t.equal(Buffer.from(kept, 'utf8').toString('utf8'), kept, 'what is kept is whole characters (a half would print as U+FFFD)');
  t.ok(kept.startsWith('\u{1F600}') && kept.endsWith('end'), 'from a whole emoji to the end');
  t.equal(Number(/^\(\.\.\. (\d+) characters of output above dropped/.exec(first ?? '')?.[1]) + kept.length, total.length, 'the count dropped and the part kept make the whole');
});
