// `fleetcache run` on small spread projects: what spread evaluates or reports beyond the
// scripts themselves (credentials, timeouts, summary items, script helpers).
import t, { type Test } from 'tap';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REMOTE_PATH } from '../../src/backends/script.js';
import { RunLog } from '../../src/run/report.js';
import { runProject } from '../../src/run/runner.js';
import { agentBundle, LOCAL, project, run, spreadYaml } from './project.js';

t.test('adhoc allocate sees the system username and password evaluated as spread does', async (t) => {
  const seen = join(t.testdirName, 'seen');
  const dir = await project(
    t,
    spreadYaml('creds', ['environment:', '  USERVAR: tester', 'backends:', '  adhoc:', '    environment:', '      SUFFIX: x'], [
      '    allocate: |',
      `      echo "user=$SPREAD_SYSTEM_USERNAME pass=$SPREAD_SYSTEM_PASSWORD" > ${seen}`,
      '      FATAL stop here',
      '    systems:',
      '      - ubuntu-1:',
      '          username: ${USERVAR}-$SUFFIX',
      '          password: $(HOST:echo hostpw)',
      '      - ubuntu-2:',
      '          username: plain',
      '          password: pa$SUFFIX',
    ]),
  );
  const { result, out } = await run(dir, ['ubuntu-1']);
  t.equal(result.tally.ok, false);
  t.match(out, /cannot allocate adhoc:ubuntu-1: stop here/);
  t.equal((await readFile(seen, 'utf8')).trim(), 'user=tester-x pass=hostpw', '$VAR and $(HOST:) expanded');
  t.equal((await run(dir, ['ubuntu-2'])).result.tally.ok, false);
  t.equal((await readFile(seen, 'utf8')).trim(), 'user=plain pass=pa$SUFFIX', 'a password that is not one whole reference stays as written');
});

