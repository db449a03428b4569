// spread's single-dash flags reach commander, and bad values are usage errors (exit 2).
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { normaliseSpreadFlags } from '../../src/cli/spread-flags.js';
import { runCli } from '../helpers/cli.js';
import { EXIT } from '../../src/errors.js';
import { REPO_ROOT } from '../helpers/processes.js';

t.test("spread's spellings", async (t) => {
  t.same(normaliseSpreadFlags(['run', '-seed=3', '-vv', '-artifacts', 'out', '-repeat', '2', '-abend', '-pass', 'pw', 'tests/', '-v']), [
    'run', '--seed=3', '--vv', '--artifacts', 'out', '--repeat', '2', '--abend', '--pass', 'pw', 'tests/', '-v',
  ]);
  // a filter that happens to start with a dash is left alone unless it is one of spread's flags
  t.same(normaliseSpreadFlags(['run', '-seedless']), ['run', '-seedless']);
  // Go's flag package takes a boolean flag's value after `=`
  t.same(normaliseSpreadFlags(['run', '-reuse=true', '-resend=1', '--list=True', '-abend=false', '-debug=0', 'tests/']), ['run', '--reuse', '--resend', '--list', 'tests/']);
  t.same(normaliseSpreadFlags(['run', '-reuse=maybe']), ['run', '--reuse=maybe'], 'any other value is left for commander to refuse');
});

t.test("spread's -v takes a value and a second dash as Go's flag package does; -help is the help", async (t) => {
  t.same(normaliseSpreadFlags(['run', '-v=true', '--v', '-v=false', '--v=1', 'tests/']), ['run', '-v', '-v', '-v', 'tests/']);
  const cwd = process.cwd();
  process.chdir(join(REPO_ROOT, 'examples/fleet-demo'));
  try {
    for (const flag of ['-v=true', '-v=false', '--v']) {
      const res = await runCli(normaliseSpreadFlags(['run', flag, '-list']));
      t.equal(res.code, 0, `${flag}: ${res.stderr}`);
      t.match(res.stdout, /^local:/, flag);
    }
  } finally {
    process.chdir(cwd);
  }
  const help = await runCli(normaliseSpreadFlags(['run', '-help']));
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /^Usage: fleetcache run /);
});

t.test("a flag's value and what follows -- are taken as they are, as Go's flag package and commander take them", async (t) => {
  const cwd = process.cwd();
  process.chdir(join(REPO_ROOT, 'examples/fleet-demo'));
  try {
    // -abend=false as a password is that password, not a flag set false and left out (which
    // left --pass without its value); -list first, so that no mistake runs the project
    for (const args of [['-pass', '-abend=false'], ['-artifacts', '-v=false'], ['-pass', '-help']]) {
      const res = await runCli(['run', '-list', ...args]);
      t.equal(res.code, 0, `${args.join(' ')}: ${res.stderr}`);
      t.match(res.stdout, /^local:/, args.join(' '));
    }
    // a token file -list reads too: the one named is -reuse=false, which is not there
    const token = await runCli(['run', '-list', '--token-file', '-reuse=false']);
    t.equal(token.code, EXIT.config, '--token-file -reuse=false');
    t.match(token.stderr, /^fleetcache: error: -reuse=false: cannot read token file: ENOENT/, 'the file named is -reuse=false');
    // a filter after -- is a filter, whatever it looks like: not a flag set false, left out
    // so that every job was listed
    const filter = await runCli(['run', '-list', '--', '-abend=false']);
    t.equal(filter.stdout, '');
    t.match(filter.stderr, /nothing matches provider filter/);
  } finally {
    process.chdir(cwd);
  }
});

t.test('a bad --repeat is a usage error naming the numbers taken', async (t) => {
  // Number() would take '' as 0, 1e1 as 10 and Infinity as no number; Go's flag package takes none of them.
  // Past 2^53 - 1 a count is no longer exact in a JavaScript number: the limit, not the syntax, is what is wrong there.
  const pastSafe = BigInt(Number.MAX_SAFE_INTEGER) + 1n;
  for (const bad of ['lots', '', '1e1', '08', '-1', '0x', 'Infinity', String(pastSafe), `0x${pastSafe.toString(16)}`]) {
    const { code, stderr } = await runCli(['run', ...normaliseSpreadFlags([`-repeat=${bad}`])]);
    t.equal(code, EXIT.usage, bad);
    t.match(stderr, `--repeat needs a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, not "${bad}"`, bad);
  }
  // the largest is taken: -list shows the jobs (and runs none)
  const cwd = process.cwd();
  process.chdir(join(REPO_ROOT, 'examples/fleet-demo'));
  try {
    const res = await runCli(['run', '-list', '--repeat', String(Number.MAX_SAFE_INTEGER)]);
    t.equal(res.code, 0, `the limit itself is taken: ${res.stderr}`);
    t.match(res.stdout, /^local:/);
  } finally {
    process.chdir(cwd);
  }
});

