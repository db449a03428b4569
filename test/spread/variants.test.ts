// README "Variants" and "Blacklisting" examples, the set algebra of spec §5, and the
// environment cascade of spec §4, as table tests.
import t from 'tap';
import { expandJobs, jobEnvironment } from '../../src/spread/index.js';
import { load, names, task } from './helpers.js';

const base = (suiteExtra = '', backendExtra = '', projectExtra = ''): string => `project: demo
path: /remote/demo
${projectExtra}
backends:
    lxd:
${backendExtra}
        systems: [ubuntu-16.04, ubuntu-14.04, debian-sid]
    linode:
        systems: [ubuntu-16.04]
suites:
    examples/:
        summary: Simple examples
${suiteExtra}
`;

const readmeSuite = `        environment:
            SUBJECT/foo: sanity
            SUBJECT/bar: lunacy`;
const hello = `summary: Greet the planet
environment:
    GREETING: Hello
    GREETING/bar: Goodbye
    SUBJECT/baz: world
execute: |
    echo "$GREETING $SUBJECT!"
`;

t.test('README variants: three jobs per system with the documented outputs', async (t) => {
  const p = await load(t, { spread: base(readmeSuite), tasks: { 'examples/hello': hello } });
  const jobs = expandJobs(p, ['linode']);
  t.same(jobs.map((j) => j.name), ['linode:ubuntu-16.04:examples/hello:bar', 'linode:ubuntu-16.04:examples/hello:baz', 'linode:ubuntu-16.04:examples/hello:foo']);
  const said = Object.fromEntries(jobs.map((j) => {
    const env = new Map(jobEnvironment(j));
    return [j.variant, `${env.get('GREETING')} ${env.get('SUBJECT')}!`];
  }));
  t.same(said, { foo: 'Hello sanity!', bar: 'Goodbye lunacy!', baz: 'Hello world!' });
});

const blacklisting: Array<[string, string, string[]]> = [
  ['variants: [-bar]', 'variants:\n    - -bar\n', ['baz', 'foo']],
  ['variants: [foo, baz]', 'variants:\n    - foo\n    - baz\n', ['baz', 'foo']],
  ['variants: [+buz]', 'variants:\n    - +buz\n', ['bar', 'baz', 'buz', 'foo']],
  ['re-adding with a glob adds the literal pattern too', 'variants: [-ba*, +ba*]\n', ['ba*', 'bar', 'baz', 'foo']],
];
for (const [label, extra, expected] of blacklisting) {
  t.test(`README blacklisting: ${label}`, async (t) => {
    const p = await load(t, {
      spread: base(readmeSuite),
      tasks: { 'examples/hello': hello + extra, 'examples/other': task() },
    });
    const jobs = expandJobs(p, ['linode:examples/hello']).map((j) => j.variant);
    t.same(jobs, expected);
  });
}

t.test('removing every variant: no job when the project env has variants, else the bare job', async (t) => {
  const tasks = { 'examples/hello': hello + 'variants: [-foo, -bar, -baz, -p]\n', 'examples/other': task('x', 'variants: [-p]\n') };
  const withProjectVariant = await names(t, { spread: base(readmeSuite, '', 'environment:\n    P/p: 1\n'), tasks }, ['linode']);
  t.same(withProjectVariant, ['linode:ubuntu-16.04:examples/other:bar', 'linode:ubuntu-16.04:examples/other:foo']);
  // Without project variants the "" placeholder survives the removals (spread's evars).
  const placeholder = await names(t, { spread: base(readmeSuite), tasks }, ['linode']);
  t.same(placeholder, ['linode:ubuntu-16.04:examples/hello', 'linode:ubuntu-16.04:examples/other:bar', 'linode:ubuntu-16.04:examples/other:foo']);
});

t.test('systems and backends lists: blacklist, whitelist, globs', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['systems: [-ubuntu-14.04]', ['linode:ubuntu-16.04', 'lxd:debian-sid', 'lxd:ubuntu-16.04']],
    ['systems: [ubuntu-*]', ['linode:ubuntu-16.04', 'lxd:ubuntu-14.04', 'lxd:ubuntu-16.04']],
    ['backends: [-linode]', ['lxd:debian-sid', 'lxd:ubuntu-14.04', 'lxd:ubuntu-16.04']],
    ['backends: [linode]', ['linode:ubuntu-16.04']],
    ['systems: [+fedora-8]', ['linode:ubuntu-16.04', 'lxd:debian-sid', 'lxd:ubuntu-14.04', 'lxd:ubuntu-16.04']],
    ['backends: [lxd]\nsystems: [-debian-*]', ['lxd:ubuntu-14.04', 'lxd:ubuntu-16.04']],
  ];
  for (const [extra, expected] of cases) {
    const got = await names(t, { spread: base(), tasks: { 'examples/t': task('x', extra) } });
    t.same(got.map((n) => n.split(':').slice(0, 2).join(':')), expected, extra);
  }
});