t.test('a system with several machines numbers its failed starts', async (t) => {
  const tasks = { 's/a': 'summary: a\nexecute: true\n', 's/b': 'summary: b\nexecute: true\n' };
  const dir = await project(t, spreadYaml('numbered', ['backends:', '  adhoc:'], ['    allocate: FATAL no machine', '    systems:', '      - ubuntu-1:', '          workers: 2']), tasks);
  const { result, out } = await run(dir);
  t.equal(result.tally.ok, false);
  t.match(out, /Error preparing adhoc:ubuntu-1 #1: /);
  t.match(out, /Error preparing adhoc:ubuntu-1 #2: /);
});

t.test('more than ten machines running at once: no MaxListenersExceededWarning', async (t) => {
  // Each job waits (30 s at most) until eleven have started: no machine can take a second
  // one, whatever the time a loaded machine needs to send the project eleven times. Eleven,
  // the fewest above ten: each one costs a project pull (CPU-bound, two cores here).
  const started = await mkdtemp(join(tmpdir(), 'fleetcache-started-'));
  t.teardown(() => rm(started, { recursive: true, force: true }));
  const wait = `touch ${started}/$$; for i in $(seq 300); do [ $(ls ${started} | wc -l) -ge 11 ] && exit 0; sleep 0.1; done; exit 1`;
  const tasks = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`s/t${i}`, `summary: t\nexecute: ${JSON.stringify(wait)}\n`]));
  const dir = await project(t, spreadYaml('many', ['fleetcache:', '  startupLimit: 11', '  dispatchDelay: 0s', 'backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          workers: 11']), tasks);
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  const { result, out } = await run(dir);
  t.equal(result.tally.successful, 11);
  t.match(out, /Executing .* \(local:alpha-1 #11\)/, 'the eleventh machine ran one');
  t.same(warnings.filter((w) => w.includes('MaxListeners')), []);
});

// One run of -repeat 2 for both: a job of each suite on the one machine, one after the other.
t.test('-repeat records the time of one round of each job', async (t) => {
  // a round sleeps 2 s: one round's time stays under 4 s with the overhead of a loaded CI
  // machine (a bound of 1.2 s on a 0.5 s sleep failed there), three rounds take 6 s or more
  const once = join(t.testdirName, 'prepared-once');
  const yaml = ['project: rounds', 'path: /home/rounds', ...LOCAL, 'suites:', '  s/:', '    summary: s', '  later/:', '    summary: later', `    prepare-each: if [ -e ${once} ]; then exit 1; fi; touch ${once}`, ''].join('\n');
  const round = 'summary: t\nexecute: sleep 2\n';
  const dir = await project(t, yaml, { 's/t': round, 'later/t': round });
  const { result } = await run(dir, [], { repeat: 2 });
  t.equal(result.tally.successful, 4, "s/t's three rounds, later/t's first");
  t.same(result.tally.aborted, ['local:alpha-1:later/t'], "later/t's second round's prepare failed");
  const file = JSON.parse(await readFile(join(dir, '.fleetcache-timings.json'), 'utf8')) as { jobs: Record<string, { avg: number }> };

  t.test('not of all the rounds together', async (t) => {
    const avg = file.jobs['local:alpha-1:s/t']?.avg ?? NaN;
    t.ok(avg >= 2 && avg < 4, `one round's time: ${avg} s (three rounds take 6 s or more)`);
  });

  t.test('a job whose suite prepare-each fails in a later round: of the rounds that ran, not of the one that did not', async (t) => {
    const avg = file.jobs['local:alpha-1:later/t']?.avg ?? NaN;
    t.ok(avg >= 2 && avg < 4, `the first round's time: ${avg} s (not averaged with the round that did not run)`);
  });
});

t.test("a job whose prepare fails never ran: its duration on record stays as it was", async (t) => {
  const dir = await project(t, spreadYaml('unprepared', LOCAL), { 's/t': 'summary: t\nprepare: exit 1\nexecute: echo\n' });
  const timings = join(dir, '.fleetcache-timings.json');
  const recorded = { avg: 600, runs: 3, task: 's/t', variant: '', last: Date.now() };
  await writeFile(timings, JSON.stringify({ version: 1, jobs: { 'local:alpha-1:s/t': recorded } }));
  const { result } = await run(dir);
  t.same(result.tally.aborted, ['local:alpha-1:s/t'], 'aborted by its prepare');
  const file = JSON.parse(await readFile(timings, 'utf8')) as { jobs: Record<string, { avg: number; runs: number }> };
  t.match(file.jobs['local:alpha-1:s/t'], { avg: recorded.avg, runs: recorded.runs }, 'the next run still orders it as long');
});

// One run for the three: each job has timeouts of its own level (project, suite, task) and one
// machine runs them one after another (a run each cost a pull and a fleet).
t.test('timeouts of each level, in one run', async (t) => {
  // suite s/ takes the project's timeouts, suite long/ has its own
  const yaml = `${spreadYaml('timeouts', ['kill-timeout: -1ns', 'warn-timeout: -1'], LOCAL)}  long/:\n    summary: long\n    kill-timeout: 600h\n    warn-timeout: 600h\n`;
  const dir = await project(t, yaml, {
    's/never': 'summary: t\nexecute: sleep 0.3; echo done\n',
    'long/t': 'summary: t\nexecute: sleep 0.5; echo done\n',
    's/late': 'summary: t\nwarn-timeout: 300ms\nexecute: sleep 1\n',
  });
  const { result, out } = await run(dir);
  t.equal(result.tally.successful, 3, 'every job passed');
  t.notMatch(out, /kill-timeout reached/, 'no job killed');

  t.test('a disabled timeout (-1ns or -1) never fires', async (t) => {
    t.notMatch(out, /\(local:alpha-1:s\/never\) running late/, "the project's -1 warns never");
    t.notMatch(out, /Error executing local:alpha-1:s\/never /, "the project's -1ns kills never");
  });

  t.test('timeouts above 2^31-1 ms (600h) neither kill at once nor warn at once', async (t) => {
    t.notMatch(out, /\(local:alpha-1:long\/t\) running late/, "the suite's 600h warns not at once");
    t.notMatch(out, /Error executing local:alpha-1:long\/t /, "the suite's 600h kills not at once");
  });

  t.test("a script running late is said as spread's client says it: the machine, then the script's context", async (t) => {
    // the task's own warn-timeout, over the project's disabled one
    t.match(out, /WARNING: local:alpha-1 \(local:alpha-1:s\/late\) running late\. Current output:\n-----\n\+ sleep 1\n-----/);
  });
});

t.test("an environment that sets SPREAD_PATH keeps its value, as in spread; without one, SPREAD_PATH is where the project is on the machine", async (t) => {
  const seen = join(t.testdirName, 'seen');
  const task = { 's/t': `summary: t\nexecute: echo "$SPREAD_PATH $(test -f "$SPREAD_PATH/spread.yaml" && echo unpacked)" > ${seen}\n` };
  const dir = await project(t, spreadYaml('own-path', LOCAL, ['environment:', '  SPREAD_PATH: /own/path']), task);
  const { result, out } = await run(dir);
  t.equal(result.tally.successful, 1, out);
  t.equal((await readFile(seen, 'utf8')).trim(), '/own/path', "the project's own SPREAD_PATH");
  await writeFile(join(dir, 'spread.yaml'), spreadYaml('own-path', LOCAL));
  const again = await run(dir);
  t.equal(again.result.tally.successful, 1, again.out);
  t.match((await readFile(seen, 'utf8')).trim(), /^\/\S+ unpacked$/, 'SPREAD_PATH is where the project was unpacked');
  t.notMatch(await readFile(seen, 'utf8'), /^\/home\/own-path /, 'a local machine nests the project: not the path of spread.yaml');
});

t.test('repack gets the project environment, SPREAD_BACKENDS and the project timeouts', async (t) => {
  const seen = join(t.testdirName, 'seen');
  const spread = (repack: string, timeouts: string[] = []) =>
    spreadYaml('repacked', timeouts, ['environment:', '  GREETING: hello', '  ONLY/v1: variant'], LOCAL, ['  other:', '    type: local', '    systems: [alpha-1]'], [
      'repack: |',
      ...repack.split('\n').map((l) => `  ${l}`),
    ]);
  const dir = await project(t, spread(`echo "$GREETING \${ONLY:-none} [$SPREAD_BACKENDS] $HOME" > ${seen}\ncat <&3 >&4`));
  const { result } = await run(dir, ['local:']);
  t.equal(result.tally.successful, 1);
  t.equal((await readFile(seen, 'utf8')).trim(), `hello none [local] ${process.env.HOME}`, 'project env without suffixed keys, the selected backends, the process env');

  await writeFile(join(dir, 'spread.yaml'), spread('sleep 30', ['warn-timeout: 200ms', 'kill-timeout: 1s']));
  let out = '';
  const started = Date.now();
  await t.rejects(runProject({ cwd: dir, filters: [], agentBundle: await agentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(dir, 'cache') }), /kill-timeout reached/);
  t.ok(Date.now() - started < 15_000, `killed after the project's kill-timeout (${Date.now() - started} ms)`);
  t.match(out, /WARNING: repack script running late/);
});

// One run for both: each check reads its own file the repack script wrote.
t.test('repack runs with the project environment evaluated by the shell and with spread\'s fixed PATH', async (t) => {
  const inRepack = join(t.testdirName, 'repack');
  const inTask = join(t.testdirName, 'task');
  const pathSeen = join(t.testdirName, 'path');
  const show = 'echo "H=$H LATER=$LATER Q=$Q EMPTY=[$EMPTY]"';
  const env = ['environment:', '  GREETING: hello', '  H: $HOME/x', '  LATER: $GREETING-world', `  Q: "'$HOME'"`, '  EMPTY: ""', '  PATH: $PATH:/opt/extra'];
  const dir = await project(t, spreadYaml('evaluated', env, LOCAL, ['repack: |', `  ${show} > ${inRepack}`, `  echo "$PATH" > ${pathSeen}`, '  cat <&3 >&4']), {
    's/t': `summary: t\nexecute: |\n  ${show} > ${inTask}\n`,
  });
  const { result } = await run(dir);
  t.equal(result.tally.successful, 1);

  t.test('repack sees the project environment evaluated by the shell, as machine scripts do', async (t) => {
    const repacked = (await readFile(inRepack, 'utf8')).trim();
    t.equal(repacked, `H=${process.env.HOME}/x LATER=hello-world Q=$HOME EMPTY=[]`, '$VAR expanded in order, self-quoted values as written');
    t.equal(repacked, (await readFile(inTask, 'utf8')).trim(), 'the same values as on the machine');
  });

  t.test("repack runs with spread's fixed PATH, not the caller's, as spread's other local scripts", async (t) => {
    t.not(process.env.PATH, REMOTE_PATH, "the test's own PATH differs from spread's");
    t.equal((await readFile(pathSeen, 'utf8')).trim(), `${REMOTE_PATH}:/opt/extra`, "spread's PATH, extended by the project environment");
  });
});

t.test('debug scripts are killed at the kill-timeout of their level', async (t) => {
  const dir = await project(t, spreadYaml('debugged', ['kill-timeout: 1s'], LOCAL), {
    's/t': 'summary: t\nexecute: exit 1\ndebug: |\n  echo debugging\n  sleep 20\n  echo debug-done\n',
  });
  const started = Date.now();
  const { result, out } = await run(dir);
  t.same(result.tally.failed, ['local:alpha-1:s/t']);
  t.ok(Date.now() - started < 15_000, `the debug script did not run its 20 s (${Date.now() - started} ms)`);
  t.match(out, /Error debugging local:alpha-1:s\/t \(local:alpha-1\) :\n-----\n[^]*debugging\n[^]*\n<kill-timeout reached>\n-----/, 'a debug script killed is an error of its own, as spread has it');
  t.notMatch(out, /debug-done/);
});

t.test("adhoc scripts use the backend's timeouts, then spread's defaults, never the project's", async (t) => {
  const marker = join(t.testdirName, 'tried');
  const survived = join(t.testdirName, 'survived');
  // the project's 500ms would kill the first attempt; the backend's 3s lets it past 1 s, then kills it
  const dir = await project(
    t,
    spreadYaml('adhoc-timeouts', ['kill-timeout: 500ms', 'backends:', '  adhoc:', '    warn-timeout: -1ns', '    kill-timeout: 3s', '    allocate-timeout: 1m30s', '    retry-delay: 10ms'], [
      '    allocate: |',
      `      if [ -e ${marker} ]; then FATAL second attempt; fi`,
      `      touch ${marker}`,
      '      sleep 1',
      `      touch ${survived}`,
      '      sleep 20',
      '    systems: [ubuntu-1]',
    ]),
  );
  const started = Date.now();
  const { result, out } = await run(dir);
  t.equal(result.tally.ok, false);
  t.match(out, /cannot allocate adhoc:ubuntu-1: second attempt/, 'the first attempt was killed, the second ran');
  t.ok(existsSync(survived), "the first attempt outlived the project's kill-timeout");
  t.ok(Date.now() - started < 15_000, `killed at the backend's kill-timeout (${Date.now() - started} ms)`);
  t.notMatch(out, /invalid duration/);

  // a backend that sets none: spread's 15 minutes, not the project's 500 ms
  await writeFile(
    join(dir, 'spread.yaml'),
    spreadYaml('adhoc-defaults', ['kill-timeout: 500ms', 'backends:', '  adhoc:', '    allocate-timeout: 3s', '    retry-delay: 10ms'], ['    allocate: |', '      sleep 1', '      FATAL ran for 1 s', '    systems: [ubuntu-1]']),
  );
  const defaults = await run(dir);
  t.match(defaults.out, /cannot allocate adhoc:ubuntu-1: ran for 1 s/);
  t.notMatch(defaults.out, /kill-timeout reached/);
});

t.test('the summary names failed backend and project scripts as spread does', async (t) => {
  const dir = await project(
    t,
    spreadYaml('summary', ['restore: exit 1', 'backends:', '  local:', '    type: local', '    prepare: exit 1', '    restore: exit 2', '    systems: [alpha-1]']),
  );
  const { result } = await run(dir);
  t.match(
    result.tally.summary(),
    'Failed backend prepare: 1\n    - local:alpha-1:local\nFailed backend restore: 1\n    - local:alpha-1:local\nFailed project restore: 1\n    - local:alpha-1:project',
  );
});

// Failing scripts on one machine: each task below fails its own way, and one run serves the
// checks of all of them (a run of one machine per check cost a pull and a run each).
t.test('failed scripts on one machine, as spread words and counts them', async (t) => {
  const dir = await project(t, spreadYaml('failing', LOCAL), {
    's/killed': 'summary: killed\nkill-timeout: 1s\nexecute: |\n  echo started\n  sleep 20\n',
    // no trace, no output: nothing but the exit status to show
    's/silent': 'summary: silent\nexecute: |\n  { set +x; } 2>/dev/null\n  exit 3\n',
    's/error': 'summary: a\nexecute: |\n  echo lots of output\n  ERROR "custom failure message"\n',
    's/nomatch': 'summary: b\nexecute: |\n  echo hello | MATCH hello\n  echo hello | MATCH bye\n',
    // fed from a here-string, the helper runs in the script's own shell: tracing and nounset must survive it
    's/unset': 'summary: u\nexecute: |\n  MATCH hel <<< "hello"\n  echo "traced after MATCH"\n  echo "[$NEVER_SET]"\n',
    // grep -q stops at the first line; a pipe into it breaks, and under pipefail that read as "not found"
    's/early': 'summary: e\nexecute: |\n  set -o pipefail\n  seq 1 100000 | MATCH "^1$"\n  seq 1 100000 | NOMATCH "^0$"\n',
    's/late': 'summary: l\nexecute: |\n  set -o pipefail\n  seq 1 100000 | NOMATCH "^1$"\n',
    's/debug-fails': 'summary: t\nexecute: exit 1\ndebug: |\n  echo the-debug-said\n  exit 2\n',
    // last: a task restore that fails ends the machine's jobs (the rest would be aborted)
    's/debug-once': 'summary: t\nexecute: exit 1\nrestore: exit 1\ndebug: echo DEBUG-RAN\npriority: -1\n',
  });
  const { result, out: log } = await run(dir);
  // s/late's NOMATCH lists its whole input (588 KB) in the log, and each assertion below formats
  // the string it is given (tap's diff: half a second of CPU each): the listing is cut after its
  // first lines, the only ones looked at
  const out = log.replace(/(found in:\n1\n2\n)(?:\d+\n)+/, '$1[...]\n');
  t.ok(out.length < log.length / 10, 'the listing was cut');
  /** Asserts in `t` that each of `names` (tasks of s/) failed. */
  const failed = (t: Test, ...names: string[]) => t.same([...result.tally.failed].filter((f) => names.includes(f.split(':s/')[1]!)).sort(), names.map((n) => `local:alpha-1:s/${n}`).sort());
  t.equal(result.tally.failed.length, 8, `every task but s/early failed (${result.tally.failed.join(', ')})`);
  t.equal(result.tally.successful, 1, 's/early passed');
  t.same(result.tally.aborted, [], 'every job ran');

  t.test("a failed script's block as spread's client words it: the kill-timeout marker, the exit status when there is no output", async (t) => {
    failed(t, 'killed', 'silent');
    t.match(out, /Error executing local:alpha-1:s\/killed \(local:alpha-1\) :\n-----\n[^]*\nstarted\n[^]*\n<kill-timeout reached>\n-----\n/, 'the marker in angle brackets after the output');
    t.match(out, /Error executing local:alpha-1:s\/silent \(local:alpha-1\) : Process exited with status 3\n/, 'one line with the exit status');
    t.notMatch(out, /-----\n\n-----/, 'no empty block');
  });

  t.test('ERROR msg fails the script with just that message', async (t) => {
    failed(t, 'error', 'nomatch');
    // spread's outputErr: one line of output goes on the error's own line, several between dashes
    t.match(out, /Error executing local:alpha-1:s\/error \(local:alpha-1\) : custom failure message\n/);
    t.notMatch(out, /lots of output|<ERROR/);
    t.match(out, /Error executing local:alpha-1:s\/nomatch \(local:alpha-1\) :\n-----\n[^]*grep error: pattern not found, got:\nhello\n-----/, 'other failures keep their output');
  });

  t.test("MATCH and NOMATCH as spread's: set +xu stays inside them, pipefail cannot fail a match, spread's words", async (t) => {
    failed(t, 'late', 'unset', 'nomatch');
    t.notMatch(out, /Error executing local:alpha-1:s\/early /, 'a match at the start of a long input, under pipefail');
    t.match(out, /Error executing local:alpha-1:s\/unset [^]*\+ echo 'traced after MATCH'\n[^]*NEVER_SET: unbound variable/, 'still traced, and set -u still on');
    t.match(out, /Error executing local:alpha-1:s\/late [^]*NOMATCH pattern='\^1\$' found in:\n1\n2\n/, 'NOMATCH finds a match at the start of a long input');
    t.match(out, /Error executing local:alpha-1:s\/nomatch [^]*grep error: pattern not found, got:\nhello\n-----/, "spread's message");
  });

  t.test('a debug script that fails is "Error debugging", as in spread', async (t) => {
    failed(t, 'debug-fails');
    t.match(out, /Error debugging local:alpha-1:s\/debug-fails \(local:alpha-1\) :\n-----\n[^]*the-debug-said\n\+ exit 2\n-----/);
    t.notMatch(out, /Debug output for local:alpha-1:s\/debug-fails /);
  });

  t.test("a job's debug script runs once, also when its restore fails after a failed execute", async (t) => {
    failed(t, 'debug-once');
    t.same(result.tally.failures.get('task restore'), ['local:alpha-1:s/debug-once']);
    t.equal(out.match(/Debug output for local:alpha-1:s\/debug-once /g)?.length, 1, 'one debug output');
    t.equal(out.match(/^DEBUG-RAN$/gm)?.length, 1);
  });
});

t.test('a script that cannot run fails as spread counts it, and the machine is still discarded', async (t) => {
  const yaml = spreadYaml('erroring', ['restore: echo project-restore'], LOCAL).replace('    summary: s\n', '    summary: s\n    restore: echo suite-restore\n');
  // the project directory goes away: every later script fails to start (spawn ENOENT), as on a machine that dropped off
  const dir = await project(t, yaml, { 's/a': 'summary: a\nexecute: rm -rf "$SPREAD_PATH"\nrestore: echo task-restore\n' });
  const { result, out } = await run(dir, ['/a']);
  t.equal(result.tally.ok, false, 'the run is unsuccessful');
  t.same(result.tally.failures.get('task restore'), ['local:alpha-1:s/a']);
  t.same(result.tally.failures.get('suite restore'), ['local:alpha-1:s/']);
  t.same(result.tally.failures.get('project restore'), ['local:alpha-1:project']);
  t.match(out, /Error restoring local:alpha-1:s\/a \(local:alpha-1\) : error: spawn \S+ ENOENT\n/);
  t.match(out, /Discarding local:alpha-1/);
  t.same(await readdir(join(dir, 'cache', 'machines')), [], 'the machine directory is removed');
});

t.test('a machine that cannot be put on record (running/ cannot be written) is discarded at once, not left behind', async (t) => {
  const dir = await project(t, spreadYaml('unrecorded', LOCAL));
  // the runner's record of its machines cannot be written: a file where its directory goes
  await mkdir(join(dir, 'cache'), { recursive: true });
  await writeFile(join(dir, 'cache', 'running'), '');
  const { result, out } = await run(dir);
  t.same(result.tally.aborted, ['local:alpha-1:s/t'], 'the job is aborted');
  t.match(out, /Error preparing local:alpha-1: /);
  t.match(out, /Discarding local:alpha-1\.\.\./);
  t.same(await readdir(join(dir, 'cache', 'machines')), [], 'the machine directory is removed');
  t.notMatch(out, /not discarded/, 'no machine left to run --discard, which would not know it');
});

t.test('-abend: no artifacts are fetched after the failure', async (t) => {
  const dir = await project(t, spreadYaml('abend-artifacts', LOCAL), { 's/t': 'summary: t\nartifacts: [out.txt]\nexecute: |\n  echo x > out.txt\n  exit 1\nrestore: echo task-restore\n' });
  const { result, out } = await run(dir, [], { abend: true, artifactsDir: join(t.testdirName, 'artifacts') });
  t.same(result.tally.failed, ['local:alpha-1:s/t']);
  t.notMatch(out, /Fetching artifacts/);
  t.notMatch(out, /Restoring/);
});

t.test('-abend: a failed project prepare stops everything: the other machines start no new job, no restore runs', async (t) => {
  const flag = join(t.testdirName, 'failed');
  const yaml = spreadYaml(
    'abend-workers',
    ['prepare: |', `  if [ "$SPREAD_SYSTEM" = alpha-1 ]; then touch ${flag}; exit 1; fi`, 'restore: echo project-restore'],
    ['backends:', '  local:', '    type: local', '    systems: [alpha-1, alpha-2]'],
  ).replace('    summary: s\n', '    summary: s\n    restore: echo suite-restore\n');
  // alpha-2's first job runs until alpha-1 has failed, then a while more: the abend happens during it
  const task = `summary: t\nexecute: |\n  while [ ! -e ${flag} ]; do sleep 0.05; done\n  sleep 1\nrestore: echo task-restore\n`;
  const dir = await project(t, yaml, { 's/t1': task, 's/t2': task, 's/t3': task });
  const { result, out } = await run(dir, [], { abend: true });
  t.same(result.tally.failures.get('project prepare'), ['local:alpha-1:project']);
  t.ok((out.match(/Executing local:alpha-2:/g)?.length ?? 0) <= 1, 'alpha-2 started no job after the failure');
  t.notMatch(out, /Restoring|project-restore|suite-restore|task-restore/, 'no restore on either machine, of any level');
  t.match(out, /Keeping local:alpha-1 at .* \(-abend\)\n/, "spread's line: no period after it");
  t.equal(result.tally.successful + result.tally.aborted.length, 6, 'every job done or aborted');
});

t.test('a failed suite prepare aborts every later job of that suite on the machine, also after leaving it', async (t) => {
  const yaml = [
    'project: bad-suite',
    'path: /home/bad-suite',
    ...LOCAL,
    'suites:',
    '  s1/:',
    '    summary: s1',
    '    prepare: echo S1-PREPARE; exit 1',
    '    restore: echo S1-RESTORE',
    '  s2/:',
    '    summary: s2',
    '',
  ].join('\n');
  // one machine; priorities make it take s1/a, then s2/c, then come back for s1/b
  const task = (priority: number) => `summary: t\nexecute: echo EXEC\npriority: ${priority}\n`;
  const dir = await project(t, yaml, { 's1/a': task(10), 's2/c': task(5), 's1/b': task(0) });
  const { result, out } = await run(dir);
  t.equal(out.match(/Preparing local:alpha-1:s1\/ /g)?.length, 1, 'the suite prepare ran once');
  t.same(result.tally.failures.get('suite prepare'), ['local:alpha-1:s1/']);
  t.same([...result.tally.aborted].sort(), ['local:alpha-1:s1/a', 'local:alpha-1:s1/b']);
  t.equal(result.tally.successful, 1, 's2/c ran');
  t.match(out, /Executing local:alpha-1:s2\/c /);

  t.test('(k/n): a job finished without executing takes its number too', async (t) => {
    // s1/a, aborted by its suite prepare, is 1/3: s2/c executes as 2/3
    const executing = [...out.matchAll(/Executing (\S+) \(local:alpha-1\) (\(\d\/\d\))/g)].map((m) => `${m[1]} ${m[2]}`);
    t.same(executing, ['local:alpha-1:s2/c (2/3)']);
  });
});

t.test('a suite prepare that cannot run (the machine dropped off) stops its worker: the suite\'s other jobs go to the other machine', async (t) => {
  const chosen = join(t.testdirName, 'chosen');
  const yaml = [
    'project: broken-suite',
    'path: /home/broken-suite',
    // one machine of the two drops off (its project directory goes): its next script cannot start (spawn ENOENT)
    `prepare: if mkdir ${chosen} 2>/dev/null; then rm -rf "$SPREAD_PATH"; fi`,
    'backends:',
    '  local:',
    '    type: local',
    '    systems:',
    '      - alpha-1:',
    '          workers: 2',
    'suites:',
    '  s1/:',
    '    summary: s1',
    '    prepare: echo S1-PREPARE',
    // s1's jobs first, whatever the run's seed: the broken machine's next script is s1's prepare
    '    priority: 10',
    '  s2/:',
    '    summary: s2',
    '',
  ].join('\n');
  // the jobs take a while: a broken worker that went on taking jobs would abort the rest of s1 meanwhile
  const task = 'summary: t\nexecute: sleep 0.3\n';
  const dir = await project(t, yaml, { 's1/a': task, 's1/b': task, 's1/c': task, 's1/d': task, 's2/e': task });
  const { result, out } = await run(dir);
  t.match(out, /Error preparing local:alpha-1:s1\/ \(local:alpha-1 #\d\) : error: spawn \S+ ENOENT\n/);
  t.equal(result.tally.aborted.length, 1, 'only the job whose suite prepare could not run is aborted');
  t.equal(result.tally.successful, 4, 'the other machine ran the rest');
});

t.test("restores when leaving a suite and at the end run with the last job's environment and task directory", async (t) => {
  const seen = join(t.testdirName, 'seen');
  const show = (what: string) => `echo "${what} $SPREAD_TASK $X $(basename "$PWD")" >> ${seen}`;
  const yaml = [
    'project: last-job',
    'path: /home/last-job',
    `restore: ${show('project')}`,
    'backends:',
    '  local:',
    '    type: local',
    `    restore: ${show('backend')}`,
    '    systems: [alpha-1]',
    'suites:',
    '  s1/:',
    '    summary: s1',
    `    restore: ${show('s1')}`,
    '  s2/:',
    '    summary: s2',
    `    restore: ${show('s2')}`,
    '',
  ].join('\n');
  // one machine; priorities give the order s1/a, s1/b, s2/c, s2/d
  const task = (name: string, priority: number) => `summary: ${name}\nenvironment:\n  X: x-${name}\nexecute: echo\npriority: ${priority}\n`;
  const dir = await project(t, yaml, { 's1/a': task('a', 10), 's1/b': task('b', 5), 's2/c': task('c', 1), 's2/d': task('d', 0) });
  const { result } = await run(dir);
  t.equal(result.tally.successful, 4);
  t.same((await readFile(seen, 'utf8')).trim().split('\n'), ['s1 s1/b x-b b', 's2 s2/d x-d d', 'backend s2/d x-d last-job', 'project s2/d x-d last-job']);
});

t.test('a suite restore that fails when leaving the suite is tried again when the worker finishes', async (t) => {
  const yaml = [
    'project: suite-restore',
    'path: /home/suite-restore',
    'restore: echo PROJECT-RESTORE',
    'suites:',
    '  s1/:',
    '    summary: s1',
    '    restore: echo S1-RESTORE; exit 1',
    '  s2/:',
    '    summary: s2',
    '    restore: echo S2-RESTORE',
    ...LOCAL,
    '',
  ].join('\n');
  const task = (priority: number) => `summary: t\nexecute: echo\npriority: ${priority}\n`;
  const dir = await project(t, yaml, { 's1/a': task(10), 's2/b': task(5) });
  const { result, out } = await run(dir);
  t.same(result.tally.failures.get('suite restore'), ['local:alpha-1:s1/', 'local:alpha-1:s1/'], 'listed twice');
  t.same(result.tally.aborted, ['local:alpha-1:s2/b'], 'the job that would have entered s2 is aborted');
  t.match(result.tally.summary(), 'Failed suite restore: 2\n    - local:alpha-1:s1/\n    - local:alpha-1:s1/');
  const lines = out.split('\n').filter((l) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (Restoring|Preparing|Executing) /.test(l)).map((l) => l.slice(20).replace(/ \(local:alpha-1\).*/, ''));
  t.same(lines, ['Executing local:alpha-1:s1/a', 'Restoring local:alpha-1:s1/', 'Restoring local:alpha-1:s1/', 'Restoring local:alpha-1'], 'the retry comes before the project restore; s2 is never entered');
  t.notMatch(out, /S2-RESTORE/);
});

t.test('(k/n): a job is numbered when it starts executing, not when its prepare starts', async (t) => {
  const prepared = join(t.testdirName, 'one-prepared');
  const executed = join(t.testdirName, 'two-executed');
  const wait = (file: string) => `while [ ! -e ${file} ]; do sleep 0.05; done`;
  const yaml = [
    'project: numbered-late',
    'path: /home/numbered-late',
    'kill-timeout: 30s',
    'backends:',
    '  local:',
    '    type: local',
    '    systems: [alpha-1, alpha-2]',
    'suites:',
    '  s/:',
    '    summary: s',
    // alpha-2 gets to its job only once alpha-1's job is preparing
    `    prepare: if [ "$SPREAD_SYSTEM" = alpha-2 ]; then ${wait(prepared)}; fi`,
    '',
  ].join('\n');
  // alpha-1's job prepares until alpha-2's has executed
  const dir = await project(t, yaml, {
    's/one': `summary: one\nsystems: [alpha-1]\nprepare: |\n  touch ${prepared}\n  ${wait(executed)}\nexecute: echo\n`,
    's/two': `summary: two\nsystems: [alpha-2]\nexecute: touch ${executed}\n`,
  });
  const { result, out } = await run(dir);
  t.equal(result.tally.successful, 2);
  const executing = [...out.matchAll(/Executing (\S+) \(local:alpha-\d\) (\(\d\/\d\))/g)].map((m) => `${m[1]} ${m[2]}`);
  t.same(executing, ['local:alpha-2:s/two (1/2)', 'local:alpha-1:s/one (2/2)']);
});

t.test('a backend type fleetcache has no provider for is refused before anything is packed', async (t) => {
  const dir = await project(t, spreadYaml('cloudy', ['backends:', '  lxd:', '    systems: [ubuntu-1]']));
  await t.rejects(run(dir), { code: 'FC_ERR_PROJECT', message: /^spread\.yaml:4: backend "lxd" has type "lxd", which fleetcache cannot run \(it runs local, adhoc, ssh\)$/ });
  await t.rejects(readdir(join(dir, 'cache')), { code: 'ENOENT' }, 'no origin started, nothing packed');
});

t.test('the machines of a system with several workers are told apart in log lines', async (t) => {
  const flags = join(t.testdirName, 'flags');
  const yaml = spreadYaml('two-workers', ['kill-timeout: 20s', 'backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          workers: 2']);
  // each job waits for the other: they can only finish running at once, on the two machines
  const task = `summary: t\nexecute: |\n  mkdir -p ${flags}; touch ${flags}/$(basename $SPREAD_TASK)\n  while [ $(ls ${flags} | wc -l) -lt 2 ]; do sleep 0.05; done\n`;
  const dir = await project(t, yaml, { 's/t1': task, 's/t2': task });
  const { result, out } = await run(dir);
  t.equal(result.tally.successful, 2);
  const labels = [...out.matchAll(/Executing local:alpha-1:s\/t\d \((.*?)\) \(\d\/2\)/g)].map((m) => m[1]).sort();
  t.same(labels, ['local:alpha-1 #1', 'local:alpha-1 #2']);
});

t.test('the embedded origin makes its own token: a FLEETCACHE_TOKEN in the shell (for a real origin, short or not) plays no part', async (t) => {
  const dir = await project(t, spreadYaml('own-token', LOCAL), { 's/t': 'summary: t\nexecute: true\n' });
  const before = process.env.FLEETCACHE_TOKEN;
  t.teardown(() => {
    if (before === undefined) delete process.env.FLEETCACHE_TOKEN;
    else process.env.FLEETCACHE_TOKEN = before;
  });
  process.env.FLEETCACHE_TOKEN = 'short';
  const { result } = await run(dir);
  t.equal(result.tally.successful, 1);
});

t.test('a system whose machine cannot start is said at once, not when the run ends', async (t) => {
  // the local job runs until the adhoc error is in the log (20 s at most): said at once, it
  // comes before the job ends; said at the end of the run, after it
  const said = join(t.testdirName, 'error-said');
  const tasks = { 's/t': `summary: t\nexecute: for i in $(seq 200); do [ -e ${said} ] && exit 0; sleep 0.1; done\n` };
  const dir = await project(t, spreadYaml('early', ['fleetcache:', '  dispatchDelay: 0s', 'backends:', '  local:', '    type: local', '    systems: [alpha-1]', '  adhoc:'], ['    allocate: FATAL no machines for you', '    systems: [ubuntu-1]']), tasks);
  let out = '';
  const log = new RunLog((s) => {
    out += s;
    if (/Error preparing adhoc:ubuntu-1: /.test(s)) writeFileSync(said, '');
  });
  const result = await runProject({ cwd: dir, filters: [], agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache') });
  t.equal(result.tally.successful, 1);
  const lines = out.split('\n');
  const error = lines.findIndex((l) => /Error preparing adhoc:ubuntu-1: .*no machines for you/.test(l));
  const done = lines.findIndex((l) => /Discarding local:alpha-1/.test(l));
  t.ok(error >= 0 && done >= 0 && error < done, `the error (line ${error}) comes before the other system's job ends (line ${done})`);
});
