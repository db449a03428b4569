// spread's interactive modes on local machines, through the CLI: -shell, -shell-before,
// -shell-after and -debug open bash on the machine with the job's environment, in the
// task's directory, wired to the run's stdin (a pipe here, a pty through `script`).
import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { eventually } from '../helpers/wait.js';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { project } from './project.js';
import { HAS_SCRIPT, logLines, startRun } from './shell-session.js';

const SPREAD = (workers: number) =>
  ['project: shells', 'path: /home/shells', 'environment:', '  GREETING: hello', 'backends:', '  local:', '    type: local', '    systems:', `      - alpha-1:`, `          workers: ${workers}`, 'suites:', '  s/:', '    summary: s', ''].join('\n');

/** What each shell is asked: the job's environment and its directory. */
const PROBE = 'echo "MARK-$SPREAD_TASK-$GREETING"; echo "PWD=$PWD"; exit\n';

t.test('-shell: a shell instead of each execute script, in the task directory with the job environment; the tasks count as successful', async (t) => {
  const dir = await project(t, SPREAD(1), {
    's/one': 'summary: one\nexecute: echo EXECUTED-one\n',
    's/two': 'summary: two\nexecute: echo EXECUTED-two; false\n',
  });
  const run = startRun(t, dir, ['-shell', '-vv', '-seed', '1']);
  for (const nth of [1, 2]) {
    await run.seen(/Starting shell instead of executing local:alpha-1:s\/\w+\.\.\./, nth);
    run.type(PROBE);
  }
  t.equal(await run.exit(), 0, 'the run succeeds: no execute script ran');
  const out = run.out();
  for (const task of ['one', 'two']) {
    t.match(out, new RegExp(`Executing local:alpha-1:s/${task} \\(local:alpha-1\\) \\(\\d/2\\)\\.\\.\\.\\n.* Starting shell instead of executing local:alpha-1:s/${task}\\.\\.\\.\\nMARK-s/${task}-hello\\nPWD=/\\S+/home/shells/s/${task}\\n.* Continuing\\.\\.\\.\\n`), `s/${task}`);
  }
  t.notMatch(out, /EXECUTED-/, 'the execute scripts did not run');
  t.match(out, /Successful tasks: 2\n.*Aborted tasks: 0\n/);
});

