// `fleetcache run` over SSH, hosts that serve several machines: kept by --reuse or --abend,
// shared by more workers than hosts, run after run. The sshd and project: ssh-project.ts.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineRecord } from '../../src/backends/backend.js';
import { discardKeptMachines } from '../../src/run/discard.js';
import { RunLog } from '../../src/run/report.js';
import { REUSE_FILE } from '../../src/run/reuse.js';
import { cliArgs } from '../helpers/processes.js';
import { run } from './project.js';
import { fileSshd, oneHostProject } from './ssh-project.js';

// one sshd for the file: no test stops or breaks it, and each has a project path (and records) of its own
const sshd = await fileSshd(t);

/** `run --discard` in-process: how many kept machines it discarded. */
function discardKept(base: string, dir: string): Promise<number> {
  return discardKeptMachines({ cwd: dir, dataRoot: join(base, 'cache'), log: new RunLog(() => undefined) });
}

/** Two tasks on one ssh host for a system of two workers: one worker waits for the host the other holds. */
async function twoWorkersOneHost(t: Test): Promise<{ base: string; dir: string }> {
  const { base, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo one\n', sshd);
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), 'summary: two\nexecute: echo two\n');
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: onehost\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems:\n      - debian-12:\n          workers: 2\nsuites:\n  tests/:\n    summary: one\n`,
  );
  return { base, dir };
}

t.test('--reuse, more workers than hosts: the CLI exits, the waiting worker allocates nothing; after run --discard the host serves the next run, its waiting worker never connecting', async (t) => {
  const { base, dir } = await twoWorkersOneHost(t);
  const kept = spawnSync(process.execPath, cliArgs(['run', '--data', join(base, 'cache'), '--reuse']), { cwd: dir, encoding: 'utf8', timeout: 90_000 });
  const keptOut = kept.stdout + kept.stderr;
  t.equal(kept.status, 0, `run --reuse exits by itself (an open SSH client kept it alive)${kept.error ? `: ${kept.error.message}` : ''}`);
  if (kept.status !== 0) t.comment(keptOut.slice(-2000));
  t.match(keptOut, /Keeping lab:debian-12 #\d at 127\.0\.0\.1:\d+\n/);
  t.match(keptOut, /Successful tasks: 2/);
  // which reason depends on when the waiting worker wakes: the jobs already all taken, or the host kept
  t.match(keptOut, /Not allocating lab:debian-12 #\d: (every host of backend lab serving debian-12 is kept|the jobs of lab:debian-12 were all taken by the other machines)\./);
  // in-process from here: what is checked is the runner's logic, the real binary's exit is the kept run's
  t.equal(await discardKept(base, dir), 1, 'its machine discarded');
  // the host has the kept run's tree at the project path (discarding an ssh machine leaves it)
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out.slice(-2000));
  t.equal(result.tally.ok, true, 'the next run on the same host: the project path is emptied before the project is sent');
  t.equal(result.tally.successful, 2);
  // a worker waiting for its shared host while the other runs every job
  t.equal(result.pulls.length, 1, 'one machine pulled the project');
  t.equal(out.match(/Sending project content to /g)?.length, 1, 'sent once');
  t.match(out, /Not allocating lab:debian-12 #\d: the jobs of lab:debian-12 were all taken by the other machines\./);
  t.equal(out.match(/Connecting to /g)?.length, 1, 'the host was connected to once, by the machine that ran the jobs');
});

/**
 * One host serving two systems, whose debian-12 job fails: a run of debian-12 with `option`
 * keeps its machine there, then a run of ubuntu-24.04 with it allocates nothing, the kept
 * machine's tree is left as it was, and the host is on record once. Gives the runs.
 */
async function keptHostOfTwoSystems(t: Test, option: { reuse: true } | { abend: true }, keeping: RegExp): Promise<(system: string) => Promise<string>> {
  const { base, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: test "$SPREAD_SYSTEM" != debian-12\n', sshd);
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: onehost\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12, ubuntu-24.04]\nsuites:\n  tests/:\n    summary: one\n`,
  );
  const runOf = async (system: string): Promise<string> => (await run(dir, [`lab:${system}`], { ...option, dataRoot: join(base, 'cache') })).out;
  t.match(await runOf('debian-12'), keeping);
  const keptTree = join(remote, 'kept-file');
  await writeFile(keptTree, 'of the kept machine');
  const other = await runOf('ubuntu-24.04');
  t.match(other, /Not allocating lab:ubuntu-24\.04: every host of backend lab serving ubuntu-24\.04 is kept\./);
  t.ok(existsSync(keptTree), "the kept machine's project tree is left as it was");
  const records = (JSON.parse(await readFile(join(dir, REUSE_FILE), 'utf8')) as { machines: MachineRecord[] }).machines;
  t.same(records.map((r) => r.system), ['debian-12'], 'the host is on record once, for the system that kept it');
  return runOf;
}

t.test('--reuse: a host whose machine another system kept serves no worker of this run, and stays on record once', async (t) => {
  const runOf = await keptHostOfTwoSystems(t, { reuse: true }, /Keeping lab:debian-12 at /);
  t.match(await runOf('debian-12'), /Reusing project data on lab:debian-12\.\.\./, 'and its system takes it back');
});

t.test('--abend without --reuse: a host whose machine an earlier --abend run kept for inspection serves no worker, and stays on record once', async (t) => {
  await keptHostOfTwoSystems(t, { abend: true }, /Keeping lab:debian-12 at .* \(-abend\)/);
});
