// spread's interactive modes over SSH, through the CLI against a real sshd: the shell is an
// ssh2 channel with the job's environment in the task directory; plain pipes when stdin is
// a pipe, a pty (the local terminal raw meanwhile, its size followed) when it is a terminal.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeProject } from './project.js';
import { HAS_SCRIPT, startRun } from './shell-session.js';
import { fileSshd } from './ssh-project.js';

// one sshd for the file: no test stops or breaks it, and each has a project path of its own
const sshd = await fileSshd(t);

/** A project of tasks on the file's ssh host; the project path on the "machine" is removed in teardown. */
async function sshProject(t: Test, tasks: Record<string, string>): Promise<string> {
  const base = t.testdir();
  const remote = join(base, 'remote-project');
  t.teardown(() => rm(remote, { recursive: true, force: true }));
  const lab = `  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12]\n`;
  return writeProject(join(base, 'project'), `project: shells\npath: ${remote}\nenvironment:\n  GREETING: hello\nbackends:\n${lab}suites:\n  s/:\n    summary: s\n`, tasks);
}

t.test('-debug over ssh: the shell opens after the debug output, the failure counts', async (t) => {
  const dir = await sshProject(t, { 's/bad': 'summary: bad\nexecute: "false"\ndebug: echo DEBUG-bad\n' });
  const run = startRun(t, dir, ['-debug']);
  await run.seen(/Starting shell to debug\.\.\./);
  run.type('echo "MARK-$SPREAD_TASK"; echo x | MATCH x && echo MATCH-defined; exit 3\n');
  t.equal(await run.exit(), 1);
  t.match(run.out(), /Debug output for lab:debian-12:s\/bad \(lab:debian-12\) :\n-----\n[^]*DEBUG-bad\n-----\n.* Starting shell to debug\.\.\.\nMARK-s\/bad\nMATCH-defined\n.* Error running debug shell: the shell exited with status 3\n.* Continuing\.\.\.\n/);
  t.match(run.out(), /Failed tasks: 1\n    - lab:debian-12:s\/bad\n/);
});

t.test('-shell over ssh with stdin a pipe: the job environment and the task directory; a job left in the background does not hold the shell open and the run goes on; an interrupt ends the shell and what it started', async (t) => {
  const dir = await sshProject(t, { 's/one': 'summary: one\nexecute: echo EXECUTED-one\n', 's/two': 'summary: two\nexecute: echo EXECUTED-two\n' });
  const run = startRun(t, dir, ['-shell', '-vv', '-seed', '1']);
  await run.seen(/Starting shell instead of executing/);
  // a unique name, to find the remote sleep by its command line
  const marker = `${process.pid}${Date.now() % 100000}`;
  run.type(`echo "MARK-$SPREAD_TASK-$GREETING"; echo "PWD=$PWD"; test -t 0 || echo NO-TTY; sleep 1${marker} & echo BG-STARTED; exit\n`);
  await run.seen(/^BG-STARTED$/m);
  await run.seen(/Continuing\.\.\./, 1, 10_000); // not the background sleep's hours
  t.match(run.out(), /Starting shell instead of executing lab:debian-12:(s\/\w+)\.\.\.\nMARK-\1-hello\nPWD=\/\S+\/remote-project\/\1\nNO-TTY\nBG-STARTED\n.* Continuing\.\.\.\n/, 'the job environment, in the task directory, no terminal');
  await run.seen(/Starting shell instead of executing/, 2);
  run.type(`echo SHELL-OPEN; sleep 2${marker}\n`);
  await run.seen(/^SHELL-OPEN$/m);
  process.kill(run.pid, 'SIGINT');
  t.equal(await run.exit(20_000), 1, 'the run ends at the first interrupt');
  const pgrep = (pattern: string): boolean => {
    try {
      execFileSync('pgrep', ['-f', pattern]);
      return true;
    } catch {
      return false;
    }
  };
  t.notOk(pgrep(`sleep 2${marker}`), 'the interrupted shell\'s command was killed');
  execFileSync('pkill', ['-f', `sleep 1${marker}`]); // the job the first shell left, on purpose
  const out = run.out();
  t.match(out, /Received SIGINT, stopping[^]*Continuing\.\.\.\n/);
  t.notMatch(out, /EXECUTED-/, 'a shell instead of each execute');
  t.match(out, /Successful tasks: 1\n/, 'the shell that exited counts as its task run');
});

/** The pseudo-terminal the process `pid` has as its stdin. */
function ptyOf(pid: number): string {
  return readlinkSync(`/proc/${pid}/fd/0`);
}

t.test('-shell over ssh on a terminal: a remote pty of the terminal\'s size and following it, keys passed raw, the terminal restored', { skip: !HAS_SCRIPT && 'util-linux script is not installed' }, async (t) => {
  // the restore waits (for the test to have seen the terminal cooked again after the shell,
  // or 30 s), so that the run is still going when that is checked
  const checked = join(t.testdirName, 'echo-checked');
  const dir = await sshProject(t, { 's/one': `summary: one\nexecute: echo EXECUTED-one\nrestore: for i in $(seq 300); do [ -e ${checked} ] && break; sleep 0.1; done\n` });
  const run = startRun(t, dir, ['-shell'], { tty: { rows: 30, cols: 100 } });
  await run.seen(/lab:debian-12 \.\.\.\/s\/one# /);
  run.type('echo "SIZE=$(stty size)"; tty\n');
  await run.seen(/SIZE=30 100/);
  // resize the local terminal as a window manager would: the run gets SIGWINCH
  const node = Number(readFileSync(`/proc/${run.pid}/task/${run.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  execFileSync('stty', ['-F', ptyOf(node), 'rows', '40', 'cols', '120']);
  await new Promise((resolve) => setTimeout(resolve, 500));
  run.type('echo "SIZE=$(stty size)"\n');
  await run.seen(/SIZE=40 120/);
  // raw: Ctrl-C is a key for the remote shell, not SIGINT for the run
  run.type('sleep 100\n');
  await new Promise((resolve) => setTimeout(resolve, 500));
  run.type('\x03');
  await run.seen(/lab:debian-12 \.\.\.\/s\/one# /, 4);
  run.type('echo "MARK-$SPREAD_TASK-$GREETING"; exit\n');
  await run.seen(/Restoring lab:debian-12:s\/one/);
  // cooked again: the terminal echoes what is typed (raw mode does not)
  run.type('ECHO-CHECK\n');
  await run.seen(/ECHO-CHECK/, 1, 10_000);
  await writeFile(checked, '');
  t.equal(await run.exit(), 0, 'the run was not interrupted');
  const out = run.out().replace(/\r/g, '');
  t.match(out, /SIZE=30 100\n\/dev\/pts\/\d+\n/, 'a remote pty of the local size');
  t.match(out, /MARK-s\/one-hello\n/);
  t.match(out, /Continuing\.\.\.\n[^]*Successful tasks: 1\n.*Aborted tasks: 0/);
});
