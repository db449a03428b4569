// The shared setup of the run-ssh*.test.ts files: a real sshd (Debian's openssh-server) on a
// loopback port with a copy of the example project, and `fleetcache run` as a child process.
import type { Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cliArgs, REPO_ROOT, stopWithTest } from '../helpers/processes.js';
import { startSshd, type Sshd } from '../ssh/sshd.js';

/**
 * A real sshd and a copy of the example project; the project path on the "machine" is removed in teardown.
 * `shared`: the sshd of the test file (fileSshd), for a test that neither stops nor breaks it; else one of the test's own.
 */
export async function sshProject(t: Test, shared?: Sshd): Promise<{ base: string; sshd: Sshd; dir: string; remote: string }> {
  const base = t.testdir();
  const sshd = shared ?? (await startSshd(t, join(base, 'sshd')));
  const dir = join(base, 'project');
  await cp(join(REPO_ROOT, 'examples/fleet-demo'), dir, { recursive: true });
  const remote = join(base, 'remote-project');
  t.teardown(() => rm(remote, { recursive: true, force: true }));
  return { base, sshd, dir, remote };
}

/**
 * One sshd for the tests of a file (the root `t` of tap), stopped when the file ends: each start
 * is two ssh-keygen runs and an sshd, and the tests that share it each have a project path of their own.
 */
export function fileSshd(t: Test, options?: Parameters<typeof startSshd>[2]): Promise<Sshd> {
  return startSshd(t, join(t.testdir(), 'sshd'), options);
}

/** `fleetcache run --data <base>/cache <args>` in `dir` as a child process, stopped by its PID when the test ends. */
export function startRun(t: Test, base: string, dir: string, args: string[]): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, cliArgs(['run', '--data', join(base, 'cache'), ...args]), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  stopWithTest(t, child, 'SIGKILL');
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, exited };
}

/** A one-task project on the ssh backend (one host: the test's sshd, or `shared` as in sshProject). */
export async function oneHostProject(t: Test, task: string, shared?: Sshd): Promise<{ base: string; sshd: Sshd; dir: string; remote: string }> {
  const setup = await sshProject(t, shared);
  const { dir, sshd, remote } = setup;
  await rm(join(dir, 'tests'), { recursive: true, force: true });
  await mkdir(join(dir, 'tests', 'one'), { recursive: true });
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), task);
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: onehost\npath: ${remote}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems: [debian-12]\nsuites:\n  tests/:\n    summary: one\n`,
  );
  return setup;
}
