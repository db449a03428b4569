// `fleetcache run` from the command line in a small project of its own: what the CLI
// passes to the runner (seed, data root) as a user sees it. Most runs go through main() in
// this process (runHere: the same flag parsing, output and exit code, without a process's
// start); the real binary runs where its exit status is the point (1, 2, 3) and under
// another user.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { chmod, cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cliArgs } from '../helpers/processes.js';
import { runHere } from '../helpers/cli.js';
import { ERROR_CODES } from '../../src/errors.js';
import { nobody, tempDirNobodyReaches } from '../helpers/nobody.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { deadUrl, serveOnLoopback } from '../helpers/loopback-server.js';

/** A one-worker project on the local backend with tasks t1..tN in tests/. */
async function project(t: Test, tasks: number, execute = 'echo ok'): Promise<string> {
  const dir = join(t.testdir(), 'project');
  await mkdir(join(dir, 'tests'), { recursive: true });
  await writeFile(
    join(dir, 'spread.yaml'),
    'project: small\npath: /home/small\nbackends:\n  local:\n    type: local\n    systems:\n      - alpha-1:\n          workers: 1\nsuites:\n  tests/:\n    summary: tasks\n',
  );
  for (let i = 1; i <= tasks; i++) {
    await mkdir(join(dir, 'tests', `t${i}`));
    await writeFile(join(dir, 'tests', `t${i}`, 'task.yaml'), `summary: t${i}\nexecute: |\n  ${execute}\n`);
  }
  return dir;
}

interface Ran {
  readonly status: number | null;
  /** stdout, then stderr */
  readonly out: string;
  readonly stderr: string;
}

function ran(t: Test, status: number | null, stdout: string, stderr: string): Ran {
  const out = `${stdout}\n${stderr}`;
  if (status !== 0) t.comment(out.slice(-3000));
  return { status, out, stderr };
}

/** `fleetcache run <args>` in `cwd`, through main() in this process. */
async function run(t: Test, cwd: string, args: string[]): Promise<Ran> {
  const res = await runHere(['run', ...args], cwd);
  return ran(t, res.code, res.stdout, res.stderr);
}

/** `fleetcache run <args>` in `cwd` as a process of its own: the exit status a shell sees. */
function runBinary(t: Test, cwd: string, args: string[]): Ran {
  const res = spawnSync(process.execPath, cliArgs(['run', ...args]), { cwd, encoding: 'utf8', timeout: 120_000 });
  return ran(t, res.status, res.stdout, res.stderr);
}

const executed = (out: string) => [...out.matchAll(/Executing (\S+)/g)].map((m) => m[1]);

/** A timings file as earlier runs would have left it: `long` took 1000 s, the others 1 s. */
async function timings(dir: string, tasks: number, long: number): Promise<void> {
  const jobs: Record<string, object> = {};
  for (let i = 1; i <= tasks; i++) jobs[`local:alpha-1:tests/t${i}`] = { avg: i === long ? 1000 : 1, runs: 1, task: `tests/t${i}`, variant: '' };
  await writeFile(join(dir, '.fleetcache-timings.json'), JSON.stringify({ version: 1, jobs }));
}

// One project for the seed 2 runs: the order they replay (whatever the timings) is the one
// seed 2^32+2 must not wrap to.
t.test("--seed N replays the order whatever the earlier runs recorded; -seed takes spread's whole int64 range, and seeds 2^32 apart run orders of their own", async (t) => {
  const dir = await project(t, 6);
  await timings(dir, 6, 5);
  const first = await run(t, dir, ['--seed', '2']);
  t.equal(first.status, 0, 'first run passes');
  await timings(dir, 6, 2);
  const second = await run(t, dir, ['-seed=2']);
  t.equal(second.status, 0, 'second run passes');
  t.equal(executed(first.out).length, 6);
  t.same(executed(second.out), executed(first.out), 'same seed, same order');

  const wrapped = await run(t, dir, [`-seed=${2 + 2 ** 32}`]);
  const largest = await run(t, dir, ['-seed=9223372036854775807']);
  for (const res of [wrapped, largest]) t.equal(res.status, 0, 'the run passes');
  t.notSame(executed(wrapped.out), executed(first.out), 'seed 2^32+2 is not seed 2 again');
  t.equal(executed(largest.out).length, 6, 'the largest int64 seed runs every job');
});

