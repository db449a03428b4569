// spread.yaml and task.yaml scalars decoded into spread's int, int64 (OptionalInt) and bool
// fields, and mapping keys decoded into strings, as yaml.v2 (2.4.0) decodes them: each value
// and each refusal here is what yaml.v2 gives for the same text.
import t, { type Test } from 'tap';
import { loadProject, type Project } from '../../src/spread/index.js';
import { levelTimeouts } from '../../src/spread/scripts.js';
import { task, writeProject } from './helpers.js';

/** A project whose one system (ubuntu-1, line 6) has `systemLines` from line 7 on; `taskLines` go to s/t's task.yaml from line 3. */
function files(systemLines: string, taskLines = '', tail = ''): { spread: string; tasks: Record<string, string> } {
  const spread = `project: p\npath: /p\nbackends:\n    lxd:\n        systems:\n            - ubuntu-1:\n${systemLines}suites:\n    s/:\n        summary: s\n${tail}`;
  return { spread, tasks: { 's/t': task('a', taskLines) } };
}

async function loaded(t: Test, systemLines: string, taskLines = '', tail = ''): Promise<Project> {
  return loadProject(writeProject(t, files(systemLines, taskLines, tail)));
}

async function refused(t: Test, systemLines: string, message: string, taskLines = '', tail = ''): Promise<void> {
  await t.rejects(loaded(t, systemLines, taskLines, tail), { code: 'FC_ERR_PROJECT', message }, JSON.stringify(systemLines + taskLines + tail));
}

const field = (name: string, value: string): string => `                ${name}: ${value}\n`;

t.test('an explicit tag counts in integer fields: !!int "2" and !!float "2" are 2; !!str 3 and ! 3 are strings, refused', async (t) => {
  const accepted: Array<[string, number]> = [['!!int "2"', 2], ["!!int '-3'", -3], ['!!float "2"', 2], ['!!int "0x_10"', 16], ['!!float 2.5', 2]];
  for (const [written, want] of accepted) {
    const p = await loaded(t, field('priority', written), `samples: ${written}\npriority: ${written}\n`);
    t.equal(p.backends[0]!.systems[0]!.priority, want, `system priority: ${written}`);
    t.equal(p.suites[0]!.tasks[0]!.priority, want, `task priority: ${written}`);
    t.equal(p.suites[0]!.tasks[0]!.samples, want, `samples: ${written}`);
  }
  t.equal((await loaded(t, field('workers', '!!int "3"'))).backends[0]!.systems[0]!.workers, 3, 'workers: !!int "3"');
  const at = 'spread.yaml:7: cannot load spread.yaml: yaml:';
  await refused(t, field('workers', '!!str 3'), `${at} unmarshal errors: cannot unmarshal !!str \`3\` into int (field workers)`);
  await refused(t, field('workers', '! 3'), `${at} unmarshal errors: cannot unmarshal ! \`3\` into int (field workers)`);
  await refused(t, field('workers', '!!binary Mg=='), `${at} unmarshal errors: cannot unmarshal !!binary \`Mg==\` into int (field workers)`);
  await refused(t, field('workers', '!!int abc'), `${at} cannot decode !!str \`abc\` as a !!int (field workers)`);
  await refused(t, field('workers', '!!int 2001-01-01'), `${at} cannot decode !!str \`2001-01-01\` as a !!int (field workers)`);
  await refused(t, field('workers', '!!float 18446744073709551615'), `${at} cannot decode !!int \`18446744073709551615\` as a !!float (field workers)`);
  // spread's OptionalInt decodes into an int64, which the message names
  await refused(t, field('priority', '"2"'), `${at} unmarshal errors: cannot unmarshal !!str \`2\` into int64 (field priority)`);
});