// The interrupt goes to the shell of a second failing task, run last: one run for both.
t.test('-debug: a failing script opens a shell after its debug output; the failure counts and the restore runs', async (t) => {
  const dir = await project(t, SPREAD(1), {
    's/good': 'summary: good\nexecute: echo fine\n',
    's/bad': 'summary: bad\nexecute: echo EXECUTED-bad; false\ndebug: echo DEBUG-bad\nrestore: echo RESTORED-bad\n',
    's/last': 'summary: last\nexecute: "false"\npriority: -1\n',
  });
  const run = startRun(t, dir, ['-debug', '-seed', '1']);
  await run.seen(/Starting shell to debug\.\.\./);
  run.type(PROBE);
  await run.seen(/Starting shell to debug\.\.\./, 2);
  run.type('echo SHELL-OPEN\n');
  await run.seen(/^SHELL-OPEN$/m);
  process.kill(run.pid, 'SIGINT');
  t.equal(await run.exit(30_000), 1, 'unsuccessful run');
  const out = run.out();
  t.match(out, /Error executing local:alpha-1:s\/bad \(local:alpha-1\) :\n-----\n[^]*EXECUTED-bad\n[^]*-----\n.* Debug output for local:alpha-1:s\/bad \(local:alpha-1\) :\n-----\n[^]*DEBUG-bad\n-----\n.* Starting shell to debug\.\.\.\nMARK-s\/bad-hello\nPWD=\/\S+\/home\/shells\/s\/bad\n.* Continuing\.\.\.\n.* Restoring local:alpha-1:s\/bad \(/);
  t.equal(out.match(/Starting shell/g)?.length, 2, 'a shell for each failed task, none for the task that passed');

  t.test('an interrupt in a -debug shell: the failed task counts as failed only, not aborted too', async (t) => {
    t.match(out, /Error executing local:alpha-1:s\/last [^]*Starting shell to debug\.\.\.\nSHELL-OPEN\n[^]*Received SIGINT/, "the interrupt came in s/last's shell");
    t.match(out, /Successful tasks: 1\n.*Aborted tasks: 0\n.*Failed tasks: 2\n    - local:alpha-1:s\/bad\n    - local:alpha-1:s\/last\n/);
  });
});

t.test('-shell-before -shell-after: a shell before the execute script and one after it', async (t) => {
  const dir = await project(t, SPREAD(1), { 's/one': 'summary: one\nexecute: echo EXECUTED-one\n' });
  const run = startRun(t, dir, ['-shell-before', '-shell-after', '-vv']);
  await run.seen(/Starting shell instead of executing local:alpha-1:s\/one\.\.\./);
  run.type('echo BEFORE-$SPREAD_TASK; exit\n');
  await run.seen(/Starting shell after executing local:alpha-1:s\/one\.\.\./);
  run.type('echo AFTER-$SPREAD_TASK; exit\n');
  t.equal(await run.exit(), 0);
  t.match(run.out(), /BEFORE-s\/one\n.* Continuing\.\.\.\n[^]*EXECUTED-one\n[^]*Starting shell after executing local:alpha-1:s\/one\.\.\.\nAFTER-s\/one\n.* Continuing\.\.\.\n/);
});

t.test('shells take the terminal one at a time; the other machines go on, their lines held until the shell closes', async (t) => {
  // `bad` fails and opens a shell; `good`, on the other machine, waits for that shell to be
  // open, then runs to its end while it is
  const flags = join(t.testdirName, 'flags');
  const dir = await project(t, SPREAD(2), {
    's/bad': 'summary: bad\nexecute: "false"\n',
    's/good': `summary: good\nexecute: |\n  while [ ! -e ${flags}/shell-open ]; do sleep 0.1; done\n  touch ${flags}/good-ran\n`,
  });
  await mkdir(flags);
  const run = startRun(t, dir, ['-debug']);
  await run.seen(/Starting shell to debug\.\.\./);
  run.type(`touch ${flags}/shell-open\n`);
  await eventually('the other machine ran its task while the shell was open', () => existsSync(join(flags, 'good-ran')), 20_000);
  // and went on to its end: discarded, its directory removed (the shell's machine keeps its own)
  const machines = join(dir, '.fleetcache', 'machines');
  await eventually('the other machine is discarded', async () => (await readdir(machines)).length === 1, 30_000);
  const during = logLines(run.out().slice(run.out().lastIndexOf('\n', run.out().indexOf('Starting shell to debug'))));
  t.same(during, ['Starting shell to debug...'], 'no log line while the shell is open');
  run.type('echo CLOSING; exit\n');
  t.equal(await run.exit(), 1);
  const out = run.out();
  const after = logLines(out.slice(out.indexOf('\nCLOSING')));
  t.ok(after.indexOf('Continuing...') > 0, 'the held lines come out when the shell closes, before Continuing...');
  t.match(after.slice(0, after.indexOf('Continuing...')).join('\n'), /Discarding local:alpha-1 #\d\.\.\./, "the other machine's lines were held");
});

// The second shell is left open and the run interrupted: one run for both (an interrupted
// shell is the end of any run).
t.test('two shells never share the terminal: the second opens when the first exits; an interrupt ends an open shell with the rest of the run, its job aborted', async (t) => {
  // each task's prepare leaves a file: both there, the second machine is at its shell
  const flags = join(t.testdirName, 'flags');
  const dir = await project(t, SPREAD(2), {
    's/one': `summary: one\nprepare: touch ${flags}/one\nexecute: echo\n`,
    's/two': `summary: two\nprepare: touch ${flags}/two\nexecute: echo\n`,
  });
  await mkdir(flags);
  const run = startRun(t, dir, ['-shell']);
  await run.seen(/Starting shell instead of executing/);
  await eventually('both tasks are prepared', () => existsSync(join(flags, 'one')) && existsSync(join(flags, 'two')), 30_000);
  await sleep(500);
  t.equal(run.out().match(/Starting shell/g)?.length, 1, 'one shell while the first is open');
  run.type('echo FIRST-$SPREAD_TASK; exit\n');
  await run.seen(/Starting shell instead of executing/, 2);
  run.type('echo SECOND-$SPREAD_TASK\n');
  await run.seen(/^SECOND-/m);
  process.kill(run.pid, 'SIGINT');
  t.equal(await run.exit(30_000), 1);
  const out = run.out();
  const lines = out.split('\n');
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  t.ok(at(/^FIRST-/) < at(/Continuing/) && at(/Continuing/) < at(/^SECOND-/), 'first shell, Continuing..., second shell');
  t.match(out, /Received SIGINT, stopping[^]*Continuing\.\.\.\n[^]*Successful tasks: 1\n.*Aborted tasks: 1\n/, 'the first task passed, the interrupted one is aborted');
  t.notMatch(out, /Error running debug shell/, 'a shell ended by the interrupt is no error of its own');
});

t.test('on a terminal: an interactive bash with spread\'s prompt; Ctrl-C reaches the shell, not the run', { skip: !HAS_SCRIPT && 'util-linux script is not installed' }, async (t) => {
  const dir = await project(t, SPREAD(1), { 's/one': 'summary: one\nexecute: echo EXECUTED-one\n' });
  const run = startRun(t, dir, ['-shell'], { tty: { rows: 30, cols: 100 } });
  await run.seen(/local:alpha-1 \.\.\.\/s\/one# /);
  run.type('sleep 100\n');
  await sleep(500);
  run.type('\x03');
  await run.seen(/local:alpha-1 \.\.\.\/s\/one# /, 2);
  run.type('echo "MARK-$SPREAD_TASK"; tty; exit\n');
  t.equal(await run.exit(), 0, 'the run was not interrupted');
  const out = run.out().replace(/\r/g, '');
  t.match(out, /MARK-s\/one\n\/dev\/pts\/\d+\n/, 'the shell has the terminal');
  t.match(out, /Continuing\.\.\.\n[^]*Successful tasks: 1\n.*Aborted tasks: 0/);
});
