// The ledger: per-link figures from the servers' counters before and after a run.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { buildLedger, formatLedger, snapshotFleet, type FleetSnapshot } from '../../src/report/ledger.js';
import { startOrigin } from '../helpers/origin.js';
import { ledgerHtml } from '../../src/report/html.js';
import { REPO_ROOT } from '../helpers/processes.js';

const T0 = '2026-12-03T10:00:00.000Z';
const RUN_START = '2026-12-03T12:00:00.000Z';
const cache = (served: number, upstream: number, hits: number, misses: number, collapsed = 0, startedAt = T0) => ({
  startedAt,
  kinds: { cas: { bytesServed: served, bytesUpstream: upstream, hits, misses, collapsed } },
});
const figures = { run: 'r1', project: 'p', bytesSent: 50, basesReceived: 0, fullUploadBytes: 1000, manifestBytes: 0, assetNaiveByRegion: {}, artifactBytes: 0 };

t.test('actual against naive, per link and per cache, from counter differences', async (t) => {
  const before: FleetSnapshot = {
    takenAt: RUN_START,
    origin: { totals: { bytesIn: 0, bytesOut: 1000 } },
    caches: [
      { region: 'a', url: 'http://a', stats: cache(500, 500, 1, 1) },
      { region: 'b', url: 'http://b', stats: undefined },
    ],
  };
  const after: FleetSnapshot = {
    origin: { totals: { bytesIn: 50, bytesOut: 1300 } },
    caches: [
      { region: 'a', url: 'http://a', stats: cache(4500, 600, 7, 2, 3) },
      { region: 'b', url: 'http://b', stats: cache(3000, 200, 3, 1, 0, '2026-12-03T12:00:05.000Z') },
    ],
  };
  const ledger = buildLedger(before, after, {
    run: 'r1',
    project: 'p',
    bytesSent: 50,
    basesReceived: 0,
    fullUploadBytes: 1000,
    manifestBytes: 0,
    machinesByRegion: { a: 3, b: 2 },
    assetNaiveByRegion: { a: 100 },
    artifactBytes: 7,
  });
  t.equal(ledger.machines, 5);
  t.same(ledger.links[0], { link: 'controller → origin (project)', actualBytes: 50, naiveBytes: 1000 });
  t.same(ledger.links[1], { link: 'origin → cache a', actualBytes: 100, naiveBytes: 3100 });
  t.same(ledger.links[2], { link: 'cache a → machines', actualBytes: 4000, naiveBytes: 3100 });
  // a cache that was down before the run and started since counts from zero
  t.same(ledger.links[3], { link: 'origin → cache b', actualBytes: 200, naiveBytes: 2000 });
  t.same(ledger.originEgress, { actual: 300, naive: 5100 });
  t.equal(ledger.caches[0]!.hitRatio, 9 / 10, 'requests that joined a fill fetched nothing of their own');
  const text = formatLedger(ledger);
  t.match(text, /controller → origin \(project\)\s+50 B\s+1000 B\s+95\.0%/);
  t.match(text, /cache a → machines\s+3\.9 KiB\s+3\.0 KiB\s+-29\.0%/, 'more than naive is shown as it is');
  const near = formatLedger({ ...ledger, links: [{ link: 'cache a → machines', actualBytes: 3101, naiveBytes: 3100 }] });
  t.match(near, /cache a → machines\s+3\.0 KiB\s+3\.0 KiB\s+0\.0%/, 'a few bytes more than naive is 0.0%, not -0.0%');
  t.match(text, /cache a: 6 hits, 3 joined a fill, 1 miss, hit ratio 90\.0%/);
  t.match(text, /origin egress: 300 B \(5\.9% of naive\)/);
  const down = buildLedger(before, { ...after, caches: [after.caches[0]!, { ...after.caches[1]!, stats: undefined }] }, {
    run: 'r1', project: 'p', bytesSent: 50, basesReceived: 0, fullUploadBytes: 1000, manifestBytes: 0, machinesByRegion: { a: 3 }, assetNaiveByRegion: {}, artifactBytes: 0,
  });
  t.match(formatLedger(down), /cache b: unreachable after the run, no figures/, 'a cache whose figures could not be read says so');
  t.match(formatLedger(down), /origin → cache b\s+\?\s/, 'its links are unknown, not 100% saved');
  const downHtml = ledgerHtml(down);
  t.match(downHtml, />unreachable after the run, no figures</, 'the HTML says so too');
  t.notMatch(downHtml, /0\.0% \(0 hits/, 'with no hit ratio of 0.0% for it');
  t.match(downHtml, /90\.0% \(6 hits, 3 joined a fill, 1 miss\)/, 'the cache that was read has its own');
  t.match(text, /naive: every machine downloading the compressed project tar/, 'the baseline is stated');
  const html = ledgerHtml(ledger);
  t.match(html, /<svg/);
  t.match(html, /data-testid="origin-egress">300 B</);
  t.notMatch(html, /src="http|href="http/, 'nothing loaded from elsewhere');
  t.match(html, /<th>actual \(bytes\)<\/th><th>naive \(bytes\)<\/th>/, 'the unit of the table of figures is stated');
});

t.test('the HTML page: its SVG coordinates are rounded to a tenth of a pixel, its text escaped', async (t) => {
  const snapshot = (out: number, served: number): FleetSnapshot => ({
    origin: { totals: { bytesIn: 0, bytesOut: out } },
    caches: [{ region: 'a<b>&"c\'', url: 'http://a', stats: cache(served, out, 2, 1) }],
  });
  // byte counts whose share of the largest is no round figure (1/3, 1/7 of the chart's width)
  const ledger = buildLedger(snapshot(0, 0), snapshot(7001, 3 * 7001), {
    run: 'r1', project: 'p<&>', bytesSent: 1000, basesReceived: 0, fullUploadBytes: 7001, manifestBytes: 0, machinesByRegion: { 'a<b>&"c\'': 3 }, assetNaiveByRegion: {}, artifactBytes: 0,
  });
  const html = ledgerHtml(ledger);
  const svg = html.match(/<svg[^]*?<\/svg>/g)!.join('');
  const coordinates = [...svg.matchAll(/ (?:x|y|width|height)="([^"]*)"/g)].map((m) => m[1]!);
  t.ok(coordinates.length > 8, `${coordinates.length} coordinates`);
  t.same(coordinates.filter((c) => !/^\d+(\.\d)?$/.test(c)), [], 'each a number with at most one decimal');
  t.match(html, /of p&#60;&#38;&#62;/, "the project's name escaped");
  t.match(html, />origin → cache a&#60;b&#62;&#38;&#34;c&#39;</, "a region's name escaped, quotes too");
  t.notMatch(html, /a<b>/);
});

t.test('two caches in one region: one pair of links, its naive bytes counted once', async (t) => {
  const snapshot = (a1: number, a2: number): FleetSnapshot => ({
    origin: { totals: { bytesIn: 0, bytesOut: 0 } },
    caches: [
      { region: 'a', url: 'http://a1', stats: cache(a1, a1 / 10, a1 / 100, 1) },
      { region: 'a', url: 'http://a2', stats: cache(a2, a2 / 10, a2 / 100, 1) },
    ],
  });
  const ledger = buildLedger(snapshot(0, 0), snapshot(3000, 1000), {
    run: 'r1', project: 'p', bytesSent: 0, basesReceived: 3000, fullUploadBytes: 1000, manifestBytes: 0, machinesByRegion: { a: 4 }, assetNaiveByRegion: {}, artifactBytes: 0,
  });
  t.same(ledger.links[1], { link: 'origin → controller (bases)', actualBytes: 3000, naiveBytes: 0 }, 'bases the push downloaded cross the slow link too');
  t.match(formatLedger(ledger), /origin → controller \(bases\)\s+2\.9 KiB\s+0 B\s+-/);
  t.same(ledger.links.slice(2, 4), [
    { link: 'origin → 2 caches a', actualBytes: 400, naiveBytes: 4000 },
    { link: '2 caches a → machines', actualBytes: 4000, naiveBytes: 4000 },
  ]);
  t.equal(ledger.links.length, 5, 'and the artifacts link');
  t.same(ledger.originEgress.naive, 4000);
  const text = formatLedger(ledger);
  t.match(text, /cache a \(http:\/\/a1\): 30 hits/, 'each cache named by its URL');
  t.match(text, /cache a \(http:\/\/a2\): 10 hits/);
  const html = ledgerHtml(ledger);
  t.match(html, />cache a \(http:\/\/a1\)<\/text>/, 'and so in the HTML, not two bars both named "cache a"');
  t.match(html, />cache a \(http:\/\/a2\)<\/text>/);
});

t.test('the columns line up whatever the length of the link names', async (t) => {
  const text = formatLedger({
    run: 'r1', project: 'p', machines: 2, caches: [], originEgress: { actual: 0, naive: 0 },
    links: [
      { link: 'controller → origin (project)', actualBytes: 50, naiveBytes: 1000 },
      { link: 'region-southeast cache → controller (artifacts)', actualBytes: 2048, naiveBytes: 2048 },
    ],
  });
  // the last column is right-aligned: lines of one length have every column in its place
  const width = 2 + 'region-southeast cache → controller (artifacts)'.length + 1 + 11 + 1 + 11 + 1 + 8;
  t.same(text.split('\n').slice(1, 4).map((line) => line.length), [width, width, width], 'heading, short name and long name: one width, the longest name\'s');
});

t.test('the columns line up whatever the width of the figures (a partial one, a saving far below zero)', async (t) => {
  const links = [
    { link: 'controller → origin (project)', actualBytes: 50, naiveBytes: 1000 },
    { link: 'origin → cache a', actualBytes: 1023.9 * 1024 * 1024, naiveBytes: 2_000_000, partial: true },
    { link: 'cache a → machines', actualBytes: 2_000_000, naiveBytes: 1000, partial: true },
  ];
  const lines = formatLedger({ run: 'r1', project: 'p', machines: 2, caches: [], originEgress: { actual: 0, naive: 0 }, links }).split('\n').slice(1, 5);
  t.match(lines[2], /≥ 1023\.9 MiB/);
  t.match(lines[3], /≤ -199900\.0%/);
  t.same(new Set(lines.map((line) => line.length)).size, 1, 'heading and rows: one width');
  // each column ends where the heading's does
  const ends = (line: string, cell: RegExp): number => { const m = cell.exec(line)!; return m.index + m[0].length; };
  for (const [i, cell] of [[2, /≥ 1023\.9 MiB/], [3, /≥ 1\.9 MiB/]] as const) t.equal(ends(lines[i]!, cell), ends(lines[0]!, /actual/), `row ${i}: its actual under the heading`);
});

t.test('a server restarted during the run: counted since its restart, never below zero or above naive', async (t) => {
  const at = (served: number, upstream: number, startedAt = T0): FleetSnapshot => ({
    takenAt: RUN_START,
    origin: { startedAt, totals: { bytesIn: 0, bytesOut: upstream } },
    caches: [{ region: 'a', url: 'http://a', stats: cache(served, upstream, served / 100, 1, 0, startedAt) }],
  });
  const restarted = buildLedger(at(20_000_000, 8_000_000), at(4_900_000, 600, '2026-12-03T12:00:01.000Z'), { ...figures, machinesByRegion: { a: 1 }, fullUploadBytes: 4_900_000 });
  t.same(restarted.caches[0]!.coverage, 'since-restart');
  t.same(restarted.links[1], { link: 'origin → cache a', actualBytes: 600, naiveBytes: 4_900_000, partial: true });
  t.same(restarted.links[2], { link: 'cache a → machines', actualBytes: 4_900_000, naiveBytes: 4_900_000, partial: true });
  t.equal(restarted.originEgress.actual, null, 'the origin restarted too: its egress is unknown');
  const text = formatLedger(restarted);
  t.match(text, /origin → cache a\s+≥ 600 B\s+4\.7 MiB\s+≤ 100\.0%/);
  t.match(text, /cache a: .*\(restarted during the run: counted since its restart\)/);
  t.match(text, /origin egress: \?/);
  t.notMatch(text, /-\d/, 'no negative figure');
  t.ok([...text.matchAll(/([\d.]+)%/g)].every((m) => Number(m[1]) <= 100), 'no share above 100%');
  // counters that went down say so even without a start time (an older cache)
  const old = (served: number): FleetSnapshot => ({ caches: [{ region: 'a', url: 'http://a', stats: { kinds: cache(served, 0, 1, 1).kinds } }], origin: undefined });
  t.same(buildLedger(old(5000), old(100), { ...figures, machinesByRegion: { a: 1 } }).caches[0]!.coverage, 'since-restart');
  // up before the run but unreachable then: its lifetime counters are not the run's
  const unreadBefore: FleetSnapshot = { takenAt: RUN_START, origin: undefined, caches: [{ region: 'a', url: 'http://a', stats: undefined }] };
  const unknown = buildLedger(unreadBefore, at(9_000_000, 9_000_000), { ...figures, machinesByRegion: { a: 1 } });
  t.same(unknown.caches[0]!.coverage, 'none');
  t.equal(unknown.links[1]!.actualBytes, null);
  t.match(formatLedger(unknown), /cache a: unreachable before the run, no figures/);
});

t.test('mirror bytes are not the origin\'s, and the runner\'s own downloads are not the machines\'', async (t) => {
  // The runner's artifacts are counted under their own kind, as a cache counts them.
  const snap = (mirrorServed: number, mirrorUp: number, casServed: number, casUp: number, artifacts = 0): FleetSnapshot => ({
    takenAt: RUN_START,
    origin: { startedAt: T0, totals: { bytesIn: 0, bytesOut: casUp } },
    caches: [{
      region: 'a', url: 'http://a',
      stats: { startedAt: T0, kinds: {
        cas: { bytesServed: casServed, bytesUpstream: casUp, hits: 0, misses: 0, collapsed: 0 },
        'mirror:deb': { bytesServed: mirrorServed, bytesUpstream: mirrorUp, hits: 0, misses: 0, collapsed: 0 },
        artifacts: { bytesServed: artifacts, bytesUpstream: artifacts, hits: 0, misses: artifacts === 0 ? 0 : 2, collapsed: 0 },
      } },
    }],
  });
  const ledger = buildLedger(snap(0, 0, 0, 0), snap(4_000_000, 2_000_000, 1_000_000, 746, 300_000), { ...figures, machinesByRegion: { a: 2 }, controllerBytesByCache: { 'http://a': 300_000 } });
  t.same(ledger.links.slice(1, 6), [
    { link: 'origin → cache a', actualBytes: 746, naiveBytes: 2000 },
    { link: 'cache a → machines', actualBytes: 1_000_000, naiveBytes: 2000 },
    { link: 'mirrors → cache a', actualBytes: 2_000_000, naiveBytes: 4_000_000 },
    { link: 'origin → cache a (artifacts)', actualBytes: 300_000, naiveBytes: 300_000 },
    { link: 'cache a → controller (artifacts)', actualBytes: 300_000, naiveBytes: 300_000 },
  ]);
  t.same([ledger.caches[0]!.misses, ledger.caches[0]!.artifactBytesUpstream], [0, 300_000], "the runner's misses are not the machines'");
  t.match(formatLedger(ledger), /mirrors → cache a\s+1\.9 MiB\s+3\.8 MiB\s+50\.0%/);
});

t.test('machines that pulled from the origin itself have a link of their own', async (t) => {
  const snap: FleetSnapshot = { takenAt: RUN_START, origin: { totals: { bytesIn: 0, bytesOut: 0 } }, caches: [{ region: 'a', url: 'http://a', stats: cache(0, 0, 0, 0) }] };
  const ledger = buildLedger(snap, snap, { ...figures, machinesByRegion: { a: 2, '(origin)': 3 }, originPullBytes: 2400 });
  t.same(ledger.links.find((l) => l.link.startsWith('origin → machines')), { link: 'origin → machines (project, direct)', actualBytes: 2400, naiveBytes: 3000 });
  t.match(formatLedger(ledger), /origin → machines \(project, direct\)\s+2\.3 KiB\s+2\.9 KiB\s+20\.0%/);
  const none = buildLedger(snap, snap, { ...figures, machinesByRegion: { a: 2 } });
  t.notOk(none.links.some((l) => l.link.includes('direct')), 'none without such machines');
});

t.test('a worker of a cache that died during the run: the figures are lower bounds, and the report says why', async (t) => {
  const snap = (served: number, workersLost: number): FleetSnapshot => ({
    takenAt: RUN_START,
    origin: { totals: { bytesIn: 0, bytesOut: 0 } },
    caches: [{ region: 'a', url: 'http://a', stats: { ...cache(served, 100, 1, 1), workersLost } }],
  });
  const ledger = buildLedger(snap(1000, 1), snap(5000, 2), { ...figures, machinesByRegion: { a: 2 } });
  t.equal(ledger.caches[0]!.coverage, 'workers-lost');
  t.same(ledger.links.find((l) => l.link === 'cache a → machines'), { link: 'cache a → machines', actualBytes: 4000, naiveBytes: 2000, partial: true }, 'the run\'s counts, partial');
  const text = formatLedger(ledger);
  t.match(text, /cache a → machines\s+≥ 3\.9 KiB/);
  t.match(text, /a worker died during the run: its last counts are missing/);
  t.equal(buildLedger(snap(1000, 2), snap(5000, 2), { ...figures, machinesByRegion: { a: 2 } }).caches[0]!.coverage, 'run', 'workers lost before the run do not count');
});

t.test('a server in a cache\'s place that is not one (the origin itself): no figures for it, never NaN', async (t) => {
  const origin = await startOrigin(t);
  const fleet = { origin: origin.url, regions: { a: { caches: [origin.url] } } };
  const before = await snapshotFleet(fleet);
  t.ok(before.origin, "the origin's own counters are read");
  t.equal(before.caches[0]!.stats, undefined, "its answer in a cache's place is not taken for a cache's");
  const text = formatLedger(buildLedger(before, await snapshotFleet(fleet), { ...figures, machinesByRegion: { a: 2 } }));
  t.notMatch(text, /NaN/);
  t.match(text, /origin → cache a\s+\?/, 'the link is unknown');
});

t.test("the runner's artifacts fetched from the origin itself have a link of their own: the links add up to the egress", async (t) => {
  const snap = (out: number): FleetSnapshot => ({ takenAt: RUN_START, origin: { startedAt: T0, totals: { bytesIn: 0, bytesOut: out } }, caches: [] });
  const pulled = 2 * figures.fullUploadBytes;
  const fetched = 4321;
  const ledger = buildLedger(snap(0), snap(pulled + fetched), {
    ...figures, machinesByRegion: { '(origin)': 2 }, originPullBytes: pulled, artifactBytes: fetched, controllerBytesByCache: { 'http://origin': fetched },
  });
  t.same(ledger.links.find((l) => l.link.includes('controller (artifacts')), { link: 'origin → controller (artifacts, direct)', actualBytes: fetched, naiveBytes: fetched });
  const fromOrigin = ledger.links.filter((l) => l.link.startsWith('origin → '));
  t.equal(fromOrigin.reduce((n, l) => n + (l.actualBytes ?? 0), 0), ledger.originEgress.actual, 'the links out of the origin add up to its egress');
  t.equal(fromOrigin.reduce((n, l) => n + l.naiveBytes, 0), ledger.originEgress.naive, 'and so do their naive bytes');
  t.match(formatLedger(ledger), /origin → controller \(artifacts, direct\)\s+4\.2 KiB\s+4\.2 KiB\s+0\.0%/);
  const throughCache = buildLedger(
    { ...snap(0), caches: [{ region: 'a', url: 'http://a', stats: cache(0, 0, 0, 0) }] },
    { ...snap(0), caches: [{ region: 'a', url: 'http://a', stats: cache(0, 0, 0, 0) }] },
    { ...figures, machinesByRegion: { a: 1 }, controllerBytesByCache: { 'http://a': fetched } },
  );
  t.notOk(throughCache.links.some((l) => l.link.includes('direct')), 'none when a cache took them');
  // the cache had them all (the machine uploaded through it): nothing crossed the slow link for them, and the report shows it saved
  t.same(throughCache.links.filter((l) => l.link.includes('(artifacts)') && l.link.includes('cache')), [
    { link: 'origin → cache a (artifacts)', actualBytes: 0, naiveBytes: fetched },
    { link: 'cache a → controller (artifacts)', actualBytes: fetched, naiveBytes: fetched },
  ], 'without the cache the runner would have fetched them from the origin');
  const viaCache = throughCache.links.filter((l) => l.link.startsWith('origin → '));
  t.equal(viaCache.reduce((n, l) => n + l.naiveBytes, 0), throughCache.originEgress.naive, "the naive bytes of the links out of the origin add up to its egress's, through a cache too");
  t.match(formatLedger(throughCache), /origin → cache a \(artifacts\)\s+0 B\s+4\.2 KiB\s+100\.0%/);
});

t.test('docs/report.md names every field of the JSON report, and no other', async (t) => {
  const doc = readFileSync(`${REPO_ROOT}docs/report.md`, 'utf8');
  const json = doc.slice(doc.indexOf('## The JSON report'));
  // the first column of its tables: `name`, or `a`, `b`, `c`
  const documented = new Set([...json.matchAll(/^\| (`[^|]+`) \|/gm)].flatMap((m) => [...m[1]!.matchAll(/`(\w+)`/g)].map((n) => n[1]!)));
  const at = (served: number, startedAt: string): FleetSnapshot => ({ takenAt: RUN_START, origin: { startedAt, totals: { bytesIn: 0, bytesOut: 0 } }, caches: [{ region: 'a', url: 'http://a', stats: cache(served, 0, 1, 1, 0, startedAt) }] });
  // every optional field present: a restart (partial), reused machines, an interrupt
  const ledger = buildLedger(at(5000, T0), at(100, RUN_START), { ...figures, machinesByRegion: { a: 1 }, machinesReused: 2, interrupted: { signal: 'SIGINT', abortedJobs: 1 } });
  const fields = new Set([...Object.keys(ledger), ...ledger.links.flatMap((l) => Object.keys(l)), ...ledger.caches.flatMap((c) => Object.keys(c))]);
  t.ok(ledger.links.some((l) => l.partial) && ledger.reused && ledger.interrupted, 'the ledger has its optional fields');
  t.same([...fields].filter((f) => !documented.has(f)), [], 'every field is documented');
  t.same([...documented].filter((f) => !fields.has(f)), [], 'every documented field is one');
  for (const nested of [...Object.keys(ledger.originEgress), ...Object.keys(ledger.interrupted!)]) t.match(json, `\`${nested}\``, `${nested} is documented`);
});