t.test('a boolean field takes a scalar resolving to a YAML 1.1 boolean: a quoted "true" is a string, refused', async (t) => {
  const accepted: Array<[string, boolean]> = [['yes', true], ['Off', false], ['!!bool "yes"', true], ["!!bool 'off'", false], ['!!null', false]];
  for (const [written, want] of accepted) {
    const p = await loaded(t, field('manual', written) + field('secure-boot', written), `manual: ${written}\n`);
    t.equal(p.backends[0]!.systems[0]!.manual, want, `system manual: ${written}`);
    t.equal(p.backends[0]!.systems[0]!.secureBoot, want, `secure-boot: ${written}`);
    t.equal(p.suites[0]!.tasks[0]!.manual, want, `task manual: ${written}`);
  }
  await refused(t, '', 's/t/task.yaml:3: cannot load s/t/task.yaml: yaml: unmarshal errors: cannot unmarshal !!str `true` into bool (field manual)', 'manual: "true"\n');
  const at = 'spread.yaml:7: cannot load spread.yaml: yaml:';
  await refused(t, field('manual', "'yes'"), `${at} unmarshal errors: cannot unmarshal !!str \`yes\` into bool (field manual)`);
  await refused(t, field('manual', '!!str true'), `${at} unmarshal errors: cannot unmarshal !!str \`true\` into bool (field manual)`);
  await refused(t, field('manual', '! yes'), `${at} unmarshal errors: cannot unmarshal ! \`yes\` into bool (field manual)`);
  await refused(t, field('manual', '1'), `${at} unmarshal errors: cannot unmarshal !!int \`1\` into bool (field manual)`);
  await refused(t, field('secure-boot', '!!bool 1'), `${at} cannot decode !!int \`1\` as a !!bool (field secure-boot)`);
});

t.test('mapping keys decode into strings as values do: !!binary keys base64-decoded, a tag a key does not fit refused', async (t) => {
  const b64 = (text: string): string => `!!binary ${Buffer.from(text).toString('base64')}`;
  const p = await loaded(t, `                ${b64('workers')}: 2\n`, `${b64('priority')}: 4\n`, `environment:\n    ${b64('NAME')}: value\n`);
  t.equal(p.backends[0]!.systems[0]!.workers, 2, 'a field name');
  t.equal(p.suites[0]!.tasks[0]!.priority, 4, "a task file's field name");
  t.same(p.environment, [['NAME', 'value']], 'an environment variable');
  await refused(t, '', 'spread.yaml:11: cannot load spread.yaml: yaml: cannot decode !!str `abc` as a !!int', '', 'environment:\n    !!int abc: x\n');
  await refused(t, '', 'spread.yaml:11: cannot load spread.yaml: yaml: unmarshal errors: cannot unmarshal !!seq into string', '', 'environment:\n    ? [a]\n    : x\n');
});

t.test('a `<<` key merges untagged or tagged !!merge; tagged !!str it is a key named <<', async (t) => {
  const tail = 'defaults: &d\n    kill-timeout: 1m\n';
  const merged = await loaded(t, '', '', `${tail}!!merge <<: *d\n`);
  t.equal(merged.killTimeout, 60_000);
  const named = await loaded(t, '', '', `${tail}!!str <<: *d\n`);
  t.equal(named.killTimeout, undefined);
  t.match(named.ignoredKeys.at(-1), /^spread\.yaml:12: "<<" is not a field of spread\.Project/);
});

t.test("resolve.go's words are its own: `constructor` and `toString` are strings, not numbers", async (t) => {
  const at = 'spread.yaml:7: cannot load spread.yaml: yaml:';
  await refused(t, field('workers', 'constructor'), `${at} unmarshal errors: cannot unmarshal !!str \`constructor\` into int (field workers)`);
  await refused(t, field('priority', 'toString'), `${at} unmarshal errors: cannot unmarshal !!str \`toString\` into int64 (field priority)`);
  await refused(t, '', 'spread.yaml:11: cannot load spread.yaml: yaml: cannot decode !!str `constructor` as a !!float (field K)', '', 'environment:\n    K: !!float constructor\n');
});

t.test("a number starting with a dot is read as Go's ParseFloat reads it: underscores between digits, out of range a string", async (t) => {
  const accepted: Array<[string, number]> = [['.5_0e1', 5], ['.2_5e1_0', 2_500_000_000], ['+.5e1', 5]];
  for (const [written, want] of accepted) {
    t.equal((await loaded(t, field('workers', written))).backends[0]!.systems[0]!.workers, want, `workers: ${written}`);
  }
  const at = 'spread.yaml:7: cannot load spread.yaml: yaml:';
  for (const written of ['._5', '.5__0', '.5_', '.5e_1', '.5e400']) {
    await refused(t, field('workers', written), `${at} unmarshal errors: cannot unmarshal !!str \`${written}\` into int (field workers)`);
  }
  await refused(t, '', 'spread.yaml:11: cannot load spread.yaml: yaml: cannot decode !!str `.5e400` as a !!float (field K)', '', 'environment:\n    K: !!float .5e400\n');
});