t.test("-seed is read as spread's Go flag package reads it: 010 is octal 8", async (t) => {
  const dir = await project(t, 6);
  const eight = await run(t, dir, ['-seed=8']);
  const octal = await run(t, dir, ['-seed=010']);
  const ten = await run(t, dir, ['-seed=10']);
  for (const res of [eight, octal, ten]) t.equal(res.status, 0, 'the run passes');
  t.equal(executed(eight.out).length, 6);
  t.notSame(executed(ten.out), executed(eight.out), 'seeds 8 and 10 give different orders (else this test proves nothing)');
  t.same(executed(octal.out), executed(eight.out), '-seed=010 runs in the order of seed 8, as spread does');
});

t.test("-repeat is read as spread's Go flag package reads it: 010 is octal 8", async (t) => {
  const repeated = await run(t, await project(t, 1), ['-repeat=010']);
  t.equal(repeated.status, 0, 'the run passes');
  t.equal(executed(repeated.out).length, 1 + 0o10, 'the job runs once and 8 more times, not 10');
});

/** The project's spread.yaml with `environment` (lines of `  KEY: value`) after its path. */
async function withEnvironment(dir: string, environment: string): Promise<void> {
  const file = join(dir, 'spread.yaml');
  await writeFile(file, (await readFile(file, 'utf8')).replace('path: /home/small\n', `path: /home/small\nenvironment:\n${environment}`));
}

t.test('environment values are the strings spread exports: !!binary decoded, the text of any other scalar as written', async (t) => {
  const expected: Array<[string, string, string]> = [
    ['BIN', '!!binary aGVsbG8=', 'hello'],
    ['BIN_QUOTED', '!!binary "aGk="', 'hi'],
    ['BIN_BLOCK', '!!binary |\n    aGVs\n    bG8=', 'hello'],
    ['INT_QUOTED', '!!int "0x10"', '0x10'],
    ['BOOL_QUOTED', '!!bool "yes"', 'yes'],
    ['DATE_QUOTED', '!!timestamp "2001-12-14"', '2001-12-14'],
    ['YES', 'yes', 'yes'],
    ['OFF', 'off', 'off'],
    ['NONE', '~', ''],
    ['HEX', '0x1F', '0x1F'],
    ['EXP', '1e3', '1e3'],
    ['INF', '.inf', '.inf'],
  ];
  // each value printed, then compared: a wrong one fails the task and shows in the output
  const check = expected.map(([key, , want]) => `echo "ENV_${key}=[$ENV_${key}]"; test "$ENV_${key}" = '${want}' || exit 1`).join('; ');
  const dir = await project(t, 1, check);
  await withEnvironment(dir, expected.map(([key, value]) => `  ENV_${key}: ${value}\n`).join(''));
  const res = await run(t, dir, ['-vv']);
  t.equal(res.status, 0, 'the run passes: every value is what spread exports');
  t.match(res.out, /ENV_BIN=\[hello\]/, 'the job saw the values');
});

t.test('a !!binary environment value Go cannot decode is refused by list and run, naming file, line and field', async (t) => {
  const dir = await project(t, 1);
  // folded to "aGVs bG8=": Go's base64 decoder skips line breaks but no space
  await withEnvironment(dir, '  GREETING: !!binary aGVs\n    bG8=\n');
  const line = (await readFile(join(dir, 'spread.yaml'), 'utf8')).split('\n').findIndex((l) => l.includes('GREETING')) + 1;
  const message = `spread.yaml:${line}: cannot load spread.yaml: yaml: !!binary value contains invalid base64 data (field GREETING)`;
  const res = await run(t, dir, []);
  t.equal(res.status, ERROR_CODES.FC_ERR_PROJECT.exit, 'run: an invalid project');
  t.match(res.out, message, 'run');
  const list = await runHere(['list'], dir);
  t.not(list.code, 0, 'list fails');
  t.match(list.stderr, message, 'list');
  t.equal(list.stdout, '', 'list prints no job');
});

t.test('-order runs the jobs in the order the filters name them, whatever the timings', async (t) => {
  const dir = await project(t, 4);
  await timings(dir, 4, 1);
  const res = await run(t, dir, ['-order', 'tests/t3', 'tests/t1', 'tests/']);
  t.equal(res.status, 0, 'the run passes');
  t.same(executed(res.out).map((name) => name?.split(':').pop()), ['tests/t3', 'tests/t1', 'tests/t2', 'tests/t4']);
  t.notMatch(res.out, /Sequence of jobs produced/, 'no seed: nothing is shuffled');
});