t.test('a bad --base-cache-size is a usage error', async (t) => {
  const { code, stderr } = await runCli(['run', '--base-cache-size', 'huge']);
  t.equal(code, EXIT.usage);
  t.match(stderr, /--base-cache-size: must be a size of at least 1 byte .*, not "huge"/);
});

t.test('a --seed that is not an integer is a usage error, not seed 0', async (t) => {
  // 08 is no octal number, 0x no hexadecimal one, and underscores stand only between digits, as in Go
  for (const args of [['--seed', 'abc'], ['-seed=abc'], ['--seed', '1.5'], ['--seed='], ['--seed', '9223372036854775808'], ['-seed=-9223372036854775809'], ['-seed=0x8000000000000000'], ['-seed=08'], ['-seed=0x'], ['-seed=1__0'], ['-seed=_1'], ['-seed=1e3'], ['-seed', ' 1']]) {
    const { code, stderr } = await runCli(['run', ...normaliseSpreadFlags(args)]);
    t.equal(code, EXIT.usage, args.join(' '));
    t.match(stderr, /--seed needs an integer from -9223372036854775808 to 9223372036854775807 \(spread's int64\), not "/, args.join(' '));
  }
});

t.test('a negative --seed is taken, as spread takes its int64 -seed, and --help says so', async (t) => {
  const cwd = process.cwd();
  process.chdir(join(REPO_ROOT, 'examples/fleet-demo'));
  try {
    t.equal((await runCli(['run', ...normaliseSpreadFlags(['-seed=-1', '-list'])])).code, 0, '-seed=-1 is no usage error');
  } finally {
    process.chdir(cwd);
  }
  const help = (await runCli(['run', '--help'])).stdout.replace(/\s+/g, ' ');
  t.match(help, /--seed <n> seed for the job order, an integer \(negative too, as spread's int64 -seed\)/);
  t.notMatch(help, /whole number/, 'no "whole number" (0, 1, 2, ...) for a seed that may be negative');
});

t.test("spread's -list: run prints the jobs as list does, and runs nothing", async (t) => {
  /** `fleetcache <args>` in the example project, in this process. */
  const cli = async (args: string[]) => {
    const cwd = process.cwd();
    process.chdir(join(REPO_ROOT, 'examples/fleet-demo'));
    try {
      return await runCli(args);
    } finally {
      process.chdir(cwd);
    }
  };
  for (const filters of [[], ['alpha-1', '/hello']]) {
    const listed = await cli(['list', ...filters]);
    t.equal(listed.code, 0);
    t.match(listed.stdout, /^local:/);
    for (const flag of ['-list', '--list']) {
      const res = await cli(['run', flag, ...filters]);
      t.equal(res.code, 0, `run ${flag} ${filters.join(' ')}`);
      t.equal(res.stdout, listed.stdout, 'the same lines as fleetcache list');
    }
  }
});

t.test("spread's process-bound flags are refused with what to use instead", async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['-reuse-pid=123'], /does not support -reuse-pid\b.*-reuse/s],
    [['-reuse-pid', '123', '-discard'], /does not support -reuse-pid\b/],
    [['-gc'], /does not support -gc\b.*-discard/s],
    [['-report'], /does not support -report\b.*spread_report\.xml.*--fail-logs DIR/s],
    [['-report=true', 'tests/'], /does not support -report\b/],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runCli(normaliseSpreadFlags(['run', ...args]));
    t.equal(code, EXIT.usage, args.join(' '));
    t.match(stderr, message, args.join(' '));
    t.notMatch(stderr, /unknown option/);
  }
});

t.test("spread's modes exclude each other: -abend with -restore is refused as spread does", async (t) => {
  for (const args of [['-abend', '-restore'], ['--restore', '--abend'], ['-debug', '-restore'], ['-shell-before', '-shell-after', '-abend']]) {
    const { code, stderr } = await runCli(normaliseSpreadFlags(['run', ...args]));
    t.equal(code, EXIT.usage, args.join(' '));
    t.match(stderr, 'cannot have more than one of -debug, -shell, -shell-before/after, -abend, and -restore', args.join(' '));
  }
  // -shell-before with -shell-after is one mode for spread: no mix (-list runs nothing)
  const cwd = process.cwd();
  process.chdir(join(REPO_ROOT, 'examples/fleet-demo'));
  try {
    const both = await runCli(normaliseSpreadFlags(['run', '-shell-before', '-shell-after', '-list']));
    t.equal(both.code, 0, both.stderr);
    t.match(both.stdout, /^local:/);
  } finally {
    process.chdir(cwd);
  }
});

t.test("spread's interactive modes are accepted and described in --help", async (t) => {
  const { code, stdout } = await runCli(['run', '--help']);
  t.equal(code, 0);
  for (const flag of ['--debug', '--shell', '--shell-before', '--shell-after']) t.match(stdout, new RegExp(`^  ${flag}\\s+open a shell on the machine`, 'm'), flag);
  t.notMatch(stdout, /-debug, -shell, -shell-before, -shell-after, -reuse-pid and -gc are refused/);
});

t.test('-v names the keys of spread.yaml and task.yaml fleetcache ignores, and a key written twice, with their lines (spread ignores them silently)', async (t) => {
  const dir = t.testdir({
    'spread.yaml': 'project: p\npath: /p\nbackends:\n    local:\n        systems: [alpha-1]\n        sytems-typo: [beta-1]\nsuites:\n    s/:\n        summary: s\nfleetcache:\n    cacheTimeout: 10s\n',
    s: { t: { 'task.yaml': 'summary: t\nexecute: echo first\nexcute-typo: echo no\nexecute: echo ok\n' } },
  });
  const cli = async (args: string[]) => {
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      return await runCli(args);
    } finally {
      process.chdir(cwd);
    }
  };
  const quiet = await cli(['list']);
  t.same([quiet.code, quiet.stderr], [0, ''], 'silent without -v, as spread');
  for (const args of [['list', '-v'], ['run', '--list', '-v']]) {
    const loud = await cli(args);
    t.equal(loud.code, 0, args.join(' '));
    t.equal(loud.stdout, quiet.stdout, 'the same jobs');
    t.match(loud.stderr, /WARNING: spread\.yaml:6: "sytems-typo" is not a field of spread\.Backend fleetcache knows: ignored\n/);
    t.match(loud.stderr, /WARNING: s\/t\/task\.yaml:3: "excute-typo" is not a field of spread\.Task fleetcache knows: ignored\n/);
    t.match(loud.stderr, /WARNING: s\/t\/task\.yaml:2: "execute" is written again at line 4 of the same mapping: ignored, the last one counts \(as in spread\)\n/);
    t.equal(loud.stderr.match(/WARNING/g)?.length, 3, 'and nothing else');
  }
  const demo = join(REPO_ROOT, 'examples/fleet-demo');
  process.chdir(demo);
  try {
    t.equal((await runCli(['list', '-v'])).stderr, '', 'the example project has no such key');
  } finally {
    process.chdir(REPO_ROOT);
  }
});

