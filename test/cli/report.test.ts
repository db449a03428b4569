// `fleetcache report`: the latest run's ledger by default, a clear not-found otherwise.
import t from 'tap';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT } from '../../src/errors.js';
import type { Ledger } from '../../src/report/ledger.js';
import { runCli } from '../helpers/cli.js';

const ledger = (run: string, actual: number): Ledger => ({
  run,
  project: 'p',
  machines: 2,
  links: [{ link: 'controller → origin (project)', actualBytes: actual, naiveBytes: 1000 }],
  caches: [],
  originEgress: { actual, naive: 2000 },
});

t.test('no reports: exit 4 with a message that says what to do', async (t) => {
  const res = await runCli(['report', '--data', t.testdir()]);
  t.equal(res.code, EXIT.notFound);
  t.match(res.stderr, /no run reports in .*reports: run `fleetcache run` first/);
});

t.test('the latest run by default, a named one, JSON and HTML', async (t) => {
  const data = t.testdir();
  await mkdir(join(data, 'reports'));
  await writeFile(join(data, 'reports', '20261123T100000Z-aaaaaa.json'), JSON.stringify(ledger('20261123T100000Z-aaaaaa', 100)));
  await writeFile(join(data, 'reports', '20261123T110000Z-bbbbbb.json'), JSON.stringify(ledger('20261123T110000Z-bbbbbb', 50)));
  const latest = await runCli(['report', '--data', data, '--html', join(data, 'r.html')]);
  t.equal(latest.code, 0);
  t.match(latest.stdout, /run 20261123T110000Z-bbbbbb/);
  t.match(await readFile(join(data, 'r.html'), 'utf8'), /data-testid="origin-egress">50 B</);
  const named = await runCli(['report', '--data', data, '--run', '20261123T100000Z-aaaaaa', '--json']);
  t.equal((JSON.parse(named.stdout) as Ledger).originEgress.actual, 100);
  const missing = await runCli(['report', '--data', data, '--run', 'nope']);
  t.equal(missing.code, EXIT.notFound);
  const escape = await runCli(['report', '--data', data, '--run', '../reports/20261123T100000Z-aaaaaa']);
  t.equal(escape.code, EXIT.usage, 'a run id that leaves the reports directory is refused');
  t.match(escape.stderr, /run id: slash/);
});

t.test('a run with no naive bytes (every machine reused, no asset): no share of them, in the HTML as in the text', async (t) => {
  const data = t.testdir();
  await mkdir(join(data, 'reports'));
  await writeFile(join(data, 'reports', '20261123T140000Z-eeeeee.json'), JSON.stringify({ ...ledger('20261123T140000Z-eeeeee', 300), originEgress: { actual: 300, naive: 0 } }));
  const res = await runCli(['report', '--data', data, '--html', join(data, 'r.html')]);
  t.equal(res.code, 0, res.stderr);
  t.match(res.stdout, /origin egress: 300 B \(-\)/);
  const html = await readFile(join(data, 'r.html'), 'utf8');
  t.match(html, /origin-egress">300 B<\/strong>, with no naive figure to compare it to/);
  t.notMatch(html, /0\.0% of the 0 B/);
});

t.test("without --data, inside a spread project: the project's .fleetcache/, where run keeps its reports", async (t) => {
  const project = t.testdir({ 'spread.yaml': 'project: p\n', tests: {} });
  await mkdir(join(project, '.fleetcache', 'reports'), { recursive: true });
  await writeFile(join(project, '.fleetcache', 'reports', '20261123T120000Z-cccccc.json'), JSON.stringify(ledger('20261123T120000Z-cccccc', 7)));
  const cwd = process.cwd();
  process.chdir(join(project, 'tests'));
  t.teardown(() => process.chdir(cwd));
  const res = await runCli(['report']);
  t.equal(res.code, 0, res.stderr);
  t.match(res.stdout, /run 20261123T120000Z-cccccc/);
});

t.test('a report that cannot be read is named, never "run undefined"', async (t) => {
  const data = t.testdir();
  await mkdir(join(data, 'reports'));
  await writeFile(join(data, 'reports', '20261123T130000Z-dddddd.json'), '{"run": "20261123T13');
  const latest = await runCli(['report', '--data', data]);
  t.equal(latest.code, EXIT.notFound);
  t.notMatch(latest.stderr, /run undefined/);
  t.match(latest.stderr, /20261123T130000Z-dddddd\.json.*not a readable run report/);
  const named = await runCli(['report', '--data', data, '--run', '20261123T130000Z-dddddd']);
  t.match(named.stderr, /20261123T130000Z-dddddd\.json.*not a readable run report/);
  const missing = await runCli(['report', '--data', data, '--run', 'nope']);
  t.match(missing.stderr, /^fleetcache: error: no report for run nope in /, 'an absent one is still "no report"');
});

t.test('a report of another shape is refused with its first wrong field, never a TypeError', async (t) => {
  const data = t.testdir();
  await mkdir(join(data, 'reports'));
  const file = join(data, 'reports', '20261123T150000Z-ffffff.json');
  const good = ledger('20261123T150000Z-ffffff', 10);
  const cases: Array<[unknown, RegExp]> = [
    [{ run: good.run, project: 'p' }, /\(machines: should be a number\)/],
    [[], /\(the report: should be an object\)/],
    [null, /\(the report: should be an object\)/],
    [{ ...good, links: [{ link: 'x', actualBytes: 1, naiveBytes: '2' }] }, /\(links\[0\]\.naiveBytes: should be a number\)/],
    [{ ...good, caches: [{ region: 'a', url: 'http://a', hits: 1, misses: 0, collapsed: 0 }] }, /\(caches\[0\]\.hitRatio: should be a number\)/],
    [{ ...good, originEgress: undefined }, /\(originEgress: should be an object\)/],
  ];
  for (const [value, message] of cases) {
    await writeFile(file, JSON.stringify(value));
    for (const flags of [[], ['--json'], ['--html', join(data, 'r.html')]]) {
      const res = await runCli(['report', '--data', data, ...flags]);
      t.equal(res.code, EXIT.notFound, `${JSON.stringify(value)} ${flags.join(' ')}`);
      t.match(res.stderr, /20261123T150000Z-ffffff\.json: not a readable run report/);
      t.match(res.stderr, message);
      t.notMatch(res.stderr, /TypeError:|Cannot read properties/);
    }
  }
  await writeFile(file, JSON.stringify({ ...good, interrupted: { signal: 'SIGINT', abortedJobs: 2 } }));
  t.equal((await runCli(['report', '--data', data])).code, 0, 'a whole report is read');
});
