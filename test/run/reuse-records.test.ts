// Kept machines (-reuse, spread-spec §14) that cannot be taken back or discarded: their
// records stay on file until a discard succeeds, and the run or the discard goes on.
import t from 'tap';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RunLog } from '../../src/run/report.js';
import { discardKeptMachines } from '../../src/run/discard.js';
import { LOCAL, project, run, spreadYaml } from './project.js';

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
