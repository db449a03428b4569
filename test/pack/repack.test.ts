import t, { type Test } from 'tap';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runRepack } from '../../src/pack/repack.js';
import { groupAlive, isAlive } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

t.test('identity, transforming and failing repack scripts', async (t) => {
  const dir = t.testdir({ 'in.tar': 'pretend this is a tar\n', 'marker': 'm' });
  await runRepack('cat <&3 >&4', join(dir, 'in.tar'), join(dir, 'out.tar'), { cwd: dir });
  t.equal(readFileSync(join(dir, 'out.tar'), 'utf8'), 'pretend this is a tar\n', 'identity');
  await runRepack('tr a-z A-Z <&3 >&4; cat marker >&4', join(dir, 'in.tar'), join(dir, 'out2.tar'), { cwd: dir });
  t.equal(readFileSync(join(dir, 'out2.tar'), 'utf8'), 'PRETEND THIS IS A TAR\nm', 'cwd is the project root');
  writeFileSync(join(dir, 'out3.tar'), 'stale');
  await runRepack('echo fresh >&4', join(dir, 'in.tar'), join(dir, 'out3.tar'), { cwd: dir });
  t.equal(readFileSync(join(dir, 'out3.tar'), 'utf8'), 'fresh\n', 'fd 3 may be ignored; output truncated');
  await t.rejects(runRepack('echo broken >&2; exit 3', join(dir, 'in.tar'), join(dir, 'x.tar'), { cwd: dir }), { code: 'FC_ERR_PROJECT', message: /exit status 3\): broken/ });
  await t.rejects(runRepack('sleep 5; true', join(dir, 'in.tar'), join(dir, 'x.tar'), { cwd: dir, timeoutMs: 200 }), { message: /kill-timeout reached/ });
});

/**
 * Stops by its PID (its group's with `group`), whatever the outcome, each process whose PID
 * the script wrote to `name` in the testdir. Call it before t.testdir(): tap removes a
 * testdir made earlier before it runs the teardowns.
 */
function stopPidsIn(t: Pick<Test, 'teardown' | 'testdirName'>, name: string, group = false): void {
  const file = join(t.testdirName, name);
  t.teardown(() => {
    const pids = existsSync(file) ? readFileSync(file, 'utf8').split(/\s+/).filter(Boolean).map(Number) : [];
    for (const pid of pids) {
      try {
        process.kill(group ? -pid : pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

// spread SIGKILLs a script at its kill-timeout and says so (spec §11): a TERM trap cannot
// keep it running, and one that exits on TERM is not taken for an ordinary failure.
for (const [what, script] of [
  ['ignores TERM', "trap '' TERM; sleep 21"],
  ['exits on TERM with a status of its own', "trap 'exit 5' TERM; sleep 21 & wait"],
] as const) {
  t.test(`a script that ${what} is killed at the kill-timeout, and the error says so`, async (t) => {
    stopPidsIn(t, 'group.pid', true);
    const dir = t.testdir({ 'in.tar': 'tar\n' });
    const group = join(dir, 'group.pid');
    const started = Date.now();
    await t.rejects(
      runRepack(`echo $$ > ${group}; ${script}`, join(dir, 'in.tar'), join(dir, 'x.tar'), { cwd: dir, timeoutMs: 300 }),
      { code: 'FC_ERR_PROJECT', message: /^repack script failed \(kill-timeout reached\)/ },
    );
    t.ok(Date.now() - started < 5000, `returned in ${Date.now() - started} ms`);
    const pgid = Number(readFileSync(group, 'utf8'));
    await eventually('no process of the script group left', () => !groupAlive(pgid));
  });
}

t.test('an aborted signal kills the script group at once and rejects with its reason', async (t) => {
  stopPidsIn(t, 'group.pid', true);
  const dir = t.testdir({ 'in.tar': 'tar\n' });
  const group = join(dir, 'group.pid');
  const ac = new AbortController();
  const started = Date.now();
  const running = runRepack(`echo $$ > ${group}; sleep 30`, join(dir, 'in.tar'), join(dir, 'x.tar'), { cwd: dir, signal: ac.signal });
  await eventually('the script started', () => existsSync(group) && readFileSync(group, 'utf8').endsWith('\n'));
  ac.abort();
  await t.rejects(running, { name: 'AbortError' });
  t.ok(Date.now() - started < 5000, `returned in ${Date.now() - started} ms`);
  await eventually('no process of the script group left', () => !groupAlive(Number(readFileSync(group, 'utf8'))));
  await t.rejects(runRepack('true', join(dir, 'in.tar'), join(dir, 'y.tar'), { cwd: dir, signal: ac.signal }), { name: 'AbortError' }, 'an aborted signal starts nothing');
  t.notOk(existsSync(join(dir, 'y.tar')));
});

// setsid leaves the script's process group: the kill does not reach the daemon, and it holds stderr.
for (const [when, script] of [
  ['while the script runs', 'setsid sleep 27 & echo $! > daemon.pid; sleep 30'],
  ['after the script has ended', 'setsid sleep 27 & echo $! > daemon.pid'],
] as const) {
  t.test(`the kill-timeout holds when a process outside the group keeps stderr open ${when}`, async (t) => {
    stopPidsIn(t, 'daemon.pid');
    const dir = t.testdir({ 'in.tar': 'tar\n' });
    const started = Date.now();
    await t.rejects(runRepack(script, join(dir, 'in.tar'), join(dir, 'x.tar'), { cwd: dir, timeoutMs: 300 }), { code: 'FC_ERR_PROJECT', message: /kill-timeout reached/ });
    t.ok(Date.now() - started < 10_000, `returned in ${Date.now() - started} ms, not when the daemon ends`);
    t.ok(isAlive(Number(readFileSync(join(dir, 'daemon.pid'), 'utf8'))), 'the daemon was started (and is left to the teardown)');
  });
}

t.test('the project environment reaches the script evaluated, never on a command line', async (t) => {
  const dir = t.testdir({ 'in.tar': 'x' });
  const secret = `repack-secret-${process.pid}`;
  const seen = join(dir, 'seen');
  // The script reports its value, then waits until the test has looked at every command line.
  const script = `echo "$API_TOKEN $DERIVED" > ${seen}; while [ ! -e ${join(dir, 'looked')} ]; do sleep 0.05; done; cat <&3 >&4`;
  const running = runRepack(script, join(dir, 'in.tar'), join(dir, 'out.tar'), { cwd: dir, exports: [['API_TOKEN', secret], ['DERIVED', '${API_TOKEN}-x']] });
  await eventually('the script started', () => existsSync(seen));
  const holders = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(secret);
    } catch {
      return false;
    }
  });
  writeFileSync(join(dir, 'looked'), '');
  await running;
  t.same(holders, [], 'no command line holds the value');
  t.equal(readFileSync(seen, 'utf8'), `${secret} ${secret}-x\n`, 'evaluated in order, as machine scripts see them');
});
