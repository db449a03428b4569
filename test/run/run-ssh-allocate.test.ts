// `fleetcache run` over SSH, adhoc allocations that come late, keep failing, never answer or
// give a held address, and connections that drop mid-script. The sshd and project: ssh-project.ts.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { RunLog } from '../../src/run/report.js';
import { discardKeptMachines } from '../../src/run/discard.js';
import { freePort } from '../../src/http/free-port.js';
import { runProject } from '../../src/run/runner.js';
import { cliArgs, descendantsOf } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { run } from './project.js';
import { fileSshd, oneHostProject } from './ssh-project.js';

// one sshd for the file: no test stops it (the dropped connection's, last, kills only the
// processes serving its run's connection), and each has a project path of its own
const shared = await fileSshd(t);

t.test('an adhoc machine allocated after the others ran every job, whose discard fails, is discarded once', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo\n', shared);
  const ran = join(base, 'ran');
  const discarded = join(base, 'discarded');
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: echo one >> ${ran}\n`);
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), `summary: two\nexecute: echo two >> ${ran}\n`);
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: twice', `path: ${remote}`, 'backends:', '  cloud:', '    type: adhoc', `    key: ${sshd.keyPath}`,
      // the first allocate answers at once; the second once the first machine ran both jobs and
      // its discard began (it is held until its jobs' leftovers are killed, after their end),
      // with the host's name: the address the first one's failed discard left serves no other
      // machine of the run, and a name is not looked up
      '    allocate: |',
      `      if mkdir ${join(base, 'first-allocate')} 2>/dev/null; then ADDRESS 127.0.0.1:${sshd.port}; exit; fi`,
      `      until [ "$(cat ${ran} 2>/dev/null | wc -l)" -ge 2 ] && [ -s ${discarded} ]; do sleep 0.1; done`,
      `      ADDRESS localhost:${sshd.port}`,
      '    discard: |', `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`, '      exit 1',
      '    systems:', '      - debian-12:', '          workers: 2',
      'suites:', '  tests/:', '    summary: two tasks', '',
    ].join('\n'),
  );
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  t.equal(result.tally.successful, 2, 'one machine ran both jobs');
  t.match(out, /Discarding cloud:debian-12 #\d: the jobs of cloud:debian-12 were all taken while it was allocated\./);
  // in this order: the second allocate gave its address once the first machine's discard wrote its own
  t.same((await readFile(discarded, 'utf8')).trim().split('\n'), [`127.0.0.1:${sshd.port}`, `localhost:${sshd.port}`], 'each machine\'s discard script ran once, with its address');
  t.equal(out.match(/Error discarding cloud:debian-12 #\d: /g)?.length, 2, 'each failed discard said once');
  t.match(out, /2 machine\(s\) not discarded; discard them with: /, 'both left on record');
});

t.test('a worker whose allocate keeps failing stops retrying once the other machines took every job of its system: the run ends with them', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo one\n', shared);
  const held = join(base, 'cloud-machine');
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), 'summary: two\nexecute: echo two\n');
  // a cloud with room for one machine: every allocate after the first is refused (spread's ERROR, retried)
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: full', `path: ${remote}`, 'fleetcache:', '  dispatchDelay: 50ms', 'backends:', '  cloud:', '    type: adhoc', `    key: ${sshd.keyPath}`,
      '    retry-delay: 100ms', '    allocate-timeout: 60s',
      '    allocate: |', `      mkdir ${held} 2>/dev/null || ERROR no capacity`, `      ADDRESS 127.0.0.1:${sshd.port}`,
      '    systems:', '      - debian-12:', '          workers: 2',
      'suites:', '  tests/:', '    summary: two tasks', '',
    ].join('\n'),
  );
  const started = Date.now();
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  const took = Date.now() - started;
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'one machine ran both jobs');
  t.equal(result.tally.successful, 2);
  t.ok(took < 30_000, `the run ended with its jobs, not at the allocate-timeout of the worker still retrying (${took} ms)`);
  t.match(out, /Not allocating cloud:debian-12 #\d: the jobs of cloud:debian-12 were all taken by the other machines\./);
  t.notMatch(out, /Error preparing/, 'the refused allocations are no failure of the run');
});

t.test('an adhoc machine whose SSH never answers and whose discard fails: the run says so, and the machine stays on record for run --discard', async (t) => {
  const base = t.testdir();
  const dir = join(base, 'project');
  const discarded = join(base, 'discarded');
  const cloudUp = join(base, 'cloud-up');
  // a port nothing listens on: the machine died as it booted
  const port = await freePort();
  await mkdir(join(dir, 'tests', 'one'), { recursive: true });
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), 'summary: one\nexecute: echo one\n');
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: deadboot', `path: ${join(base, 'remote')}`, 'backends:', '  cloud:', '    type: adhoc', '    allocate-timeout: 1s',
      '    allocate: |', `      ADDRESS 127.0.0.1:${port}`,
      // the cloud's API fails the run's discard, answers the later run --discard
      '    discard: |', `      [ -e ${cloudUp} ] || { echo "cloud API unavailable"; exit 1; }`, `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`,
      '    systems:', '      - debian-12',
      'suites:', '  tests/:', '    summary: one task', '',
    ].join('\n'),
  );
  // a runner of its own: `run --discard` takes the machines of runners that are gone
  const cli = spawnSync(process.execPath, cliArgs(['run', '--data', join(base, 'cache')]), { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  const out = cli.stdout + cli.stderr;
  t.equal(cli.status, 1, 'unsuccessful run');
  t.match(out, /Aborted tasks: 1\n/);
  t.match(out, new RegExp(`Error preparing cloud:debian-12: .*127\\.0\\.0\\.1:${port}.*cannot discard cloud:debian-12 at 127\\.0\\.0\\.1:${port}: .*cloud API unavailable`), 'the failed discard is said');
  t.match(out, /1 machine\(s\) not discarded; discard them with: /, 'the machine is on record');
  await writeFile(cloudUp, '');
  t.equal(await discardKeptMachines({ cwd: dir, dataRoot: join(base, 'cache'), log: new RunLog(() => undefined) }), 1, 'run --discard finds it');
  t.equal(await readFile(discarded, 'utf8'), `127.0.0.1:${port}\n`, 'and its discard script ran with its address');
});

t.test('an adhoc allocate script that gives the address of a machine the run holds: that allocation fails, naming it, and what it allocated is discarded', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo\n', shared);
  const busy = join(base, 'busy');
  const discarded = join(base, 'discarded');
  // each job holds the host alone for a while: a second machine at the same address breaks it
  const task = `summary: holds the host\nexecute: |\n  mkdir ${busy}\n  sleep 2\n  rmdir ${busy}\n`;
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), task);
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), task);
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: fixed', `path: ${remote}`, 'backends:', '  cloud:', '    type: adhoc', `    key: ${sshd.keyPath}`,
      `    allocate: ADDRESS 127.0.0.1:${sshd.port}`,
      '    discard: |', `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`,
      '    systems:', '      - debian-12:', '          workers: 2',
      'suites:', '  tests/:', '    summary: two tasks', '',
    ].join('\n'),
  );
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.match(out, new RegExp(`Error preparing cloud:debian-12 #\\d: cannot allocate cloud:debian-12: the allocate script of backend cloud gave address 127\\.0\\.0\\.1:${sshd.port}, which machine cloud:debian-12 of this run holds`));
  t.equal(result.tally.successful, 2, 'the machine the run holds ran both jobs, one at a time');
  t.same((await readFile(discarded, 'utf8')).trim().split('\n'), [`127.0.0.1:${sshd.port}`], 'the machine discarded once, when the run was done with it: not for the refused allocation, while its job ran');
});

