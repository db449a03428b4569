// spread's REBOOT in `fleetcache run` on the local backend, whose reboot ends every process
// the machine's scripts left behind: keys, counts, prepare scripts, the limit.
import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { RunLog } from '../../src/run/report.js';
import { runProject } from '../../src/run/runner.js';

const TASKS: Record<string, string> = {
  keyed: [
    'summary: REBOOT with a key, in prepare and execute; what the script left running is gone after it',
    'prepare: |',
    '  echo "prepare $SPREAD_REBOOT" >> "$SPREAD_PATH/keyed.log"',
    '  if [ "$SPREAD_REBOOT" = 0 ]; then REBOOT from-prepare; fi',
    'execute: |',
    '  echo "execute $SPREAD_REBOOT" >> "$SPREAD_PATH/keyed.log"',
    '  if [ "$SPREAD_REBOOT" = 0 ]; then',
    '    setsid sleep 600 >/dev/null 2>&1 &',
    '    echo $! > daemon.pid',
    '    REBOOT mykey',
    '  fi',
    '  test "$SPREAD_REBOOT" = mykey',
    '  ! kill -0 "$(cat daemon.pid)"',
    '  test "$(paste -sd, "$SPREAD_PATH/keyed.log")" = "prepare 0,prepare from-prepare,execute 0,execute mykey"',
  ].join('\n'),
  counted: [
    'summary: REBOOT without a key gives the number of reboots so far',
    'execute: |',
    '  echo "$SPREAD_REBOOT" >> counts',
    '  case "$SPREAD_REBOOT" in',
    '    0|2) REBOOT ;;',
    '    1) REBOOT named ;;',
    '    named) REBOOT ;;',
    '  esac',
    '  test "$(paste -sd, counts)" = 0,1,named,3',
  ].join('\n'),
  forever: ['summary: reboots forever', 'execute: |', '  echo "run $SPREAD_REBOOT"', '  REBOOT'].join('\n'),
};

t.test('REBOOT reboots the machine and runs the script again with SPREAD_REBOOT', async (t) => {
  const dir = join(t.testdir(), 'project');
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'spread.yaml'),
    'project: reboots\npath: /home/reboots\nbackends:\n  local:\n    type: local\n    systems: [alpha-1]\nsuites:\n  tests/:\n    summary: reboots\n',
  );
  for (const [name, yaml] of Object.entries(TASKS)) {
    await mkdir(join(dir, 'tests', name), { recursive: true });
    await writeFile(join(dir, 'tests', name, 'task.yaml'), `${yaml}\n`);
  }
  let out = '';
  const result = await runProject({ cwd: dir, filters: [], agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(dir, 'cache') });
  const rebooting = (task: string) => out.match(new RegExp(`Rebooting on local:alpha-1 \\(local:alpha-1:tests/${task}\\) as requested\\.\\.\\.`, 'g'))?.length ?? 0;

  t.same(result.tally.failed, ['local:alpha-1:tests/forever'], 'only the task that reboots forever fails');
  t.equal(result.tally.successful, 2, 'the keyed and counted tasks pass');
  if (result.tally.successful !== 2) t.comment(out);
  t.equal(rebooting('keyed'), 2, 'one reboot from prepare, one from execute');
  t.equal(rebooting('counted'), 3);
  t.equal(rebooting('forever'), 10, 'ten reboots, then the limit');
  t.match(out, /Connected after reboot to local:alpha-1 \(local:alpha-1:tests\/keyed\)/);
  const failure = /Error executing local:alpha-1:tests\/forever \(local:alpha-1\) :\n-----\n([^]*?)\n-----/.exec(out)?.[1] ?? '';
  t.same(failure.match(/^run \d+$/gm), Array.from({ length: 11 }, (_, i) => `run ${i}`), 'the failure shows the output of every run');
  t.match(failure, /\nrebooted 10 times and asked again: more than 10 reboots$/, 'then why it failed');
});
