// Without a fleet configuration the runner's own origin and cache listen on 127.0.0.1: a run
// whose machines are elsewhere is refused before they are handed URLs they cannot reach.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cliArgs, stopWithTest } from '../helpers/processes.js';
import { LOCAL, project, run, spreadYaml } from './project.js';

const refused = /backend farm \(ssh\) has a machine at 10\.0\.0\.1, but without a fleet configuration the runner's own origin and cache listen on 127\.0\.0\.1 only.*`fleetcache:` key in spread\.yaml or --fleet FILE/;

t.test('ssh hosts that are not loopback: refused before anything is packed or allocated', async (t) => {
  const dir = await project(t, spreadYaml('far', ['backends:', '  farm:', '    type: ssh', '    hosts:', '      - address: 10.0.0.1', '    systems: [ubuntu-1]']));
  await t.rejects(run(dir), { code: 'FC_ERR_CONFIG', message: refused });
  await t.rejects(readdir(join(dir, 'cache')), { code: 'ENOENT' }, 'no embedded server started, nothing packed');
});

t.test('adhoc: an allocated address that is not loopback is released before any connection', async (t) => {
  const discarded = join(t.testdirName, 'discarded');
  const dir = await project(
    t,
    spreadYaml('far-adhoc', ['backends:', '  cloud:', '    type: adhoc', '    allocate: ADDRESS 10.0.0.2:22', `    discard: echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`, '    systems: [ubuntu-1]']),
  );
  const { result, out } = await run(dir);
  t.equal(result.tally.ok, false);
  t.match(out, /backend cloud \(adhoc\) has a machine at 10\.0\.0\.2:22, but without a fleet configuration/);
  t.notMatch(out, /Waiting for cloud:ubuntu-1 to make SSH available/, 'no connection was tried');
  t.equal((await readFile(discarded, 'utf8')).trim(), '10.0.0.2:22', 'the machine was released');
});

t.test('local machines in a network namespace: refused before anything is packed', async (t) => {
  const dir = await project(t, spreadYaml('far-netns', ['backends:', '  region:', '    type: local', '    netns: fc-region-a', '    systems: [ubuntu-1]']));
  await t.rejects(run(dir), {
    code: 'FC_ERR_CONFIG',
    message: /backend region \(local\) runs its machines in network namespace fc-region-a, but without a fleet configuration .*a loopback of its own.*--fleet FILE/,
  });
  await t.rejects(readdir(join(dir, 'cache')), { code: 'ENOENT' }, 'no embedded server started, nothing packed');
});

t.test('two runs of one project at once: the second keeps its embedded servers\' data apart, and both run', async (t) => {
  // each task waits (60 s at most) until the other one runs too: the two runs overlap
  const flags = join(t.testdirName, 'flags');
  const meet = `summary: t\nexecute: |\n  mkdir -p ${flags}; touch ${flags}/$(basename $SPREAD_TASK)\n  for i in $(seq 600); do [ $(ls ${flags} | wc -l) -ge 2 ] && exit 0; sleep 0.1; done; exit 1\n`;
  const tasks = { 's/a': meet, 's/b': meet };
  const dir = await project(t, spreadYaml('twice', LOCAL), tasks);
  // two processes, as two terminals would start them (the records of running machines are per process)
  const runs = await Promise.all(['s/a', 's/b'].map((task) => new Promise<{ status: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, cliArgs(['run', task]), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    stopWithTest(t, child, 'SIGKILL');
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (status) => resolve({ status, out }));
  })));
  for (const r of runs) {
    t.equal(r.status, 0, r.out);
    t.match(r.out, /Successful tasks: 1/);
  }
  const noted = runs.filter((r) => /The embedded servers' data in .* is in use by another run \(pid \d+\): this run keeps its own in .*embedded-\w+ until it ends\./.test(r.out));
  t.equal(noted.length, 1, 'one of them said so');
  t.same((await readdir(join(dir, '.fleetcache'))).filter((name) => name.startsWith('embedded-')), [], 'its own data is gone with it');
});
