// `fleetcache run` over SSH, what a job leaves running: killed at the end of its restore, kept
// with --abend or after an interrupt (run-ssh-lost.test.ts: after a lost connection). The sshd
// and project: ssh-project.ts.
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { RunLog } from '../../src/run/report.js';
import { runProject } from '../../src/run/runner.js';
import { isAlive } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { commandSessions } from '../ssh/sshd.js';
import { leavingScript, leftPids } from '../ssh/leaving-script.js';
import { fileSshd, oneHostProject, startRun } from './ssh-project.js';

// one sshd for the file (its log counts SSH commands): no test stops or breaks it, and each has a project path of its own
const sshd = await fileSshd(t, { log: true });

t.test("what a job's scripts leave running on an ssh machine is killed at its end, what left their process group too, whether its execute or its restore fails; a suite prepare's daemon serves on", async (t) => {
  const { base, dir } = await oneHostProject(t, 'summary: one\nexecute: echo one\n', sshd);
  const file = (name: string): string => join(base, `${name}.pids`);
  const files = { prepare: file('prepare'), execute: file('execute'), suite: file('suite'), failedExecute: file('failed-execute'), beforeRestore: file('before-restore'), restore: file('restore'), debug: file('debug') };
  const tasks = {
    passes: `summary: passes\nprepare: |\n  ${leavingScript(files.prepare)}\nexecute: |\n  ${leavingScript(files.execute)}\n`,
    'execute-fails': `summary: its execute fails\nexecute: |\n  ${leavingScript(files.failedExecute)}\n  exit 1\nrestore: echo restored\n`,
    // last: a machine whose restore failed takes no more jobs
    'restore-fails': [
      'summary: its restore fails', 'execute: |', `  ${leavingScript(files.beforeRestore)}`, 'restore: |', `  ${leavingScript(files.restore)}`, '  exit 1',
      // a killed process not reaped yet (a zombie) is not running: kill -0 would say it is
      'debug: |', `  ${leavingScript(files.debug)}`, `  for p in $(cat ${files.beforeRestore} ${files.restore}); do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) && [ "$s" != Z ] && echo "running $p"; done`, '',
    ].join('\n'),
  };
  await rm(join(dir, 'tests', 'one'), { recursive: true });
  for (const [name, yaml] of Object.entries(tasks)) {
    await mkdir(join(dir, 'tests', name));
    await writeFile(join(dir, 'tests', name, 'task.yaml'), yaml);
  }
  const spread = await readFile(join(dir, 'spread.yaml'), 'utf8');
  await writeFile(join(dir, 'spread.yaml'), spread.replace('    summary: one\n', `    summary: one\n    prepare: |\n      ${leavingScript(files.suite)}\n`));
  let out = '';
  const result = await runProject({ cwd: dir, filters: Object.keys(tasks).map((name) => `tests/${name}`), order: true, agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(base, 'cache') });
  const left = Object.fromEntries(Object.entries(files).map(([name, f]) => [name, leftPids(t, f)])) as Record<keyof typeof files, number[]>;
  // spread's counts: a task whose restore fails was successful, its restore failed
  t.equal(result.tally.successful, 2, 'the two executes that pass');
  t.same(result.tally.failed, ['lab:debian-12:tests/execute-fails'], 'the execute that fails');
  t.same(result.tally.failures.get('task restore'), ['lab:debian-12:tests/restore-fails'], 'the restore that fails');
  if (result.tally.successful !== 2) t.comment(out);
  t.notOk([...left.prepare, ...left.execute].some(isAlive), "the passing task's prepare and execute left nothing running, in their process group or out of it");
  t.match(out, /Error executing lab:debian-12:tests\/execute-fails/);
  t.notOk(left.failedExecute.some(isAlive), 'what the failed execute left is killed at the end of its restore');
  for (const p of [...left.beforeRestore, ...left.restore]) t.match(out, new RegExp(`^running ${p}$`, 'm'), `the failed restore's debug script saw ${p} running`);
  t.notOk([...left.beforeRestore, ...left.restore, ...left.debug].some(isAlive), 'what the execute, the failed restore and the debug script left is killed after it');
  t.ok(left.suite.every(isAlive), "the suite prepare's processes run on, as in spread");
});

