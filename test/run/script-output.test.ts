// The output of a failed script in the run's log: spread prints all of it; fleetcache keeps
// the last part of a long one and says, on its first line, how much came before.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { treeModule } from '../helpers/processes.js';
import { startScript } from '../helpers/script-child.js';
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

t.test('a script that rebooted holds the output of its runs once, as one run holds its own: the first run\'s is not kept a second and third time while the next one runs', async (t) => {
  const dir = t.testdir();
  // A runner (a child: its heap measured alone, after a full GC) runs on a real local machine,
  // once with one REBOOT (execWithReboots) and once without, a script whose last run prints more
  // than is kept (two-byte characters, so each kept character counts twice), then waits. The heap
  // grown by the time the last run waits is what the runner holds of the output.
  const lines = 600_000;
  const child = await startScript(t, `
    import { setFlagsFromString } from 'node:v8';
    import { runInNewContext } from 'node:vm';
    import { existsSync, writeFileSync } from 'node:fs';
    import { setTimeout as sleep } from 'node:timers/promises';
    import { createProvider } from '${treeModule('src/backends/registry')}';
    import { execWithReboots } from '${treeModule('src/run/reboot')}';
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc');
    const heap = () => (gc(), gc(), process.memoryUsage().heapUsed);
    const dir = ${JSON.stringify(dir)};
    const p = await createProvider('local', 'local', {}, { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: dir + '/cache' });
    /** Heap grown from before \`start\` (on a machine of its own) until the script printed all of it (file \`name\`), then lets it end. */
    const grown = async (name, start) => {
      const m = await p.allocate({ name: 's' });
      await m.exec('true', { trace: false });
      const printed = dir + '/' + name;
      const before = heap();
      const ran = start(m, 'if [ "$SPREAD_REBOOT" = 0 ]; then yes ж | head -n ${lines}; REBOOT; fi\\nyes ж | head -n ${lines}\\ntouch ' + printed + '\\nwhile [ ! -e ' + printed + '.go ]; do sleep 0.05; done\\n');
      for (let i = 0; i < 600 && !existsSync(printed); i++) await sleep(50);
      const held = heap() - before;
      writeFileSync(printed + '.go', '');
      const res = await ran;
      await m.discard();
      return { held, exitCode: res.exitCode };
    };
    const once = await grown('once', (m, script) => m.exec(script, { trace: false, env: [['SPREAD_REBOOT', '1']] }));
    const rebooted = await grown('rebooted', (m, script) => execWithReboots(m, script, { trace: false, describe: 'm', log: () => {} }));
    writeFileSync(dir + '/held.json', JSON.stringify({ once, rebooted }));
    process.stdout.write('measured\\n');
  `);
  t.equal(await child.exited, 0, `the runner measured (${child.stderr().trim()})`);
  const { once, rebooted } = JSON.parse(readFileSync(join(dir, 'held.json'), 'utf8')) as Record<'once' | 'rebooted', { held: number; exitCode: number }>;
  t.equal(rebooted.exitCode, 0, 'the rebooted script ran again and passed');
  t.ok(once.held > 0, `one run holds its output (${once.held} bytes)`);
  t.ok(rebooted.held < 1.5 * once.held, `a script that rebooted holds ${rebooted.held} bytes as its last run waits: no more than one run (${once.held})`);
});
