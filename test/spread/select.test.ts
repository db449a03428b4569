// Filters (spec §7 and README "Selecting"), manual (§8), priority (§9), samples and order (§6).
import t from 'tap';
import { expandJobs } from '../../src/spread/index.js';
import { load, names, task } from './helpers.js';

const spread = `project: filters
path: /p
backends:
    google:
        systems: [ubuntu-24.04-64, ubuntu-24.04]
    qemu:
        systems: [debian-12]
suites:
    tests/main/:
        summary: main
    tests/nested/core/:
        summary: nested
`;
const tasks = {
  'tests/main/install': task('i', 'environment:\n    MODE/strict,classic: x\n'),
  'tests/main/install-local': task(),
  'tests/main/remove': task('r', 'environment:\n    MODE/strict: x\n'),
  'tests/nested/core/hello': task(),
};

t.test('filter arguments match like spread', async (t) => {
  const p = await load(t, { spread, tasks });
  const all = expandJobs(p).map((j) => j.name);
  t.equal(all.length, 15);
  const match = (...args: string[]): string[] => {
    try {
      return expandJobs(p, args).map((j) => j.name);
    } catch {
      return [];
    }
  };
  const cases: Array<[string[], (n: string) => boolean]> = [
    [['qemu'], (n) => n.startsWith('qemu:')],
    [['ubuntu-24.04-64'], (n) => n.includes(':ubuntu-24.04-64:')],
    [['ubuntu-24.04'], (n) => n.includes(':ubuntu-24.04:')],
    [['strict'], (n) => n.endsWith(':strict')],
    [['install'], () => false],
    [['hel...'], () => false],
    [['tests/main/'], (n) => n.includes(':tests/main/')],
    [['tests/main'], () => false],
    [['main/install'], () => false],
    [['/install'], (n) => /:tests\/main\/install(:|$)/.test(n)],
    [['/install...'], (n) => n.includes(':tests/main/install')],
    [['google:/remove'], () => false],
    [['/remove:strict'], (n) => n.includes('/remove:strict')],
    [['google:tests/nested/'], (n) => n.startsWith('google:') && n.includes('tests/nested/')],
    [['tests/nested/'], (n) => n.includes('tests/nested/')],
    [['google:strict'], (n) => n.startsWith('google:') && n.endsWith(':strict')],
    [['strict:google'], () => false],
    [['debian-12:...:classic'], (n) => n.startsWith('qemu:debian-12:') && n.endsWith(':classic')],
    [['...'], () => true],
    [['ubuntu-...'], (n) => n.includes(':ubuntu-')],
    [['tests/(main|nested/core)/'], () => true],
    [['qemu', 'strict'], (n) => n.startsWith('qemu:') || n.endsWith(':strict')],
    [['qemu strict'], () => false],
    // Go's (RE2) syntax: inline flags at the start, named groups
    [['(?i)QEMU'], (n) => n.startsWith('qemu:')],
    [['(?is)Tests/Main/'], (n) => n.includes(':tests/main/')],
    [['/(?P<name>remove):strict'], (n) => n.includes('/remove:strict')],
  ];
  for (const [args, want] of cases) t.same(match(...args), all.filter(want), args.join(' '));
  t.same(match('install-local'), [], 'a bare word must equal a whole component');
});

t.test('invalid filters', async (t) => {
  const p = await load(t, { spread, tasks });
  t.throws(() => expandJobs(p, ['a..b']), { message: 'invalid filter string: ".."' });
  t.throws(() => expandJobs(p, ['a::b']), { message: 'invalid filter string: "::"' });
  t.throws(() => expandJobs(p, ['x#0']), { message: 'invalid sample range in filter string: "x#0"' });
  t.throws(() => expandJobs(p, ['x#3..2']), { message: 'invalid sample range in filter string: "x#3..2"' });
  t.throws(() => expandJobs(p, ['(']), { message: 'invalid filter string: "("' });
  t.throws(() => expandJobs(p, ['nomatch']), { message: 'nothing matches provider filter' });
  t.throws(() => expandJobs(p, ['qemu(?i)']), { message: /inline flags are only taken at the start/ }, 'inline flags elsewhere: JavaScript lacks them');
  t.throws(() => expandJobs(p, ['(?U)qemu']), { message: /ungreedy flag U is not supported/ });
});

