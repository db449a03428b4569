// The ledger: per-link figures from the servers' counters before and after a run.
import t from 'tap';
import { buildLedger, formatLedger, type FleetSnapshot } from '../../src/report/ledger.js';
import { ledgerHtml } from '../../src/report/html.js';

const cache = (served: number, upstream: number, hits: number, misses: number, collapsed = 0) => ({ total: { bytesServed: served, bytesUpstream: upstream, hits, misses, collapsed } });

t.test('actual against naive, per link and per cache, from counter differences', async (t) => {
  const before: FleetSnapshot = {
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
      { region: 'b', url: 'http://b', stats: cache(3000, 200, 3, 1) },
    ],
  };
  const ledger = buildLedger(before, after, {
    run: 'r1',
    project: 'p',
    bytesSent: 50,
    basesReceived: 0,
    fullUploadBytes: 1000,
    machinesByRegion: { a: 3, b: 2 },
    assetNaiveByRegion: { a: 100 },
    artifactBytes: 7,
  });
  t.equal(ledger.machines, 5);
  t.same(ledger.links[0], { link: 'controller → origin (project)', actualBytes: 50, naiveBytes: 1000 });
  t.same(ledger.links[1], { link: 'origin → cache a', actualBytes: 100, naiveBytes: 3100 });
  t.same(ledger.links[2], { link: 'cache a → machines', actualBytes: 4000, naiveBytes: 3100 });
  // a cache that was down before the run counts from zero
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
    run: 'r1', project: 'p', bytesSent: 50, basesReceived: 0, fullUploadBytes: 1000, machinesByRegion: { a: 3 }, assetNaiveByRegion: {}, artifactBytes: 0,
  });
  t.match(formatLedger(down), /cache b: unreachable after the run, no figures/, 'a cache whose figures could not be read says so');
  const html = ledgerHtml(ledger);
  t.match(html, /<svg/);
  t.match(html, /data-testid="origin-egress">300 B</);
  t.notMatch(html, /src="http|href="http/, 'nothing loaded from elsewhere');
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
    run: 'r1', project: 'p', bytesSent: 0, basesReceived: 3000, fullUploadBytes: 1000, machinesByRegion: { a: 4 }, assetNaiveByRegion: {}, artifactBytes: 0,
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
});
