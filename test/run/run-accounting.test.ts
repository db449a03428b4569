// A run's transfer report against an independent measurement: a real `fleetcache run` (the
// local backend) whose machines reach a real cache through a byte-counting relay, and the
// cache a real origin through another (test/helpers/byte-relay.ts). The links' actual
// figures are the servers' body counts: the relays' bodies must be the same.
import t from 'tap';
import { cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { DEFAULT_MAX_SIZE, DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { RunLog } from '../../src/run/report.js';
import { runProject } from '../../src/run/runner.js';
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

t.test("the report's links carry what crossed the relays", async (t) => {
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
  const fleetFile = join(root, 'fleet.yaml');
  await writeFile(fleetFile, `origin: ${controller.url}\nregions:\n  region-a:\n    caches: [${machines.url}]\ndispatchDelay: 0s\n`);
  const tokenFile = join(root, 'token');
  await writeFile(tokenFile, origin.token);
  let out = '';
  const result = await runProject({ cwd: dir, filters: ['alpha-1'], fleetFile, agentBundle: await ensureAgentBundle(), log: new RunLog((s) => (out += s)), dataRoot: join(root, 'state'), tokenFile });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'every job succeeded');
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