t.test('order: byte-wise names, samples numerically', async (t) => {
  const got = await names(t, {
    spread: spread.replace('systems: [ubuntu-24.04-64, ubuntu-24.04]', 'systems: [ubuntu-24.04]'),
    tasks: { ...tasks, 'tests/main/flaky': task('f', 'samples: 11\n') },
  }, ['qemu']);
  t.same(got.slice(0, 11), Array.from({ length: 11 }, (_, i) => `qemu:debian-12:tests/main/flaky#${i + 1}`));
  t.same(got.slice(11), [
    'qemu:debian-12:tests/main/install-local',
    'qemu:debian-12:tests/main/install:classic',
    'qemu:debian-12:tests/main/install:strict',
    'qemu:debian-12:tests/main/remove:strict',
    'qemu:debian-12:tests/nested/core/hello',
  ]);
  const p = await load(t, { spread, tasks: { 'tests/main/flaky': task('f', 'samples: 12\n'), 'tests/nested/core/hello': task() } });
  t.same(expandJobs(p, ['qemu#3..4', 'qemu#12']).map((j) => j.name), ['qemu:debian-12:tests/main/flaky#3', 'qemu:debian-12:tests/main/flaky#4', 'qemu:debian-12:tests/main/flaky#12']);
});

const manualSpread = `project: manual
path: /p
backends:
    ci:
        type: lxd
        systems: [ubuntu-24.04]
    nightly:
        type: lxd
        manual: true
        systems: [ubuntu-24.04]
suites:
    checks/:
        summary: checks
    slow/:
        summary: slow
        manual: true
`;
const manualTasks = { 'checks/auto': task(), 'checks/heavy': task('h', 'manual: true\n'), 'slow/heavy': task('h', 'manual: true\n'), 'slow/light': task() };

t.test('manual: true at each level (spec §8 examples)', async (t) => {
  const cases: Array<[string[], string[]]> = [
    [[], ['ci:ubuntu-24.04:checks/auto']],
    [['nightly'], ['nightly:ubuntu-24.04:checks/auto']],
    [['nightly:slow/heavy'], ['nightly:ubuntu-24.04:slow/heavy']],
    [['checks/heavy', 'slow/heavy'], ['ci:ubuntu-24.04:checks/heavy']],
    [['nightly', 'ci'], ['ci:ubuntu-24.04:checks/auto']],
    [['slow/'], ['ci:ubuntu-24.04:slow/light']],
  ];
  for (const [args, want] of cases) t.same(await names(t, { spread: manualSpread, tasks: manualTasks }, args), want, args.join(' ') || '(no args)');
  const p = await load(t, { spread: manualSpread, tasks: manualTasks });
  t.equal(expandJobs(p, [], { discardManual: false }).length, 8, 'discardManual: false keeps manual jobs');
});

t.test('priority: first explicitly set of task, suite, system, backend', async (t) => {
  const p = await load(t, {
    spread: `project: prio
path: /p
backends:
    b:
        type: lxd
        priority: 1
        systems:
            - ubuntu-1:
                priority: 2
            - ubuntu-2
suites:
    s/:
        summary: s
        priority: 50
    u/:
        summary: u
`,
    tasks: { 's/zero': task('z', 'priority: 0\n'), 's/plain': task(), 'u/neg': task('n', 'priority: -5\n'), 'u/plain': task() },
  });
  const prio = Object.fromEntries(expandJobs(p).map((j) => [j.name, j.priority]));
  t.same(prio, {
    'b:ubuntu-1:s/plain': 50, 'b:ubuntu-1:s/zero': 0, 'b:ubuntu-1:u/neg': -5, 'b:ubuntu-1:u/plain': 2,
    'b:ubuntu-2:s/plain': 50, 'b:ubuntu-2:s/zero': 0, 'b:ubuntu-2:u/neg': -5, 'b:ubuntu-2:u/plain': 1,
  });
});

t.test('a suite or backend written twice is the last one written, as yaml.v2 decodes a map', async (t) => {
  const twice = (first: string) => `project: twice
path: /p
backends:
    lxd:
        systems: [ubuntu-1]
    qemu:
        systems: [ubuntu-2]
    qemu:
        systems: [ubuntu-1]
suites:
    s/:${first}
    s/:
        summary: second
        backends: [qemu]
`;
  const tasks = { 's/t': task() };
  t.same(await names(t, { spread: twice('\n        summary: first\n        backends: [lxd]\n        environment:\n            X: first'), tasks }), ['qemu:ubuntu-1:s/t'], 'no union of both');
  t.same(await names(t, { spread: twice(''), tasks }), ['qemu:ubuntu-1:s/t'], 'a null first one is replaced');
  const p = await load(t, { spread: twice('\n        summary: first'), tasks });
  t.equal(p.suites.length, 1);
  t.equal(p.suites[0]!.summary, 'second');
});