t.test('variants form one axis (union), with the project placeholder dropped', async (t) => {
  const got = await names(t, {
    spread: base('', '        environment:\n            MODE/fast: 1\n', 'environment:\n    ARCH/amd64,arm64: x\n'),
    tasks: { 'examples/t': task('x', 'backends: [lxd]\nsystems: [debian-sid]\n') },
  });
  t.same(got, ['lxd:debian-sid:examples/t:amd64', 'lxd:debian-sid:examples/t:arm64', 'lxd:debian-sid:examples/t:fast']);
});

t.test('variants lists at backend, system and suite levels cascade', async (t) => {
  const spread = base(
    '        variants: [-b]\n',
    '        variants: [+c]\n',
    'environment:\n    V/a,b: 1\n',
  ).replace('systems: [ubuntu-16.04, ubuntu-14.04, debian-sid]', 'systems:\n            - ubuntu-16.04:\n                variants: [+d]\n            - debian-sid');
  const got = await names(t, { spread, tasks: { 'examples/t': task('x', 'backends: [lxd]\n') } });
  t.same(got, ['lxd:debian-sid:examples/t:a', 'lxd:debian-sid:examples/t:c', 'lxd:ubuntu-16.04:examples/t:a', 'lxd:ubuntu-16.04:examples/t:c', 'lxd:ubuntu-16.04:examples/t:d']);
});

t.test('mixing delta and plain entries is an error naming the level, its file and line', async (t) => {
  const p = await load(t, { spread: base(), tasks: { 'examples/t': task('x', 'variants: [+x, -y, x]\n') } });
  t.throws(() => expandJobs(p), { code: 'FC_ERR_PROJECT', message: /^examples\/t\/task\.yaml:3: examples\/t specifies variants both in delta and plain format$/ });
  const q = await load(t, { spread: base('        systems: [-debian-sid, ubuntu-16.04]\n'), tasks: { 'examples/t': task() } });
  t.throws(() => expandJobs(q), { message: /^spread\.yaml:\d+: suite examples\/ specifies systems both in delta and plain format$/ });
});

t.test('environment cascade: override moves to the end; variant value beats any bare value', async (t) => {
  const p = await load(t, {
    spread: base(
      '        environment:\n            B: suite\n            SUBJECT/foo: suite-foo\n',
      '        environment:\n            A: backend\n            B: backend\n',
      'environment:\n    A: project\n    B: project\n    C: project\n',
    ),
    tasks: { 'examples/t': task('x', 'backends: [lxd]\nsystems: [debian-sid]\nenvironment:\n    SUBJECT: task\n    A: task\n') },
  });
  const [job] = expandJobs(p);
  const env = jobEnvironment(job!);
  t.same(env.slice(0, 9).map(([k]) => k), ['SPREAD_JOB', 'SPREAD_PROJECT', 'SPREAD_PATH', 'SPREAD_BACKEND', 'SPREAD_SYSTEM', 'SPREAD_SUITE', 'SPREAD_TASK', 'SPREAD_VARIANT', 'SPREAD_SAMPLE']);
  t.same(env.slice(9), [['C', 'project'], ['B', 'suite'], ['SUBJECT', 'suite-foo'], ['A', 'task']]);
  t.same(Object.fromEntries(env.slice(0, 9)), {
    SPREAD_JOB: 'lxd:debian-sid:examples/t:foo', SPREAD_PROJECT: 'demo', SPREAD_PATH: '/remote/demo', SPREAD_BACKEND: 'lxd',
    SPREAD_SYSTEM: 'debian-sid', SPREAD_SUITE: 'examples/', SPREAD_TASK: 'examples/t', SPREAD_VARIANT: 'foo', SPREAD_SAMPLE: '1',
  });
});

t.test('$(HOST:...) is evaluated on the controller and cached per command', async (t) => {
  const dir = t.testdir();
  const p = await load(t, {
    spread: base('', '', `environment:\n    X: '$(HOST:echo $$ >> ${dir}/count; echo hi)'\n    Y: '$(HOST:echo $$ >> ${dir}/count; echo hi) there'\n`).replace('path: /remote/demo', "path: '/remote/$(HOST:echo demo)/'"),
    tasks: { 'examples/t': task() },
  });
  const jobs = expandJobs(p);
  const env = new Map(jobEnvironment(jobs[0]!));
  t.equal(env.get('X'), 'hi');
  t.equal(env.get('Y'), 'hi there');
  t.equal(env.get('SPREAD_PATH'), '/remote/demo');
  const { readFileSync } = await import('node:fs');
  t.equal(readFileSync(`${dir}/count`, 'utf8').trim().split('\n').length, 1);
});

