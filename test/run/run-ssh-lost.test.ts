// `fleetcache run` over SSH, a --reuse machine whose connection was lost mid-script (through a
// HalfOpenRelay: the machine never sees it drop): what the lost script left is killed before
// the machine is used again. The sshd and project: ssh-project.ts.
import t, { type Test } from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineRecord } from '../../src/backends/backend.js';
import { REUSE_FILE } from '../../src/run/reuse.js';
import type { RunResult } from '../../src/run/runner.js';
import { isAlive } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { leavingScript, leftPids } from '../ssh/leaving-script.js';
import { run } from './project.js';
import { halfOpenRelay, type HalfOpenRelay } from '../helpers/half-open-relay.js';
import { oneHostProject } from './ssh-project.js';

/**
 * A --reuse run of one job on a host reached through a HalfOpenRelay, whose execute leaves
 * sleeps and loses its connection (relay.cut, then `afterCut`): the machine never sees it drop.
 */
async function lostMidRunKept(t: Test, afterCut: (relay: HalfOpenRelay) => void = () => undefined): Promise<{ base: string; dir: string; relay: HalfOpenRelay; left: number[]; result: RunResult; out: string }> {
  const { base, dir, sshd, remote } = await oneHostProject(t, 'summary: one\n');
  const relay = await halfOpenRelay(t, sshd.port);
  const file = join(base, 'execute.pids');
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: |\n  ${leavingScript(file)}\n  sleep 300\n`);
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: onehost\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${relay.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12]\nsuites:\n  tests/:\n    summary: one\n`,
  );
  const kept = run(dir, [], { reuse: true, dataRoot: join(base, 'cache') });
  await eventually('the execute started both sleeps', async () => (await readFile(file, 'utf8').catch(() => '')).trim().split('\n').length === 2, 60_000);
  const left = leftPids(t, file);
  relay.cut(); // the machine never sees the connection drop: the execute and its sleeps run on
  afterCut(relay);
  return { base, dir, relay, left, ...(await kept) };
}

t.test('--reuse: a machine kept after its connection was lost has the lost script\'s processes killed first, what left its process group too', async (t) => {
  const { left, result, out } = await lostMidRunKept(t);
  t.notOk(result.tally.ok, 'the job whose connection was lost failed');
  t.match(out, /Keeping lab:debian-12 at 127\.0\.0\.1:\d+\n/, 'the machine is kept');
  t.notMatch(out, /may still run the processes of a script whose connection was lost/);
  // a SIGKILLed process is gone once the kernel has run its exit: awaited, not assumed at once
  await eventually('the sleeps the lost execute left are killed before the next run can take the machine back', () => !left.some(isAlive), 5000);
});

t.test('--reuse: a machine kept while the lost script\'s processes could not be stopped has them killed by the next --reuse run before its jobs', async (t) => {
  // the machine does not answer the keep's sweep
  const { base, dir, relay, left, ...first } = await lostMidRunKept(t, (r) => r.refuse());
  t.match(first.out, /Keeping lab:debian-12 at 127\.0\.0\.1:\d+\n/, 'the machine is kept');
  t.match(first.out, /WARNING: .* may still run the processes of a script whose connection was lost/);
  t.ok(left.every(isAlive), 'what the lost execute left runs on');
  const [record] = (JSON.parse(await readFile(join(dir, REUSE_FILE), 'utf8')) as { machines: MachineRecord[] }).machines;
  t.equal(record?.lostScripts?.length, 1, 'the lost execute is on record');
  t.equal(record?.lostJobs?.length, 1, 'and so is its job');
  relay.accept();
  // the next run's job tells which of them it saw running (a killed one not reaped yet is a zombie: not running)
  const seen = join(base, 'seen');
  const check = `for p in ${left.join(' ')}; do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) && [ "$s" != Z ] && echo "running $p" >> ${seen}; done; touch ${seen}`;
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: |\n  ${check}\n`);
  const second = await run(dir, [], { reuse: true, dataRoot: join(base, 'cache') });
  if (!second.result.tally.ok) t.comment(second.out);
  t.match(second.out, /Reusing lab:debian-12 at 127\.0\.0\.1:\d+\.\.\./, 'the kept machine is taken back');
  t.equal(second.result.tally.successful, 1, 'its job ran');
  t.equal(await readFile(seen, 'utf8'), '', 'none of what the lost execute left was running when the job ran');
  await eventually('what the lost execute left is killed', () => !left.some(isAlive), 5000);
});
