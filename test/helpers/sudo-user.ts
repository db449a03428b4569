// A user of a test's own, with a shell and sudo without a password (spread's `username:` of
// a system that is not root), removed at teardown or at exit.
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import type { Test } from 'tap';
import { undoAtExit } from './processes.js';

/** Why a test cannot add such a user here, or false. */
export function sudoUserMissing(): string | false {
  if (process.getuid?.() !== 0) return 'needs root to add a user';
  for (const tool of ['sudo', 'useradd']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `no ${tool} on this machine`;
    }
  }
  return false;
}

/** A user with a shell and sudo without a password, removed at teardown (or at exit, should the file time out). */
export function sudoUser(t: Test): string {
  const user = `fcsudo${process.pid}`;
  const sudoers = `/etc/sudoers.d/fleetcache-test-${user}`;
  // password '*': none, and not locked ('!', which sshd refuses even a key for)
  execFileSync('useradd', ['--create-home', '--shell', '/bin/bash', '--password', '*', user]);
  writeFileSync(sudoers, `${user} ALL=(ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
  const remove = (): void => {
    rmSync(sudoers, { force: true });
    // its sshd session may outlive the client's close by a moment: userdel refuses a user
    // with processes, so they go first, and --force removes the user all the same
    spawnSync('pkill', ['-KILL', '-u', user]);
    const removed = spawnSync('userdel', ['--force', '--remove', user], { encoding: 'utf8' });
    if (removed.status !== 0 && spawnSync('id', [user]).status === 0) throw new Error(`cannot remove the test user ${user}: ${removed.stderr}`);
  };
  const forget = undoAtExit(remove);
  t.teardown(() => {
    remove();
    forget();
  });
  return user;
}
