import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import { createProvider } from '../../src/backends/registry.js';
import { httpGetJson, joinUrl } from '../../src/client/http.js';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { RunLog } from '../../src/run/report.js';
import { runProject } from '../../src/run/runner.js';
import { bedBackends, startTestBed } from './netns.js';
import { isAlive } from '../helpers/processes.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/fleet-demo', import.meta.url));
const SYSTEMS = { 'region-a': 'alpha-1', 'region-b': 'beta-1' };

interface Tally {
  bytesServed: number;
}
interface CacheStats {
  kinds: Record<string, Tally | undefined>;
  total: Tally;
}

t.test('the example project over two regions in network namespaces', async (t) => {
  const dir = t.testdir();
  // No skip without root: the bed is the point of this test, and CI runs as root.
  const bed = await startTestBed({ dataDir: join(dir, 'bed') });
  t.teardown(() => bed.close());
  const ns = Object.values(bed.namespaces);
  t.match(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout, new RegExp(ns.join('|')), 'namespaces exist');

  // The caches listen on their namespace's address only: from region-b, region-a's cache is
  // reached over the bridge, and the servers are bound to the private subnet.
  for (const url of [bed.originUrl, ...Object.values(bed.caches)]) t.match(url, /^http:\/\/10\.213\.\d+\.\d+:\d+$/);

  // A machine of the local backend with `netns:` runs its scripts in that namespace.
  const provider = await createProvider('local-a', 'local', { netns: bed.namespaces['region-a'] }, { projectRoot: dir, remotePath: '/home/t', password: 'pw', stateDir: join(dir, 'probe') });
  const machine = await provider.allocate({ name: 'probe' });
  const probe = await machine.exec('ip -4 -o addr show dev eth0', { trace: false });
  await machine.discard();
  t.equal(probe.exitCode, 0, probe.output);
  t.match(probe.output, bed.caches['region-a']!.replace(/^http:\/\/|:\d+$/g, ''), "the machine sees region-a's address");

  const project = join(dir, 'project');
  await cp(EXAMPLE, project, { recursive: true });
  const spreadFile = join(project, 'spread.yaml');
  const doc = parseDocument(await readFile(spreadFile, 'utf8'));
  // One machine per system: each region's cache has a machine of its own to serve (a second
  // machine per region proved nothing more, and cost an agent, a pull and a shell each).
  doc.set('backends', bedBackends(bed, SYSTEMS, 1));
  await writeFile(spreadFile, doc.toString());
  const fleetFile = join(dir, 'fleet.json');
  await writeFile(fleetFile, JSON.stringify(bed.fleet()));
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, bed.token, { mode: 0o600 });

  const stats = () => Promise.all(Object.entries(bed.caches).map(async ([r, url]) => [r, await httpGetJson<CacheStats>(joinUrl(url, '/-/stats'))] as const));
  const before = Object.fromEntries(await stats());
  const lines: string[] = [];
  const result = await runProject({
    cwd: project,
    filters: [],
    fleetFile,
    tokenFile,
    agentBundle: await ensureAgentBundle(),
    log: new RunLog((l) => lines.push(l)),
    dataRoot: join(dir, 'controller'),
  });
  t.ok(result.tally.ok, 'every job succeeds');
  t.equal(result.tally.aborted.length, 0);
  t.ok(result.pulls.length >= 2, 'machines of both systems pulled');

  const pulledByRegion: Record<string, number> = {};
  for (const p of result.pulls) {
    const region = p.machine.startsWith('local-a:') ? 'region-a' : 'region-b';
    t.equal(p.region, region, `${p.machine} is in ${region}`);
    t.equal(p.url, bed.caches[region], `${p.machine} pulled through the ${region} cache`);
    pulledByRegion[region] = (pulledByRegion[region] ?? 0) + p.bytes;
  }
  const after = Object.fromEntries(await stats());
  for (const region of Object.keys(SYSTEMS)) {
    const served = (kind: string) => (after[region]!.kinds[kind]?.bytesServed ?? 0) - (before[region]!.kinds[kind]?.bytesServed ?? 0);
    t.ok(served('cas') > 0, `the ${region} cache served its machines`);
    // Project blobs: what the cache served is exactly what its own machines pulled.
    t.equal(served('cas'), pulledByRegion[region]!, `the ${region} cache served only its own region's machines`);
  }
  t.ok((result.ledger.originEgress.actual ?? 0) > 0);

  const pids = bed.pids;
  await bed.close();
  t.notOk(pids.some(isAlive), 'every server process is gone');
  const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  for (const n of ns) t.notMatch(left, n, `namespace ${n} is deleted`);
  t.notMatch(spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout, ns[0]!.slice(0, -1), 'bridge and links are deleted');
  if (!result.tally.ok) t.comment(lines.join('\n'));
});