t.test("not followed: yaml.v2's reading of a sign after 0b (0b-11 is -3 there), which is no integer in Go or YAML 1.1", async (t) => {
  await refused(t, field('workers', '0b-11'), 'spread.yaml:7: cannot load spread.yaml: yaml: unmarshal errors: cannot unmarshal !!str `0b-11` into int (field workers)');
  t.equal((await loaded(t, field('priority', '-0b11'))).backends[0]!.systems[0]!.priority, -3, 'the sign before it, as Go reads it');
});

t.test("a timeout is Go's time.ParseDuration within int64 nanoseconds: past it refused, under a nanosecond not set", async (t) => {
  const timeout = async (written: string): Promise<number | undefined> => (await loaded(t, '', '', `kill-timeout: ${written}\n`)).killTimeout;
  t.equal(await timeout('2562047h47m16.854775807s'), Number(2n ** 63n - 1n) / 1e6, 'the longest Go duration');
  t.equal(await timeout('1.5µs'), 0.0015);
  t.equal(await timeout('0.1234567890123456789h'), 444_444.440444, 'fraction digits as Go takes them, truncated to the nanosecond');
  t.equal(await timeout('-0.000001ms'), -1, 'minus one nanosecond: no timeout');
  // spread reads a zero duration as not set: the outer level's timeout or the default applies
  t.equal(await timeout('0.5ns'), 0, 'under a nanosecond');
  t.equal(levelTimeouts([{ warnTimeout: undefined, killTimeout: await timeout('0.5ns') }]).kill, levelTimeouts([]).kill, 'under a nanosecond: the default kill timeout');
  for (const written of ['2562047h47m16.854775808s', '9999999h', '99999999999999999999ns', '5constructor']) {
    await refused(t, '', `spread.yaml:10: cannot load spread.yaml: timeout must look like 10s or 15m or 1.5h, not "${written}" (field kill-timeout)`, '', `kill-timeout: ${written}\n`);
  }
});

t.test('a scalar where a mapping or list belongs is named by its tag, explicit or resolved, as yaml.v2 names it', async (t) => {
  const cases: Array<[string, string]> = [['environment: 5', '!!int `5` into map[string]string (field environment)'], ['exclude: yes', '!!bool `yes` into []string (field exclude)'], ['rename: !!float 5', '!!float `5` into []string (field rename)'], ['exclude: "5"', '!!str `5` into []string (field exclude)']];
  for (const [written, message] of cases) {
    await refused(t, '', `spread.yaml:10: cannot load spread.yaml: yaml: unmarshal errors: cannot unmarshal ${message}`, '', `${written}\n`);
  }
});

t.test("an explicit !!timestamp takes what Go's time.Parse takes in yaml.v2's layouts: dates in range, a zone after T only", async (t) => {
  const env = (written: string): string => `environment:\n    K: !!timestamp ${written}\n`;
  for (const written of ['2000-02-29', '2001-1-1T1:2:3Z', '2001-1-1t23:59:59-05:00', '2001-12-31 23:59:59', '2001-1-1 1:2:3.5']) {
    t.same((await loaded(t, '', '', env(written))).environment, [['K', written]], written);
  }
  for (const written of ['2001-13-01', '2001-02-29', '1900-02-29', '2001-4-31', '2001-0-1', '2001-1-1T1:2:3', '2001-1-1 1:2:3Z', '2001-1-1t24:00:00Z', '2001-1-1T10:60:00Z']) {
    await refused(t, '', `spread.yaml:11: cannot load spread.yaml: yaml: cannot decode !!str \`${written}\` as a !!timestamp (field K)`, '', env(written));
  }
  await refused(t, field('workers', '2001-1-1 1:2:3,5'), 'spread.yaml:7: cannot load spread.yaml: yaml: unmarshal errors: cannot unmarshal !!timestamp `2001-1-1 1:2:3,5` into int (field workers)');
});
