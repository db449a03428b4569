// The output of a failed script in the run's log: spread prints all of it; fleetcache keeps
// the last part of a long one and says, on its first line, how much came before.
import t from 'tap';
import { LOCAL, project, run, spreadYaml } from './project.js';

t.test("a failed script's long output starts with a line saying how much of it was dropped", async (t) => {
  const printed = 1_300_000;
  const dir = await project(t, spreadYaml('longout', LOCAL), {
    's/long': `summary: long\nexecute: |\n  head -c ${printed} /dev/zero | tr '\\0' a\n  echo\n  echo LAST-LINE\n  exit 1\n`,
    's/short': 'summary: short\nexecute: |\n  echo only a little\n  exit 1\n',
  });
  const { result, out } = await run(dir);
  t.same([...result.tally.failed].sort(), ['local:alpha-1:s/long', 'local:alpha-1:s/short']);

  const long = /Error executing local:alpha-1:s\/long \(local:alpha-1\) :\n-----\n\(\.\.\. (\d+) characters of output above dropped: only the last (\d+) are kept \.\.\.\)\n(a+)[^a][^]*?\nLAST-LINE\n[^]*?\n-----\n/.exec(out);
  t.ok(long, 'the block opens with the line saying what was dropped');
  if (!long) return;
  const [dropped, kept, tail] = [Number(long[1]), Number(long[2]), long[3]!];
  t.ok(kept < printed, `fewer characters kept (${kept}) than the script printed (${printed})`);
  t.ok(tail.length < kept, 'the kept part starts within the line of a');
  // what was dropped is what the script printed before the kept part: its a, and a few trace lines
  const droppedA = printed - tail.length;
  t.ok(dropped >= droppedA && dropped < droppedA + 200, `dropped ${dropped}: the ${droppedA} a above the kept part, and the trace before them`);

  t.match(out, /Error executing local:alpha-1:s\/short \(local:alpha-1\) :\n-----\n\+ echo only a little\nonly a little\n\+ exit 1\n-----\n/, 'a short output is shown whole, with no such line');
  t.notMatch(out.replace(long[0], ''), /characters of output above dropped/, 'only the long one says so');
});

t.test("a long output across a reboot says once, on its first line, how much of all the runs' output was dropped", async (t) => {
  const printed = 1_300_000;
  const dir = await project(t, spreadYaml('longreboot', LOCAL), {
    's/long': `summary: long\nexecute: |\n  if [ "$SPREAD_REBOOT" = 0 ]; then head -c ${printed} /dev/zero | tr '\\0' a; echo; REBOOT; fi\n  head -c ${printed} /dev/zero | tr '\\0' b\n  echo\n  echo LAST-LINE\n  exit 1\n`,
  });
  const { result, out } = await run(dir);
  t.same(result.tally.failed, ['local:alpha-1:s/long']);
  t.match(out, /Rebooting on local:alpha-1 \(local:alpha-1:s\/long\) as requested/);
  const block = /Error executing local:alpha-1:s\/long \(local:alpha-1\) :\n-----\n([^]*?)\n-----\n/.exec(out)?.[1] ?? '';
  t.equal(block.match(/characters of output above dropped/g)?.length, 1, 'one line says what was dropped');
  const long = /^\(\.\.\. (\d+) characters of output above dropped: only the last (\d+) are kept \.\.\.\)\n(b+)[^b][^]*?\nLAST-LINE\n/.exec(block);
  t.ok(long, 'it opens the block, above what the last run printed');
  if (!long) return;
  const [dropped, kept, tail] = [Number(long[1]), Number(long[2]), long[3]!];
  t.ok(block.length - block.indexOf('\n') - 1 <= kept, `the block holds no more than the ${kept} characters kept`);
  // dropped: the first run's a (and its trace, its REBOOT line), and the b above the kept part
  const droppedAB = printed + printed - tail.length;
  t.ok(dropped >= droppedAB && dropped < droppedAB + 400, `dropped ${dropped}: the ${printed} a of the first run and the ${printed - tail.length} b above the kept part, and the traces`);
});