t.test("only run and list read spread's spellings: another command's value that looks like one of spread's flags is that value", async (t) => {
  // report --run -list read the run id as --list (unknown option), push --run -abend=false lost its value
  const data = t.testdir({ reports: {} });
  const runIds = ['-list', '-abend=false', '-v=true', '-help'];
  for (const [n, run] of runIds.entries()) {
    const ledger = { run, project: 'p', machines: 1, links: [], caches: [], originEgress: { actual: n + 1, naive: 10 } };
    await writeFile(join(data, 'reports', `${run}.json`), JSON.stringify(ledger));
  }
  for (const [n, run] of runIds.entries()) {
    const res = await runCli(['report', '--data', data, '--json', '--run', run]);
    t.equal(res.code, 0, `report --run ${run}: ${res.stderr}`);
    t.equal((JSON.parse(res.stdout || '{}') as { originEgress?: { actual: number } }).originEgress?.actual, n + 1, `report --run ${run}`);
  }
  // and run's spread spellings still are spread's
  const cwd = process.cwd();
  process.chdir(join(REPO_ROOT, 'examples/fleet-demo'));
  try {
    const listed = await runCli(['list']);
    const res = await runCli(['run', '-list', '-abend=false', '-v=false']);
    t.equal(res.code, 0, res.stderr);
    t.equal(res.stdout, listed.stdout, 'run -list prints the jobs as list does');
  } finally {
    process.chdir(cwd);
  }
});