t.test("the project's own cache/ directory is shipped: run keeps its state in .fleetcache/", async (t) => {
  const dir = await project(t, 1, '. "$SPREAD_PATH/cache/lib.sh"; test "$(greet)" = hello');
  await mkdir(join(dir, 'cache'));
  await writeFile(join(dir, 'cache', 'lib.sh'), 'greet() { echo hello; }\n');
  const res = await run(t, dir, []);
  t.equal(res.status, 0, 'the task found cache/lib.sh');
  t.match(res.out, /Successful tasks: 1/);
  t.ok((await readdir(join(dir, '.fleetcache'))).includes('reports'), 'the run report is under .fleetcache/');
  t.same(await readdir(join(dir, 'cache')), ['lib.sh'], "nothing of the runner's in the project's cache/");
});

t.test("the real binary: an unsuccessful run ends with exit status 1, its final summary lines carry the log timestamp, as every other line of the run; -seed=0 is spread's default: a seed is chosen and announced", async (t) => {
  const dir = await project(t, 2, 'test "$SPREAD_TASK" != tests/t2');
  const res = runBinary(t, dir, ['-seed=0']);
  t.equal(res.status, 1, 'unsuccessful run');
  t.match(res.stderr, /^error: unsuccessful run$/m, 'said on stderr');
  t.match(res.out, /Sequence of jobs produced with -seed=[1-9]\d*\n/, 'the seed chosen is announced');
  const stamp = '\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d';
  t.match(res.out, new RegExp(`^${stamp} Successful tasks: 1\\n${stamp} Aborted tasks: 0\\n${stamp} Failed tasks: 1\\n    - local:alpha-1:tests/t2\\n`, 'm'));
  t.notMatch(res.out, /^(Successful|Aborted|Failed) tasks/m, 'no summary line without its timestamp');
});

