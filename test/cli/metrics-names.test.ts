// /-/metrics of a real origin (in this process: its metrics are buildOrigin's) and cache
// (a process, and one with workers, whose metrics their primary gathers) against Prometheus'
// naming rules, as `promtool check metrics` lints them: what an operator's CI would run;
// and against deploy/OPERATIONS.md, whose alerts and dashboards are written with its names.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { lintMetricNames } from '../helpers/prom-lint.js';
import { startOrigin } from '../helpers/origin.js';
import { REPO_ROOT, startServerProcess, type RunningServer } from '../helpers/processes.js';

/** The metric names deploy/OPERATIONS.md gives, each with the labels it names (`name{a,b}`), and its wildcards (`fleetcache_process_*`) as prefixes. */
function documentedMetrics(guide: string): { names: Map<string, Set<string>>; prefixes: string[] } {
  const names = new Map<string, Set<string>>();
  const prefixes: string[] = [];
  for (const [, name, labels] of guide.matchAll(/\b(fleetcache_[a-z0-9_]*[a-z0-9*])(?:\{([a-z_,]+)\})?/g)) {
    if (name!.endsWith('*')) { prefixes.push(name!.slice(0, -1)); continue; }
    const known = names.get(name!) ?? new Set<string>();
    for (const label of labels?.split(',') ?? []) known.add(label);
    names.set(name!, known);
  }
  return { names, prefixes };
}

/** The families a Prometheus text declares (`# TYPE`), by name, and each sample's label names. */
function exposedMetrics(text: string): { types: Map<string, string>; samples: Array<{ family: string; labels: string[]; line: string }> } {
  const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  const samples = [...text.matchAll(/^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? \S+$/gm)].map(([line, name, labels]) => ({
    family: types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, ''),
    labels: [...(labels ?? '').matchAll(/([a-z_]+)="/g)].map((m) => m[1]!),
    line: line!,
  }));
  return { types, samples };
}

t.test('the metrics of an origin and of caches follow the naming rules promtool checks, and are those deploy/OPERATIONS.md names', async (t) => {
  const dir = t.testdir();
  // retention: its metrics are exposed only with it (30 days, hourly, as a config file would give)
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin'), retention: { maxAgeMs: 30 * 86_400_000, keepBases: 3, intervalMs: 3_600_000 } });
  const single = await startServerProcess(t, ['cache', '--upstream', origin.url, '--listen', '127.0.0.1:0', '--data', join(dir, 'cache')]);
  const workers = await startServerProcess(t, ['cache', '--upstream', origin.url, '--listen', '127.0.0.1:0', '--data', join(dir, 'workers'), '--workers', '2']);
  // A miss the origin answers 404 and a digest the cache refuses itself, so that labelled series have samples.
  for (const cache of [single, workers]) {
    for (const path of [`/cas/sha256/${'0'.repeat(64)}`, '/cas/sha256/not-hex']) await (await request(`${cache.url}${path}`)).body.dump();
  }
  const { names: documented, prefixes } = documentedMetrics(readFileSync(join(REPO_ROOT, 'deploy/OPERATIONS.md'), 'utf8'));
  const families = new Map<string, string>();
  const servers: Array<[what: string, server: Pick<RunningServer, 'url'>, ownLabels: readonly string[]]> = [['origin', origin, ['role']], ['cache', single, ['role', 'region']], ['cache with workers', workers, ['role', 'region']]];
  for (const [what, server, ownLabels] of servers) {
    const res = await request(`${server.url}/-/metrics`);
    t.equal(res.statusCode, 200, `${what}: /-/metrics answers`);
    const text = await res.body.text();
    t.match(text, /^# TYPE fleetcache_\S+ counter$/m, `${what}: metrics were read`);
    t.same(lintMetricNames(text), [], `${what}: no problem`);
    const { types, samples } = exposedMetrics(text);
    for (const [name, type] of types) families.set(name, type);
    t.same([...types.keys()].filter((name) => !documented.has(name) && !prefixes.some((p) => name.startsWith(p))), [], `${what}: every metric it exposes is in OPERATIONS.md`);
    t.same(samples.filter((s) => !ownLabels.every((label) => s.labels.includes(label))).map((s) => s.line), [], `${what}: every series has the labels ${ownLabels.join(', ')}`);
    const mislabelled = samples.filter((s) => documented.has(s.family)).filter((s) => {
      const labels = s.labels.filter((label) => !ownLabels.includes(label) && label !== 'le');
      return labels.sort().join(',') !== [...documented.get(s.family)!].sort().join(',');
    });
    t.same(mislabelled.map((s) => s.line), [], `${what}: every series has the labels OPERATIONS.md gives its metric`);
  }
  const histogramSeries = (name: string) => /_(bucket|sum|count)$/.test(name) && families.get(name.replace(/_(bucket|sum|count)$/, '')) === 'histogram';
  t.same([...documented.keys()].filter((name) => !families.has(name) && !histogramSeries(name)), [], 'every metric OPERATIONS.md names is exposed');
});
