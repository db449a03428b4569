// `fleetcache run` on a system whose `username` is not root (spread's `username: ubuntu`):
// the agent is installed under the project's path, which only root may write, the project
// is pulled and the tasks run through `sudo -i` with sudo's variables unset, as spread runs
// them. A user of the test's own (sudo without a password) logs in to a real sshd; it is
// removed afterwards.
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cp, mkdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { RunLog } from '../../src/run/report.js';
import { runProject } from '../../src/run/runner.js';
import { isAlive, REPO_ROOT } from '../helpers/processes.js';
import { sudoUser, sudoUserMissing } from '../helpers/sudo-user.js';
import { startSshd } from '../ssh/sshd.js';
import { leavingScript, leftPids } from '../ssh/leaving-script.js';

/** A user of the test's own (see sudoUser) and a real sshd it logs in to, in a new directory `base`. */
async function sshdForNewUser(t: Test): Promise<{ user: string; base: string; sshd: Awaited<ReturnType<typeof startSshd>> }> {
  const user = sudoUser(t);
  // sshd reads the authorized keys as the user: in a directory it may enter
  const base = mkdtempSync(join(tmpdir(), 'fleetcache-run-non-root-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  chmodSync(base, 0o755);
  const sshd = await startSshd(t, base);
  chmodSync(join(base, 'sshd'), 0o755);
  chmodSync(join(base, 'sshd', 'authorized_keys'), 0o644);
  return { user, base, sshd };
}

t.test('the example project over ssh as a user that is not root', { skip: sudoUserMissing() }, async (t) => {
  const { user, base, sshd } = await sshdForNewUser(t);
  const dir = join(base, 'project');
  await cp(join(REPO_ROOT, 'examples/fleet-demo'), dir, { recursive: true });
  const remote = join(base, 'remote-project'); // made on the machine, by root
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: fleet-demo\npath: ${remote}\nenvironment:\n  GREETING: hello\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${join(base, 'sshd', 'client_key')}\n    systems:\n      - debian-12:\n          region: region-a\n          username: ${user}\nsuites:\n  tests/:\n    summary: over ssh, not as root\n`,
  );
  // spread unsets what sudo sets: a task sees root's environment, not the user it came through;
  // what it leaves running is killed at the end of its restore, which runs through sudo too
  const left = join(base, 'left.pids');
  await mkdir(join(dir, 'tests', 'sudo-env'));
  await writeFile(join(dir, 'tests', 'sudo-env', 'task.yaml'), `summary: no trace of sudo\nexecute: |\n  test "$(id -u)" = 0\n  env | NOMATCH "^SUDO_"\n  ${leavingScript(left)}\nrestore: echo restored\n`);
  let out = '';
  const result = await runProject({ cwd: dir, filters: [], agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'every job succeeded');
  t.equal(result.tally.successful, 5);
  t.equal(result.pulls.length, 1, 'the project pulled once');
  t.equal((await stat(remote)).uid, 0, "the project's tree is root's, as spread's sudo -i tar x leaves it");
  t.notOk(leftPids(t, left).some(isAlive), 'what the task left running is killed, what left its process group too');
});

t.test('a project path that is the login user\'s home directory is not emptied: the machine is refused, the home kept', { skip: sudoUserMissing() }, async (t) => {
  const { user, base, sshd } = await sshdForNewUser(t);
  const home = `/home/${user}`;
  writeFileSync(join(home, 'keep-me'), 'the user\'s own file\n');
  const dir = join(base, 'project');
  await mkdir(join(dir, 'tests', 'one'), { recursive: true });
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: homely\npath: ${home}\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${join(base, 'sshd', 'client_key')}\n    systems:\n      - debian-12:\n          username: ${user}\nsuites:\n  tests/:\n    summary: s\n`,
  );
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), 'summary: t\nexecute: "true"\n');
  let out = '';
  const result = await runProject({ cwd: dir, filters: [], agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(base, 'cache') });
  t.equal(result.tally.ok, false, 'the run fails');
  t.match(out, new RegExp(`cannot empty the project path ${home} .*it holds the home directory ${home}`), 'and says why');
  t.ok(existsSync(join(home, 'keep-me')), 'the home directory kept its files');
});