t.test('--workers N replaces the systems\' workers; 0 or a non-number is a usage error', async (t) => {
  const dir = await project(t, 4, 'sleep 0.4');
  // dispatchDelay 0s: the three machines are asked for at once (the embedded default spaces them 250 ms
  // apart), so the third is asked for while jobs are still waiting, whatever the machine's speed
  await writeFile(join(dir, 'spread.yaml'), `${(await readFile(join(dir, 'spread.yaml'), 'utf8')).replace('workers: 1', 'workers: 3')}fleetcache:\n  dispatchDelay: 0s\n`);
  const three = await run(t, dir, []);
  t.equal(three.status, 0);
  t.match(three.out, /Allocating local:alpha-1 #3\.\.\./, 'the system asks for three machines');
  // One machine runs the jobs one after another: their sleeps would only add up.
  for (let i = 1; i <= 4; i++) await writeFile(join(dir, 'tests', `t${i}`, 'task.yaml'), `summary: t${i}\nexecute: |\n  echo ok\n`);
  const one = await run(t, dir, ['--workers', '1']);
  t.equal(one.status, 0);
  t.equal((one.out.match(/Allocating local:alpha-1/g) ?? []).length, 1, 'one machine');
  t.match(one.out, /Successful tasks: 4/);
  // the real binary's exit status for a usage error once, the other through main()
  for (const [bad, res] of [['0', await run(t, dir, ['--workers', '0'])], ['two', runBinary(t, dir, ['--workers', 'two'])]] as const) {
    t.equal(res.status, 2, `--workers ${bad}`);
    t.match(res.out, /--workers needs/);
  }
});

t.test('--fail-logs DIR: the error and debug output of each failed job in its own file', async (t) => {
  const dir = await project(t, 3, 'echo "output of $SPREAD_TASK"; test "$SPREAD_TASK" != tests/t2');
  await writeFile(join(dir, 'tests', 't2', 'task.yaml'), 'summary: t2\nexecute: |\n  echo "output of $SPREAD_TASK"; exit 3\ndebug: |\n  echo "debugging t2"\n');
  const logs = join(dir, '..', 'fail-logs');
  const res = await run(t, dir, ['--fail-logs', logs]);
  t.equal(res.status, 1, 'one task failed');
  t.same(await readdir(logs), ['local:alpha-1:tests_t2.log'], 'a file for the failed job only');
  const text = await readFile(join(logs, 'local:alpha-1:tests_t2.log'), 'utf8');
  t.match(text, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Error executing local:alpha-1:tests\/t2 \(local:alpha-1\) :\n-----\n(\+ .*\n)*output of tests\/t2\n/, 'the error block, as the log prints it');
  t.match(text, /Debug output for local:alpha-1:tests\/t2 \(local:alpha-1\) :\n-----\n(\+ .*\n)*debugging t2\n-----\n$/, 'then its debug output');
});

t.test('a --token-file or --fleet named on the command line that cannot be read (or is invalid) ends with 3 before anything runs: with the embedded fleet, and under -list and -discard too', async (t) => {
  const dir = await project(t, 1);
  const missing = join(dir, '..', 'missing');
  await writeFile(join(dir, 'caches-only.yaml'), 'regions:\n  region-a:\n    caches: [http://127.0.0.1:1]\n');
  const cases: Array<[string[], RegExp]> = [
    [['--token-file', missing], /fleetcache: error: \S+missing: cannot read token file: ENOENT/],
    [['--token-file', missing, '-list'], /fleetcache: error: \S+missing: cannot read token file: ENOENT/],
    [['--token-file', missing, '-discard'], /fleetcache: error: \S+missing: cannot read token file: ENOENT/],
    [['--fleet', missing, '-list'], /fleetcache: error: \S+missing: cannot read configuration: ENOENT/],
    [['--fleet', missing, '-discard'], /fleetcache: error: \S+missing: cannot read configuration: ENOENT/],
    [['--fleet', 'caches-only.yaml', '-list'], /fleetcache: error: caches-only\.yaml: fleet configuration lists regions but no origin/],
  ];
  for (const [args, error] of cases) {
    // the first by the real binary: its exit status as a shell sees it
    const res = args === cases[0]![0] ? runBinary(t, dir, args) : await run(t, dir, args);
    const label = args.map((arg) => (arg === missing ? '<missing>' : arg)).join(' ');
    t.equal(res.status, ERROR_CODES.FC_ERR_CONFIG.exit, label);
    t.match(res.out, error, `${label}: the file is named`);
    t.notMatch(res.out, /Executing|^local:/m, `${label}: nothing ran or was listed`);
  }
  t.same((await readdir(dir)).sort(), ['caches-only.yaml', 'spread.yaml', 'tests'], 'no run state was made');
  // a token file that can be read is still only checked: the embedded origin makes its own
  await writeFile(join(dir, 'token'), 'fc-token-not-used-here\n', { mode: 0o600 });
  const ran = await run(t, dir, ['--token-file', 'token']);
  t.equal(ran.status, 0, 'a readable token file: the run goes on');
  t.match(ran.out, /Ignoring --token-file token: no fleet configuration/);
});

t.test('an origin that is down at run start: the error says the project push to that origin failed, with its reason and exit status', async (t) => {
  const dir = await project(t, 1);
  const origin = await deadUrl();
  await writeFile(join(dir, 'fleet.yaml'), `origin: ${origin}\nregions:\n  region-a:\n    caches: [${origin}]\n`);
  await writeFile(join(dir, 'token'), 'fc-token\n', { mode: 0o600 });
  const res = await run(t, dir, ['--fleet', 'fleet.yaml', '--token-file', 'token']);
  t.equal(res.status, ERROR_CODES.FC_ERR_UPSTREAM.exit, "the connection failure's exit status");
  t.match(res.out, new RegExp(`fleetcache: error: cannot push the project to the origin: GET ${origin}/projects/small/bases/: connect ECONNREFUSED`));
});

/** Runs `fleetcache run` in `dir`; resolves to its exit code and its error line. */
async function runError(dir: string, args: string[]): Promise<{ code: number; line: string }> {
  const res = await runHere(['run', ...args], dir);
  return { code: res.code, line: res.stderr.split('\n').find((l) => l.startsWith('fleetcache: error: ')) ?? '' };
}

t.test('an origin URL that answers 404 (a wrong path): the error names that URL once, with the request that failed', async (t) => {
  const dir = await project(t, 1);
  const { url } = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const wrong = `${url}/wrong`;
  await writeFile(join(dir, 'fleet.yaml'), `origin: ${wrong}\nregions:\n  region-a:\n    caches: [${url}]\n`);
  await writeFile(join(dir, 'token'), `${TEST_TOKEN}\n`, { mode: 0o600 });
  const { code, line } = await runError(dir, ['--fleet', 'fleet.yaml', '--token-file', 'token']);
  t.equal(code, ERROR_CODES.FC_ERR_NOT_FOUND.exit, "the 404's exit status");
  t.match(line, new RegExp(`^fleetcache: error: cannot push the project to the origin: GET ${wrong}/projects/small/bases/: HTTP 404.*no fleetcache origin answers there, check the origin URL`));
  t.equal(line.split(url).length - 1, 1, `the URL once: ${line}`);
});

t.test('an origin that answers a base upload with another digest: the error names that request, and says the push failed at the origin', async (t) => {
  const dir = await project(t, 1);
  const wrongDigest = `sha256:${'0'.repeat(64)}`;
  // an origin without bases, that says it stored each base it is sent under a digest not the one sent
  const server = createServer((req, res) => {
    const answer = req.url === '/-/token' ? { scope: 'write' } : req.url === '/projects/small/bases/' ? { bases: [] } : req.method === 'PUT' && req.url?.startsWith('/projects/small/bases/') ? { digest: wrongDigest, size: 1 } : undefined;
    req.resume();
    req.on('end', () => (answer ? res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)) : res.writeHead(404).end()));
  });
  const origin = await serveOnLoopback(t, server);
  await writeFile(join(dir, 'fleet.yaml'), `origin: ${origin}\nregions:\n  region-a:\n    caches: [${origin}]\n`);
  await writeFile(join(dir, 'token'), 'fc-token\n', { mode: 0o600 });
  const { code, line } = await runError(dir, ['--fleet', 'fleet.yaml', '--token-file', 'token']);
  t.equal(code, ERROR_CODES.FC_ERR_DIGEST_MISMATCH.exit, "the digest mismatch's exit status");
  t.match(line, new RegExp(`^fleetcache: error: cannot push the project to the origin: PUT ${origin}/projects/small/bases/\\S+: digest mismatch: expected sha256:[0-9a-f]{64}, got ${wrongDigest}$`));
});