/** A one-host project (oneHostProject) whose one job runs `task`; its run's tally and log. */
async function runOneJob(t: Test, task: string, options: { abend?: true } = {}): Promise<{ ok: boolean; out: string }> {
  const { base, dir } = await oneHostProject(t, task, sshd);
  let out = '';
  const result = await runProject({ ...options, cwd: dir, filters: [], agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(base, 'cache') });
  return { ok: result.tally.ok, out };
}

t.test("a job whose restore passes has what it left killed at that restore's end: one SSH command per script of the job, none for the kill", async (t) => {
  const base = t.testdir();
  /** A run of `jobs` jobs on the sshd, each execute leaving sleeps, each restore passing: the SSH commands it took, and the sleeps. */
  const runJobs = async (name: string, jobs: number): Promise<{ commands: number; left: number[] }> => {
    const dir = join(base, name);
    const remote = join(base, `${name}-remote`);
    t.teardown(() => rm(remote, { recursive: true, force: true }));
    const files = Array.from({ length: jobs }, (_, i) => join(base, `${name}-${i}.pids`));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'spread.yaml'), `project: ${name}\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12]\nsuites:\n  tests/:\n    summary: jobs\n`);
    for (const [i, file] of files.entries()) {
      await mkdir(join(dir, 'tests', `t${i}`), { recursive: true });
      await writeFile(join(dir, 'tests', `t${i}`, 'task.yaml'), `summary: t\nexecute: |\n  ${leavingScript(file)}\nrestore: echo restored\n`);
    }
    const before = commandSessions(sshd);
    let out = '';
    const result = await runProject({ cwd: dir, filters: [], agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(base, `${name}-cache`) });
    if (!result.tally.ok) t.comment(out);
    t.equal(result.tally.successful, jobs, `${name}: every job passed`);
    return { commands: commandSessions(sshd) - before, left: files.flatMap((file) => leftPids(t, file)) };
  };
  const one = await runJobs('one', 1);
  const two = await runJobs('two', 2);
  // what a run costs besides its jobs is the same in both: the one more job makes the difference
  const scriptsPerJob = ['execute', 'restore'].length;
  t.equal(two.commands - one.commands, scriptsPerJob, "a job's SSH commands are its execute and its restore: its end-of-job kill ran in the restore");
  t.notOk([...one.left, ...two.left].some(isAlive), 'what every execute left is killed, what left its process group too');
});

t.test('--abend: a job whose restore fails has nothing killed (the machine is kept as it is for inspection)', async (t) => {
  const base = t.testdir();
  const files = { execute: join(base, 'execute.pids'), restore: join(base, 'restore.pids') };
  const { ok, out } = await runOneJob(t, `summary: one\nexecute: |\n  ${leavingScript(files.execute)}\nrestore: |\n  ${leavingScript(files.restore)}\n  exit 1\n`, { abend: true });
  t.notOk(ok, 'the job failed');
  t.match(out, /\(-abend\)/, 'the machine is kept');
  t.ok([...leftPids(t, files.execute), ...leftPids(t, files.restore)].every(isAlive), 'what the execute and the failed restore left runs on');
});

t.test('an interrupt during the restore: what the job left runs on, the restore killed before it could kill it', async (t) => {
  const { base, dir } = await oneHostProject(t, 'summary: one\n', sshd);
  const files = { execute: join(base, 'execute.pids'), restoring: join(base, 'restoring') };
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: |\n  ${leavingScript(files.execute)}\nrestore: |\n  touch ${files.restoring}\n  sleep 300\n`);
  const { child, out, exited } = startRun(t, base, dir, []);
  await eventually('the restore runs', () => existsSync(files.restoring), 60_000);
  child.kill('SIGINT');
  t.equal(await exited, 1, 'unsuccessful run');
  t.match(out(), /Received SIGINT/);
  t.ok(leftPids(t, files.execute).every(isAlive), 'nothing is killed after an interrupt (docs/run.md)');
});