t.test('$(HOST:...) commands run one at a time, in cascade order: one may use what an earlier one left', async (t) => {
  const dir = t.testdir();
  const p = await load(t, {
    spread: base('', '', `environment:\n    A: '$(HOST:sleep 0.3; echo a > ${dir}/left; echo done)'\n    B: '$(HOST:cat ${dir}/left 2>/dev/null || echo none)'\n`),
    tasks: { 'examples/t': task() },
  });
  const env = new Map(jobEnvironment(expandJobs(p)[0]!));
  t.same([env.get('A'), env.get('B')], ['done', 'a']);
});

t.test('a failing $(HOST:...) command aborts with its stderr', async (t) => {
  const p = await load(t, { spread: base('        environment:\n            X: "$(HOST:echo bad >&2; echo worse >&2; exit 3)"\n'), tasks: { 'examples/t': task() } });
  t.throws(() => expandJobs(p), { message: '$(HOST:echo bad >&2; echo worse >&2; exit 3) in suite examples/ environment returned error: bad; worse' });
});

t.test('a task of no job (samples below 1) has its environment not evaluated, as spread evaluates it per job: its failing $(HOST:...) is no error', async (t) => {
  const failing = 'environment:\n    X: "$(HOST:echo bad >&2; exit 3)"\n';
  for (const samples of ['-1', '-5']) {
    const p = await load(t, { spread: base(), tasks: { 'examples/none': task('no job', `samples: ${samples}\n${failing}`), 'examples/t': task() } });
    t.same(expandJobs(p).map((job) => job.name), ['linode:ubuntu-16.04:examples/t', 'lxd:debian-sid:examples/t', 'lxd:ubuntu-14.04:examples/t', 'lxd:ubuntu-16.04:examples/t'], `samples: ${samples}`);
  }
  // one sample or more: the job's environment is evaluated, and the command's failure is the error
  const p = await load(t, { spread: base(), tasks: { 'examples/none': task('a job', `samples: 1\n${failing}`), 'examples/t': task() } });
  t.throws(() => expandJobs(p), { message: '$(HOST:echo bad >&2; exit 3) in examples/none environment returned error: bad' });
});

t.test('$(HOST:...) commands run only for the jobs spread makes (its Jobs), not at load', async (t) => {
  const dir = t.testdir();
  const { existsSync } = await import('node:fs');
  const touch = (marker: string): string => `environment:\n    M: '$(HOST:touch ${dir}/${marker})'\n`;
  const indent = (text: string, by: string): string => text.replace(/^/gm, by);
  const spread = `project: demo
path: /remote/demo
backends:
    lxd:
        systems:
            - ubuntu-16.04:
${indent(touch('system-used'), '                ')}
            - debian-sid:
${indent(touch('system-unused'), '                ')}
suites:
    examples/:
        summary: used
        systems: [ubuntu-16.04]
${indent(touch('suite-used'), '        ')}
    idle/:
        summary: a suite whose only task makes no job
${indent(touch('suite-unused'), '        ')}
`;
  const p = await load(t, {
    spread,
    tasks: {
      'examples/t': task('made', touch('task-made')),
      'examples/filtered': task('made, then left out by the filter', touch('task-filtered')),
      'examples/none': task('no sample', `samples: -1\n${touch('task-no-sample')}`),
      'examples/elsewhere': task('no system of its', `systems: [-ubuntu-16.04]\n${touch('task-no-system')}`),
      'idle/none': task('no sample', `samples: -1\n${touch('task-idle')}`),
    },
  });
  const made = (): string[] => ['system-used', 'system-unused', 'suite-used', 'suite-unused', 'task-made', 'task-filtered', 'task-no-sample', 'task-no-system', 'task-idle'].filter((m) => existsSync(`${dir}/${m}`));
  t.same(made(), [], 'loading runs none');
  t.same(expandJobs(p, ['examples/t']).map((j) => j.name), ['lxd:ubuntu-16.04:examples/t']);
  // spread evaluates a job's environment before its filter check: a job left out by the filter still runs its commands
  t.same(made(), ['system-used', 'suite-used', 'task-made', 'task-filtered'], 'only the environments of jobs made');
});