t.test("a push that fails on this host blames no origin, though its reason names the origin's URL (a repack script's last line)", async (t) => {
  const dir = await project(t, 1);
  const { url } = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  await writeFile(join(dir, 'spread.yaml'), `${await readFile(join(dir, 'spread.yaml'), 'utf8')}repack: |\n  echo "no mirror of ${url} here" >&2\n  exit 1\n`);
  await writeFile(join(dir, 'fleet.yaml'), `origin: ${url}\nregions:\n  region-a:\n    caches: [${url}]\n`);
  await writeFile(join(dir, 'token'), `${TEST_TOKEN}\n`, { mode: 0o600 });
  const { code, line } = await runError(dir, ['--fleet', 'fleet.yaml', '--token-file', 'token']);
  t.equal(code, ERROR_CODES.FC_ERR_PROJECT.exit, "the repack script's exit status");
  t.equal(line, `fleetcache: error: cannot push the project: repack script failed (exit status 1): no mirror of ${url} here`);
});

const user = nobody();
t.test('a file of the project the run cannot read: the error names the file, and blames no origin', { skip: typeof user === 'string' ? user : false }, async (t) => {
  if (typeof user === 'string') return;
  // where the unprivileged user reaches (root reads any file: only another user meets the mode)
  const base = await tempDirNobodyReaches(t, 'fleetcache-unreadable-', true);
  const dir = join(base, 'project');
  const made = await project(t, 1);
  await writeFile(join(made, 'secret.txt'), 'not for the run\n');
  await cp(made, dir, { recursive: true });
  await chmod(join(dir, 'secret.txt'), 0o600);
  const res = spawnSync(process.execPath, cliArgs(['run', '--data', join(base, 'data')]), { cwd: dir, uid: user.uid, gid: user.gid, encoding: 'utf8', timeout: 120_000 });
  t.equal(res.status, ERROR_CODES.FC_ERR_USAGE.exit, res.stderr);
  t.match(res.stderr, `fleetcache: error: cannot push the project: packing ${dir}: ${join(dir, 'secret.txt')}: permission denied`);
  t.notMatch(res.stderr, /origin/, 'no origin blamed');
});
