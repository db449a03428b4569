// Load and expansion errors of spread-spec §1–§7, with file and line where YAML has one.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expandJobs, findProject, loadProject } from '../../src/spread/index.js';
import { load, task, writeProject } from './helpers.js';

const ok = { backends: '    lxd:\n        systems: [ubuntu-1]\n', suites: '    s/:\n        summary: s\n' };
const project = (o: { head?: string; backends?: string; suites?: string; tail?: string } = {}): string =>
  `${o.head ?? 'project: p\npath: /p\n'}backends:\n${o.backends ?? ok.backends}suites:\n${o.suites ?? ok.suites}${o.tail ?? ''}`;

const loadErrors: Array<[string, string, Record<string, string> | undefined, string | RegExp]> = [
  ['invalid project name', project({ head: 'project: Bad\npath: /p\n' }), undefined, 'spread.yaml:1: invalid project name: "Bad"'],
  ['missing path', project({ head: 'project: p\n' }), undefined, /missing project path field with remote project location/],
  ['missing project name', project({ head: 'path: /p\n' }), undefined, 'spread.yaml:1: invalid project name: ""'],
  ['empty spread.yaml', '', undefined, 'spread.yaml:1: invalid project name: ""'],
  ['empty task.yaml', project(), { 's/t': '' }, 's/t/task.yaml:1: s/t is missing a summary'],
  ['no backends', 'project: p\npath: /p\nbackends:\nsuites:\n' + ok.suites, undefined, /must define at least one backend/],
  ['no suites', 'project: p\npath: /p\nbackends:\n' + ok.backends, undefined, /must define at least one task suite/],
  ['invalid backend name', project({ backends: '    Big:\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:4: invalid backend name: "Big"'],
  ['unsupported type', project({ backends: '    x:\n        type: cloud\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:5: backend "x" has unsupported type "cloud"'],
  ['adhoc without allocate', project({ backends: '    adhoc:\n        systems: [ubuntu-1]\n' }), undefined, /backend "adhoc" requires an allocate field/],
  ['allocate on lxd', project({ backends: '    lxd:\n        allocate: x\n        systems: [ubuntu-1]\n' }), undefined, /backend "lxd" cannot use allocate and dispose fields/],
  ['no systems', project({ backends: '    lxd:\n        systems: []\n' }), undefined, /no systems specified for backend "lxd"/],
  ['negative workers', project({ backends: '    lxd:\n        systems:\n            - ubuntu-1:\n                workers: -1\n' }), undefined, /backend "lxd" has system "ubuntu-1" with -1 workers/],
  ['system name without dash', project({ backends: '    lxd:\n        systems: [ubuntu]\n' }), undefined, 'spread.yaml:5: backend "lxd" refers to invalid system name: "ubuntu"'],
  ['system name without dash, on its own line', project({ backends: '    lxd:\n        systems:\n            - ubuntu-1\n            - centos\n' }), undefined, 'spread.yaml:7: backend "lxd" refers to invalid system name: "centos"'],
  ['system name with digit first part', project({ suites: '    s/:\n        summary: s\n        systems: [centos9-x]\n' }), undefined, /suite s\/ refers to invalid system name: "centos9-x"/],
  ['suite without slash', project({ suites: '    s:\n        summary: s\n' }), undefined, /invalid suite name \(must end with \/\): "s"/],
  ['invalid suite name', project({ suites: '    S/:\n        summary: s\n' }), undefined, /invalid suite name: "S\/"/],
  ['suite without summary', project({ suites: '    s/:\n' }), undefined, /suite s\/ is missing a summary/],
  ['missing suite directory', project({ suites: '    gone/:\n        summary: g\n' }), undefined, /spread\.yaml:\d+: cannot list suite gone\/: open .*gone: no such file or directory/],
  ['invalid variable name', project({ tail: 'environment:\n    1X: a\n' }), undefined, /invalid project environment: invalid variable name: "1X"/],
  ['duplicate variable', project({ tail: 'environment:\n    X: a\n    X: b\n' }), undefined, /spread\.yaml:\d+: invalid project environment: variable "X" defined multiple times/],
  ['bad timeout', project({ tail: 'kill-timeout: 10 minutes\n' }), undefined, /timeout must look like 10s or 15m or 1.5h, not "10 minutes" \(field kill-timeout\)$/],
  ['negative timeout', project({ tail: 'warn-timeout: 1m\nkill-timeout: -5m\n' }), undefined, /^spread\.yaml:10: cannot load spread\.yaml: timeout "-5m" is negative \(-1 or -1ns: no timeout\) \(field kill-timeout\)$/],
  ['bad size', project({ backends: '    qemu:\n        memory: 4GB\n        systems: [ubuntu-1]\n' }), undefined, /invalid size string: "4GB" \(field memory\)$/],
  // strconv.Atoi's range: a count past int64 is no size, before any unit multiplies it
  ['size past int64', project({ backends: '    qemu:\n        memory: 99999999999999999999M\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:5: cannot load spread.yaml: invalid size string: "99999999999999999999M" (field memory)'],
  ['size one past int64', project({ backends: '    qemu:\n        storage: 9223372036854775808B\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:5: cannot load spread.yaml: invalid size string: "9223372036854775808B" (field storage)'],
  ['size one below int64', project({ backends: '    qemu:\n        memory: -9223372036854775809K\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:5: cannot load spread.yaml: invalid size string: "-9223372036854775809K" (field memory)'],
  ['bad size suffix', project({ backends: '    qemu:\n        memory: 4T\n        systems: [ubuntu-1]\n' }), undefined, /unknown size suffix in "4T", must be one of: B, K, M, G/],
  // yaml.v2 checks a scalar against its explicit tag even when decoding it into a string
  ['an explicit tag the value does not fit', project({ tail: 'environment:\n    N: !!int abc\n' }), undefined, 'spread.yaml:10: cannot load spread.yaml: yaml: cannot decode !!str `abc` as a !!int (field N)'],
  ['!!null on a value', project({ tail: 'environment:\n    N: !!null x\n' }), undefined, 'spread.yaml:10: cannot load spread.yaml: yaml: cannot decode !!str `x` as a !!null (field N)'],
  ['!!binary bytes that are not UTF-8', project({ tail: 'environment:\n    B: !!binary /w==\n' }), undefined, /^spread\.yaml:10: cannot load spread\.yaml: !!binary value decodes to bytes that are not UTF-8 text.* \(field B\)$/],
  ['yaml syntax', project({ tail: 'environment: [a\n' }), undefined, /^spread\.yaml:\d+: cannot load spread\.yaml: yaml: /],
  ['wrong type', project({ tail: 'exclude: a-string\n' }), undefined, /spread\.yaml:9: .*cannot unmarshal !!str `a-string` into \[\]string \(field exclude\)$/],
  ['list entry of a wrong type', project(), { 's/t': task('a', 'variants: [a, [b]]\n') }, 's/t/task.yaml:3: cannot load s/t/task.yaml: yaml: unmarshal errors: cannot unmarshal !!seq into string (field variants)'],
  ['system entry of a wrong type', project({ backends: '    lxd:\n        systems:\n            - ubuntu-1\n            - [ubuntu-2]\n' }), undefined, 'spread.yaml:7: cannot load spread.yaml: yaml: unmarshal errors: cannot unmarshal !!seq into string (field systems)'],
  ['task without summary', project(), { 's/t': 'execute: x\n' }, /s\/t\/task\.yaml:1: s\/t is missing a summary/],
  ['uppercase task dir', project(), { 's/Bad': task() }, /invalid task name: "s\/Bad"/],
  ['task yaml error', project(), { 's/t': 'summary: [\n' }, /^s\/t\/task\.yaml:\d+: cannot load s\/t\/task\.yaml: yaml: /],
  ['absolute artifact', project(), { 's/t': task('a', 'artifacts: [/etc]\n') }, /s\/t has improper artifact path: \/etc/],
  ['escaping artifact', project(), { 's/t': task('a', 'artifacts: [../x]\n') }, /s\/t has improper artifact path: \.\.\/x/],
  ['unclean artifact', project(), { 's/t': task('a', 'artifacts: [a//b]\n') }, /s\/t has improper artifact path: a\/\/b/],
  // fleetcache backends' own options, checked at load (list and run) with the field's line
  ['ssh without hosts', project({ backends: '    farm:\n        type: ssh\n        host:\n            - address: h\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:4: backend "farm": missing field "hosts"'],
  ['ssh host port', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: h\n              port: 99999\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:8: backend "farm" field hosts.0.port: must be <= 65535'],
  ['ssh host written twice (a port of its own, the default port)', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: h:2222\n            - address: h\n            - address: H\n              port: 2222\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:9: backend "farm" field hosts.2: the same host as hosts.0 (h:2222): a host serves one machine at a time; list it once, with every system it serves'],
  ['ssh host written twice (two spellings of one IPv6 address)', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: "[::1]"\n            - address: "0:0:0:0:0:0:0:1"\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:8: backend "farm" field hosts.1: the same host as hosts.0 ([::1]:22): a host serves one machine at a time; list it once, with every system it serves'],
  ['ssh host written twice (the default port given)', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: h\n            - address: h:22\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:8: backend "farm" field hosts.1: the same host as hosts.0 (h:22): a host serves one machine at a time; list it once, with every system it serves'],
  ['ssh host address invalid', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: "h h"\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:7: backend "farm" field hosts.0.address: invalid address "h h" (expected host[:port])'],
  ['ssh host address with two colons', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: a:b:c\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:7: backend "farm" field hosts.0.address: invalid address "a:b:c" (expected host[:port])'],
  ['ssh host address with an unclosed bracket', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: "[::1"\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:7: backend "farm" field hosts.0.address: invalid address "[::1" (expected host[:port])'],
  ['ssh host address with a port above 65535', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: h:70000\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:7: backend "farm" field hosts.0.address: invalid address "h:70000" (expected host[:port])'],
  ['ssh host address with port 0', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: h:0\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:7: backend "farm" field hosts.0.address: invalid address "h:0" (expected host[:port])'],
  ['ssh host unknown field', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: h\n              bogus: 1\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:8: backend "farm" field hosts.0.bogus: unknown field'],
  ['ssh host misspelt field', project({ backends: '    farm:\n        type: ssh\n        hosts:\n            - address: h\n              pasword: p\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:8: backend "farm" field hosts.0.pasword: unknown field (did you mean "password"?)'],
  ['adhoc duration', project({ backends: '    cloud:\n        type: adhoc\n        allocate: ADDRESS h\n        retry-delay: soon\n        systems: [ubuntu-1]\n' }), undefined, 'spread.yaml:7: backend "cloud" field retry-delay: invalid duration "soon" (examples: 250ms, 30s, 5m, 1h30m)'],
  ['local netns', project({ backends: '    local:\n        netns: "a b"\n        systems: [ubuntu-1]\n' }), undefined, /^spread\.yaml:5: backend "local" field netns: must match pattern/],
];

for (const [label, spread, tasks, message] of loadErrors) {
  t.test(`load error: ${label}`, async (t) => {
    const dir = writeProject(t, { spread, tasks: tasks ?? { 's/t': task() } });
    await t.rejects(loadProject(dir), { code: 'FC_ERR_PROJECT', message });
  });
}

const expandErrors: Array<[string, string, Record<string, string> | undefined, string | RegExp]> = [
  ['relative path', project({ head: 'project: p\npath: rel/dir\n' }), undefined, 'spread.yaml:2: remote project path must be absolute and not /: rel/dir'],
  ['root path', project({ head: 'project: p\npath: /x/..\n' }), undefined, /remote project path must be absolute and not \/: \//],
  ['unknown backend', project(), { 's/t': task('a', 'backends: [nope]\n') }, 's/t/task.yaml:3: s/t refers to unknown backend "nope"'],
  ['unknown backend in a suite', project({ suites: '    s/:\n        summary: s\n        backends: [nope]\n' }), undefined, 'spread.yaml:9: suite s/ refers to unknown backend "nope" (for s/t)'],
  ['failing HOST in key', project({ backends: '    lxd:\n        key: $(HOST:false)\n        systems: [ubuntu-1]\n' }), undefined, '$(HOST:false) in lxd backend key environment returned error: exit status 1'],
  ['no tasks at all', project(), { 's/t': task('a', 'manual: true\n') }, 'cannot find any tasks'],
  ['delta and plain variants in a task', project(), { 's/t': task('a', 'variants: [+a, b]\n') }, 's/t/task.yaml:3: s/t specifies variants both in delta and plain format'],
  ['delta and plain variants in a suite', project({ suites: '    s/:\n        summary: s\n        variants: [a, -b]\n' }), undefined, 'spread.yaml:9: suite s/ specifies variants both in delta and plain format'],
  ['delta and plain variants in a backend', project({ backends: '    lxd:\n        systems: [ubuntu-1]\n        variants: [+a, b]\n' }), undefined, 'spread.yaml:6: backend "lxd" specifies variants both in delta and plain format'],
  ['bad glob', project(), { 's/t': task('a', 'variants: ["[x"]\n') }, /^s\/t\/task\.yaml:3: s\/t has invalid variants pattern "\[x": syntax error in pattern$/],
  ['bad glob in a suite', project({ suites: '    s/:\n        summary: s\n        variants: [a, "b[c"]\n' }), undefined, /^spread\.yaml:9: suite s\/ has invalid variants pattern "b\[c": syntax error in pattern$/],
];
for (const [label, spread, tasks, message] of expandErrors) {
  t.test(`expansion error: ${label}`, async (t) => {
    const p = await load(t, { spread, tasks: tasks ?? { 's/t': task() } });
    t.throws(() => expandJobs(p), { code: 'FC_ERR_PROJECT', message });
  });
}

t.test('an unknown backend in a suite is no error where no task gets it, as in spread (which evaluates backends per task)', async (t) => {
  const suites = '    s/:\n        summary: s\n    e/:\n        summary: empty\n        backends: [+nope]\n    r/:\n        summary: replaced\n        backends: [nope]\n';
  const dir = t.testdir({ 'spread.yaml': project({ suites }), s: { t: { 'task.yaml': task() } }, e: {}, r: { u: { 'task.yaml': task('u', 'backends: [lxd]\n') } } });
  const jobs = expandJobs(await loadProject(dir));
  t.same(jobs.map((j) => j.name), ['lxd:ubuntu-1:r/u', 'lxd:ubuntu-1:s/t'], "a suite without tasks, and one whose task's plain list replaces the suite's");
});

t.test('accepted forms: -1 timeouts, trailing-slash artifacts, null backends, unknown keys, merge keys', async (t) => {
  const p = await load(t, {
    spread: project({
      backends: '    lxd:\n        systems: [ubuntu-1]\n        region: eu-west\n        typo-key: 1\n    gone:\n',
      tail: 'kill-timeout: -1\nwarn-timeout: 1m30s\nvariants: [ignored]\ndefaults: &d\n    summary: merged\n',
      suites: '    s/:\n        <<: *d\n        assets: manifests/s.tt\n',
    }).replace('backends:', 'defaults: &d\n    summary: merged\nbackends:').replace(/\ndefaults: &d\n    summary: merged\n$/, '\n'),
    tasks: { 's/t': task('a', 'artifacts: [out/, some/file]\nassets: tt.json\nsamples: 0\n') },
  });
  t.equal(p.killTimeout, -1);
  t.equal(p.warnTimeout, 90_000);
  t.same(p.backends.map((b) => b.name), ['lxd']);
  t.equal(p.backends[0]!.region, 'eu-west');
  t.equal(p.suites[0]!.summary, 'merged');
  t.equal(p.suites[0]!.assets, 'manifests/s.tt');
  t.same(p.suites[0]!.tasks[0]!.artifacts, ['out', 'some/file']);
  t.equal(p.suites[0]!.tasks[0]!.assets, 'tt.json');
  t.equal(p.suites[0]!.tasks[0]!.samples, 1);
  t.same(expandJobs(p).map((j) => j.name), ['lxd:ubuntu-1:s/t']);
});

t.test('only the first YAML document of a file is read, as yaml.v2 reads it: a trailing `---` or a second document is no error', async (t) => {
  const p = await load(t, {
    spread: `${project()}---\n`,
    tasks: { 's/t': `${task('first')}---\nsummary: second\nexecute: [\n`, 's/u': `---\n${task('only')}---\n` },
  });
  t.same(p.suites[0]!.tasks.map((x) => x.summary), ['first', 'only']);
});

t.test('findProject walks up and accepts .spread.yaml; loading scalars as written', async (t) => {
  const root = t.testdir({ sub: { deeper: {} }, s: { t: { 'task.yaml': task() }, 'not-a-task': {}, 'file.txt': 'x' } });
  writeFileSync(path.join(root, '.spread.yaml'), project({ tail: 'environment:\n    V: 1.10\n    E:\n    B: yes\n' }));
  t.equal(findProject(path.join(root, 'sub', 'deeper')), root);
  const p = await loadProject(root);
  t.same(p.environment, [['V', '1.10'], ['E', ''], ['B', 'yes']]);
  t.same(p.suites[0]!.tasks.map((x) => x.name), ['s/t']);
  const empty = t.testdir({});
  mkdirSync(path.join(empty, 'x'));
  t.throws(() => findProject(path.join(empty, 'x')), { code: 'FC_ERR_PROJECT', message: /cannot find spread.yaml or .spread.yaml/ });
});

t.test('integer fields decode as yaml.v2 decodes a scalar into an int: floats truncated toward zero, 08 a float, quoted and out-of-range refused', async (t) => {
  const systemWith = (workers: string): string => project({ backends: `    lxd:\n        systems:\n            - ubuntu-1:\n                workers: ${workers}\n` });
  const accepted: Array<[string, number]> = [['2.0', 2], ['1.5', 1], ['2.9', 2], ['1e1', 10], ['.5e1', 5], ['08', 8], ['0o10', 8], ['0x1_0', 16], ['010', 8], ['0.5', 1]];
  for (const [written, workers] of accepted) {
    const dir = writeProject(t, { spread: systemWith(written), tasks: { 's/t': task('a', `samples: ${written}\npriority: ${written}\n`) } });
    const p = await loadProject(dir);
    t.equal(p.backends[0]!.systems[0]!.workers, workers, `workers: ${written}`);
    t.equal(p.suites[0]!.tasks[0]!.samples, workers, `samples: ${written}`);
    t.equal(p.suites[0]!.tasks[0]!.priority, written === '0.5' ? 0 : workers, `priority: ${written}`);
  }
  const refused: Array<[string, string]> = [['"2"', '!!str `2`'], ['.nan', '!!float `.nan`'], ['.inf', '!!float `.inf`'], ['1e19', '!!float `1e19`'], ['9223372036854775808', '!!int `9223372036854775808`'], ['2001-01-01', '!!timestamp `2001-01-01`']];
  for (const [written, shown] of refused) {
    const dir = writeProject(t, { spread: systemWith(written), tasks: { 's/t': task() } });
    await t.rejects(loadProject(dir), { code: 'FC_ERR_PROJECT', message: `spread.yaml:7: cannot load spread.yaml: yaml: unmarshal errors: cannot unmarshal ${shown} into int (field workers)` }, `workers: ${written}`);
  }
  const negative = writeProject(t, { spread: systemWith('-1.5'), tasks: { 's/t': task() } });
  await t.rejects(loadProject(negative), { message: /backend "lxd" has system "ubuntu-1" with -1 workers/ }, 'a negative float truncates to a negative count');
});

t.test('an integer past 2^53 is refused with file, line and field: a number would round it, and two priorities spread tells apart would be one', async (t) => {
  const withPriority = (written: string): string => project({ backends: `    lxd:\n        systems:\n            - ubuntu-1:\n                priority: ${written}\n` });
  const past = [`${Number.MAX_SAFE_INTEGER + 1}`, '9007199254740993', '-9007199254740993', '0x20000000000001', '1e17', '-1e19'];
  for (const written of past) {
    const system = writeProject(t, { spread: withPriority(written), tasks: { 's/t': task() } });
    await t.rejects(loadProject(system), { code: 'FC_ERR_PROJECT', message: `spread.yaml:7: cannot load spread.yaml: ${written} is past ${Number.MAX_SAFE_INTEGER} either way, the largest integer fleetcache holds exactly (field priority)` }, `system priority: ${written}`);
    const inTask = writeProject(t, { spread: project(), tasks: { 's/t': task('a', `priority: ${written}\n`) } });
    await t.rejects(loadProject(inTask), { code: 'FC_ERR_PROJECT', message: `s/t/task.yaml:3: cannot load s/t/task.yaml: ${written} is past ${Number.MAX_SAFE_INTEGER} either way, the largest integer fleetcache holds exactly (field priority)` }, `task priority: ${written}`);
  }
  for (const edge of [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]) {
    const p = await loadProject(writeProject(t, { spread: withPriority(String(edge)), tasks: { 's/t': task('a', `priority: ${edge}\n`) } }));
    t.equal(p.backends[0]!.systems[0]!.priority, edge, `system priority ${edge} is held exactly`);
    t.equal(p.suites[0]!.tasks[0]!.priority, edge, `task priority ${edge} is held exactly`);
  }
});

t.test('a key fleetcache ignores that misspells a known one is named with the field it likely meant', async (t) => {
  const spread = project({ backends: '    lxd:\n        sytems: [ubuntu-2]\n        systems: [ubuntu-1]\n' });
  const p = await loadProject(writeProject(t, { spread, tasks: { 's/t': task('a', 'excute: echo\n') } }));
  t.same(p.ignoredKeys, [
    'spread.yaml:5: "sytems" is not a field of spread.Backend fleetcache knows (did you mean "systems"?): ignored',
    's/t/task.yaml:3: "excute" is not a field of spread.Task fleetcache knows (did you mean "execute"?): ignored',
  ]);
});
