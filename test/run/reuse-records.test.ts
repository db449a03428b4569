// Kept machines (-reuse, spread-spec §14) that cannot be taken back or discarded: their
// records stay on file until a discard succeeds, and the run or the discard goes on.
import t, { type Test } from 'tap';
import { chmod, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive, rememberProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { RunLog } from '../../src/run/report.js';
import { discardKeptMachines } from '../../src/run/discard.js';
import { LOCAL, project, run, spreadYaml } from './project.js';
import { endedWithin, runHere } from './run-here.js';

const reuseFile = (dir: string) => join(dir, '.fleetcache-reuse.json');
const addresses = async (file: string) => (JSON.parse(await readFile(file, 'utf8')) as { machines: Array<{ address: string }> }).machines.map((m) => m.address);

t.test('-reuse: a kept machine that cannot be taken back stays on record, and none is allocated in its place (as in spread)', async (t) => {
  const dir = await project(t, spreadYaml('gone', LOCAL));
  // a local machine whose directory cannot be made: its reuse fails
  const gone = { backend: 'local', system: 'alpha-1', address: '/dev/null/gone', data: '/dev/null/gone' };
  await writeFile(reuseFile(dir), JSON.stringify({ machines: [gone] }));
  const { result, out } = await run(dir, [], { reuse: true });
  t.match(out, /Cannot reuse local:alpha-1 at \/dev\/null\/gone: /);
  t.match(out, /Not allocating local:alpha-1: -reuse, and the kept machines of local:alpha-1 are taken or cannot be reused\./);
  t.notMatch(out, /Allocating local:alpha-1/);
  t.equal(result.tally.successful, 0);
  t.same(result.tally.aborted, ['local:alpha-1:s/t'], 'the job had no machine');
  t.same(await addresses(reuseFile(dir)), ['/dev/null/gone'], 'the record of the machine not taken back is kept for a later discard');
});

t.test('-reuse with one kept machine and two workers: the kept one runs every job, no second machine is allocated', async (t) => {
  const two = ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          workers: 2'];
  // long enough for the second worker to start (after the 250 ms dispatch delay) with jobs left
  const tasks = Object.fromEntries(['a', 'b', 'c'].map((n) => [`s/${n}`, `summary: ${n}\nexecute: sleep 0.6\n`]));
  const dir = await project(t, spreadYaml('twoworkers', two), tasks);
  const first = await run(dir, ['s/a'], { reuse: true });
  t.equal(first.result.tally.successful, 1);
  const kept = await addresses(reuseFile(dir));
  t.equal(kept.length, 1, 'one worker for one job: one machine kept');
  const { result, out } = await run(dir, [], { reuse: true });
  t.equal(result.tally.successful, 3, 'every job ran');
  t.equal((out.match(/Reusing local:alpha-1 #\d at /g) ?? []).length, 1, 'the kept machine was taken back');
  t.notMatch(out, /Allocating /, 'no machine allocated');
  t.same(await addresses(reuseFile(dir)), kept, 'the same machine is kept');
});

t.test('-reuse: a kept machine whose start fails stays kept, and its worker goes on with the next kept machine (as in spread)', async (t) => {
  const two = ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          workers: 2'];
  // long enough for the second worker to start with a job left: two machines kept
  const tasks = Object.fromEntries(['a', 'b'].map((n) => [`s/${n}`, `summary: ${n}\nexecute: sleep 0.6\n`]));
  const dir = await project(t, spreadYaml('nextkept', two), tasks);
  t.equal((await run(dir, [], { reuse: true })).result.tally.successful, 2);
  const kept = await addresses(reuseFile(dir));
  t.equal(kept.length, 2, 'two machines kept');
  // the machine taken back first cannot take the agent: the runner's directory beside its project path is a file
  const runnerDir = join(kept[0]!, 'home', '.fleetcache');
  await rm(runnerDir, { recursive: true, force: true });
  await writeFile(runnerDir, 'not a directory');
  const { result, out } = await run(dir, [], { reuse: true, workers: 1 });
  t.ok(out.includes(`Cannot reuse local:alpha-1 at ${kept[0]}: `), 'the machine that cannot start is said');
  t.ok(out.includes(`Reusing local:alpha-1 at ${kept[1]}...`), 'the next kept machine taken back');
  t.equal(result.tally.successful, 2, 'it ran every job');
  t.notMatch(out, /Allocating /, 'no machine allocated');
  t.same((await addresses(reuseFile(dir))).sort(), [...kept].sort(), 'both still kept');
});

t.test('run --discard reaches no machine, tries every record and keeps those it could not discard', async (t) => {
  const discarded = join(t.testdirName, 'discarded');
  const dir = await project(
    t,
    spreadYaml('discarding', [
      'backends:',
      '  cloud:',
      '    type: adhoc',
      '    allocate: FATAL not used',
      '    discard: |',
      '      case "$SPREAD_SYSTEM_ADDRESS" in *:2|*:3) echo "cloud refused"; exit 1;; esac',
      `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`,
      '    systems: [ubuntu-1]',
    ]),
  );
  // nothing listens on any of these addresses: a discard that connected would fail them all
  const machine = (port: number) => ({ backend: 'cloud', system: 'ubuntu-1', address: `127.0.0.1:${port}`, username: 'root', password: 'pw' });
  await writeFile(reuseFile(dir), JSON.stringify({ machines: [machine(1), machine(2)] }));
  // the record of a runner that is gone (no process has this PID)
  const orphan = join(dir, 'cache', 'running', '999999999.json');
  await mkdir(join(dir, 'cache', 'running'), { recursive: true });
  await writeFile(orphan, JSON.stringify({ machines: [machine(3), machine(4)] }));

  let out = '';
  await t.rejects(discardKeptMachines({ cwd: dir, dataRoot: join(dir, 'cache'), log: new RunLog((s) => (out += s)) }), {
    code: 'FC_ERR_UNAVAILABLE',
    message: /^2 of 4 machine\(s\) could not be discarded/,
  });
  t.same((await readFile(discarded, 'utf8')).trim().split('\n'), ['127.0.0.1:1', '127.0.0.1:4'], 'the discard script ran for the others, with their address');
  t.match(out, /Cannot discard cloud:ubuntu-1 at 127\.0\.0\.1:2: .*cloud refused/);
  t.same(await addresses(reuseFile(dir)), ['127.0.0.1:2'], 'the kept machine not discarded stays in the reuse file');
  t.same(await addresses(orphan), ['127.0.0.1:3'], "the dead runner's machine not discarded stays in its file");
});

/** A project whose one machine an earlier `run --reuse` kept; returns the kept machine's address. */
async function keptMachine(t: Test): Promise<{ dir: string; kept: string }> {
  const dir = await project(t, spreadYaml('keptstart', LOCAL));
  const first = await run(dir, [], { reuse: true });
  t.equal(first.result.tally.successful, 1);
  const [kept] = await addresses(reuseFile(dir));
  return { dir, kept: kept! };
}

/** A `node` for the machine's scripts (first on their PATH) that runs `fakeNode` instead: the agent's project pull is what it runs. */
async function fakeNodeBin(t: Test, fakeNode: string): Promise<string> {
  // a fresh test directory: no file of an earlier run of this test left in it
  const bin = join(t.testdir(), 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'node'), `#!/bin/sh\n${fakeNode}\n`);
  await chmod(join(bin, 'node'), 0o755);
  return bin;
}

// Both leave the machine kept as it was (what they prove): the second takes back the machine the first did not lose.
t.test('a kept machine whose project is sent again', async (t) => {
  const { dir, kept } = await keptMachine(t);

  t.test('-reuse: a kept machine whose project cannot be sent again stays kept (as in spread), not discarded', async (t) => {
    const bin = await fakeNodeBin(t, 'echo "no node on this machine" >&2; exit 1');
    const res = runHere(t, dir, { reuse: true, resend: true }, bin);
    const { result } = await res.ended;
    t.same(result?.tally.aborted, ['local:alpha-1:s/t'], 'the job had no machine: aborted');
    t.ok(res.out().includes(`Cannot reuse local:alpha-1 at ${kept}: agent pull on local:alpha-1 failed: no node on this machine`), 'said, and the next kept machine looked for');
    t.match(res.out(), /Not allocating local:alpha-1: -reuse, and the kept machines of local:alpha-1 are taken or cannot be reused\./);
    t.notMatch(res.out(), /Discarding local:alpha-1/);
    t.same(await addresses(reuseFile(dir)), [kept], 'still in the reuse file');
    t.ok((await stat(kept)).isDirectory(), 'the kept machine is still there');
    t.same(await readdir(join(dir, 'cache', 'running')).catch(() => []), [], 'on record in the reuse file only');
  });

  t.test('-reuse: SIGINT while a kept machine is sent the project keeps it on record, as every machine of an interrupted -reuse run', async (t) => {
    const pidFile = join(t.testdirName, 'pull.pid');
    const bin = await fakeNodeBin(t, `echo $$ > ${pidFile}; exec sleep 300`);
    const res = runHere(t, dir, { reuse: true, resend: true }, bin);
    await eventually('the pull started', async () => /^\d+\n$/.test(await readFile(pidFile, 'utf8').catch(() => '')), 60_000);
    const pid = Number(await readFile(pidFile, 'utf8'));
    const pull = rememberProcess(pid);
    t.teardown(() => pull.kill('SIGKILL'));
    res.interrupt();
    const ended = await endedWithin(res.ended, 30_000);
    t.equal(ended !== 'waiting' && ended.result?.interrupted, 'SIGINT', 'an interrupted run (unsuccessful)');
    t.match(res.out(), /Received SIGINT/);
    t.notMatch(res.out(), /Error preparing/, 'no error line for a start the interrupt cut short');
    t.notMatch(res.out(), /Discarding local:alpha-1/);
    t.match(res.out(), /Keeping local:alpha-1 at /);
    t.same(await addresses(reuseFile(dir)), [kept], 'still in the reuse file');
    t.ok((await stat(kept)).isDirectory(), 'the kept machine is still there');
    await eventually('the pull was killed', () => !isAlive(pid));
  });
});
