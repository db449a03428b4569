// A run's transfer report against an independent measurement: a real `fleetcache run` (the
// local backend) whose machines reach a real cache through a byte-counting relay, and the
// cache a real origin through another (test/helpers/byte-relay.ts). The links' actual
// figures are the servers' body counts: the relays' bodies must be the same.
import t, { type Test } from 'tap';
import { cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { DEFAULT_MAX_SIZE, DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { RunLog } from '../../src/run/report.js';
import { runProject, type RunResult } from '../../src/run/runner.js';
import { startByteRelay, type ByteRelay } from '../helpers/byte-relay.js';
import { startOrigin } from '../helpers/origin.js';
import { REPO_ROOT } from '../helpers/processes.js';
import { allExchanges, type WireExchange } from '../helpers/wire-messages.js';

/** The body bytes `relay` carried of the exchanges `which` keeps, `field` of each. */
function sum(relay: ByteRelay, which: (e: WireExchange) => boolean, field: (e: WireExchange) => number): number {
  return allExchanges(relay.connections).filter(which).reduce((n, e) => n + field(e), 0);
}

/** The machines' reads: not the report's own /-/ reads, nor the runner's artifacts. */
const machinesRead = (e: WireExchange): boolean => e.method === 'GET' && !e.target.startsWith('/-/') && !e.target.startsWith('/artifacts/');

interface AccountedRun {
  readonly result: RunResult;
  /** The cache's way to the origin, the machines' to the cache, the runner's to the origin. */
  readonly toOrigin: ByteRelay;
  readonly machines: ByteRelay;
  readonly controller: ByteRelay;
}

/** A first run of examples/fleet-demo's alpha-1 jobs: every server and link behind a byte-counting relay. */
async function accountedRun(t: Test): Promise<AccountedRun> {
  const root = t.testdir({ origin: {}, cache: {} });
  const dir = join(root, 'project');
  await cp(join(REPO_ROOT, 'examples/fleet-demo'), dir, { recursive: true });
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  const toOrigin = await startByteRelay(t, origin.url);
  const cache = await buildCacheServer({ region: 'region-a', upstream: toOrigin.url, dataDir: join(root, 'cache'), maxSize: DEFAULT_MAX_SIZE, timeouts: DEFAULT_TIMEOUTS, mirrors: new Map(), logLevel: 'silent' });
  const cacheUrl = await cache.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => cache.close());
  const machines = await startByteRelay(t, cacheUrl);
  const controller = await startByteRelay(t, origin.url); // the runner's own way to the origin
  const result = await runDemo(t, root, `origin: ${controller.url}\nregions:\n  region-a:\n    caches: [${machines.url}]\ndispatchDelay: 0s\n`, origin.token);
  return { result, toOrigin, machines, controller };
}

/** Runs the alpha-1 jobs of the project copied to `root`/project with the fleet file `fleet`, checking they passed. */
async function runDemo(t: Test, root: string, fleet: string, token: string): Promise<RunResult> {
  const fleetFile = join(root, 'fleet.yaml');
  await writeFile(fleetFile, fleet);
  const tokenFile = join(root, 'token');
  await writeFile(tokenFile, token);
  let out = '';
  const result = await runProject({ cwd: join(root, 'project'), filters: ['alpha-1'], fleetFile, agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(root, 'state'), tokenFile });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'every job succeeded');
  return result;
}

// One run behind the relays, read by both subtests: neither changes what the other reads.
t.test('a first run of the alpha-1 jobs, every link behind a byte-counting relay', async (t) => {
  const run = await accountedRun(t);

  t.test("the report's links carry what crossed the relays", async (t) => {
    const { result, toOrigin, machines, controller } = run;
    const link = (name: string): number | null | undefined => result.ledger.links.find((l) => l.link === name)?.actualBytes;
    t.equal(link('origin → cache region-a'), sum(toOrigin, machinesRead, (e) => e.answerBody), 'origin → cache: the bodies the origin sent for the machines');
    t.equal(link('cache region-a → machines'), sum(machines, machinesRead, (e) => e.answerBody), 'cache → machines: the bodies the machines took');
    const uploaded = sum(toOrigin, (e) => e.method === 'PUT' && e.target.startsWith('/artifacts/'), (e) => e.requestBody);
    t.ok(uploaded > 0, 'the machines uploaded artifacts through the cache');
    t.equal(link('machines → origin (artifacts)'), uploaded, 'machines → origin: the artifacts they uploaded, their index too');
    const notOps = (e: WireExchange): boolean => !e.target.startsWith('/-/');
    t.equal(link('controller → origin (project)'), sum(controller, (e) => e.method === 'PUT', (e) => e.requestBody), 'controller → origin: what the push uploaded');
    t.equal(result.ledger.originEgress.actual, sum(controller, notOps, (e) => e.answerBody) + sum(toOrigin, notOps, (e) => e.answerBody), "the origin's egress: the bodies it sent the runner and the cache");
  });

  t.test('a first run, which sends the whole project: its naive figures are what crossed, the run manifest too (nothing saved, nothing lost)', async (t) => {
    const { result, machines, controller } = run;
    t.equal(result.push.manifest.delta, null, 'the push sent a whole base, no delta');
    const naive = (name: string): number | undefined => result.ledger.links.find((l) => l.link === name)?.naiveBytes;
    t.equal(naive('controller → origin (project)'), sum(controller, (e) => e.method === 'PUT', (e) => e.requestBody), 'controller → origin: the base and the run manifest');
    t.equal(naive('cache region-a → machines'), sum(machines, machinesRead, (e) => e.answerBody), 'cache → machines: each machine took the base and the run manifest, as it would from the origin');
  });
});

t.test('a fleet without caches: the machines\' direct link is what they took from the origin, the run manifest too', async (t) => {
  const root = t.testdir({ origin: {} });
  const dir = join(root, 'project');
  await cp(join(REPO_ROOT, 'examples/fleet-demo'), dir, { recursive: true });
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  const relay = await startByteRelay(t, origin.url); // the runner's and the machines' way to the origin
  const result = await runDemo(t, root, `origin: ${relay.url}\ndispatchDelay: 0s\n`, origin.token);
  t.equal(result.push.manifest.delta, null, 'the push sent a whole base, no delta');
  // the pulls' reads: the run manifest and the blobs it names (the push, on a first run, reads only the bases' list)
  const pulled = sum(relay, (e) => e.method === 'GET' && (e.target.includes('/runs/') || e.target.startsWith('/cas/')), (e) => e.answerBody);
  t.same(result.ledger.links.find((l) => l.link === 'origin → machines (project, direct)'), { link: 'origin → machines (project, direct)', actualBytes: pulled, naiveBytes: pulled }, 'actual: what the machines took; naive: the same, as a first run sends the whole project');
});