t.test('a connection that drops mid-script fails it with a reason, and the machine takes no more jobs', async (t) => {
  const { base, sshd, dir } = await oneHostProject(t, 'summary: one\nexecute: |\n  echo started\n  sleep 30\n', shared);
  await mkdir(join(dir, 'tests', 'two'), { recursive: true });
  await writeFile(join(dir, 'tests', 'two', 'task.yaml'), 'summary: two\nexecute: echo two\n');
  let out = '';
  const running = runProject({ cwd: dir, filters: [], order: true, agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s), 2), dataRoot: join(base, 'cache') });
  // the script's own line, not its trace (`+ echo started`), which comes first
  await eventually('the first script runs', () => /^started$/m.test(out), 60_000);
  // the sshd processes serving the run's connection (not the listener): as a network cut
  for (const pid of descendantsOf(sshd.pid)) process.kill(pid, 'SIGKILL');
  const result = await running;
  t.match(out, /Error executing lab:debian-12:tests\/one \(lab:debian-12\) :\n-----\n(.*\n)*?started\n(.*\n)*?error: remote command exited without exit status or exit signal/, 'the output so far, then why');
  t.notMatch(out, /Executing lab:debian-12:tests\/two/, 'the broken machine took no other job');
  t.same(result.tally.failed, ['lab:debian-12:tests/one']);
  t.same(result.tally.aborted, ['lab:debian-12:tests/two']);
});
