// `fleetcache run` end to end on the local backend: the embedded default with two
// regions, a configured fleet whose cache is down, failures and the summary.
import { formatLedger } from '../../src/report/ledger.js';
import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { execFileSync, spawnSync } from 'node:child_process';
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { agentBundle } from './project.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { DEFAULT_MAX_SIZE, DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { RunLog } from '../../src/run/report.js';
import { discardKeptMachines } from '../../src/run/discard.js';
import { runProject } from '../../src/run/runner.js';
import { NameStore, type NameRecord } from '../../src/store/names.js';
import { parseDigestString } from '../../src/store/digest.js';
import { DiskBlobStore } from '../../src/store/disk.js';
import type { EmbeddedFleet } from '../../src/run/embedded.js';
import { startOrigin } from '../helpers/origin.js';
import { deadUrl } from '../helpers/loopback-server.js';
import { buildOrigin } from '../../src/origin/server.js';
import { REPO_ROOT } from '../helpers/processes.js';

/**
 * The example project copied into <testdir>/project; other test files go beside it. `oneWorker`:
 * one machine per system instead of two, for a test that needs no second machine (each machine
 * costs its pull, a node process on it, and its system's scripts).
 */
async function demoProject(t: Test, { oneWorker = false } = {}): Promise<string> {
  const dir = join(t.testdir(), 'project');
  await cp(join(REPO_ROOT, 'examples/fleet-demo'), dir, { recursive: true });
  if (oneWorker) {
    const spread = await readFile(join(dir, 'spread.yaml'), 'utf8');
    if (spread.match(/workers: 2\n/g)?.length !== 2) throw new Error('examples/fleet-demo/spread.yaml no longer gives each system two workers');
    await writeFile(join(dir, 'spread.yaml'), spread.replaceAll('workers: 2\n', 'workers: 1\n'));
  }
  return dir;
}

/** A cache of `region` in front of `upstream`, built but not listening: a test may add hooks first. */
function regionCache(region: string, upstream: string, dataDir: string): Promise<FastifyInstance> {
  return buildCacheServer({ region, upstream, dataDir, maxSize: DEFAULT_MAX_SIZE, timeouts: DEFAULT_TIMEOUTS, mirrors: new Map(), logLevel: 'silent' });
}

/** Starts `cache` on 127.0.0.1 (closed in teardown) and writes <dir>/fleet.yaml with it as region-a's cache. */
async function fleetOfOneCache(t: Test, dir: string, origin: string, cache: FastifyInstance): Promise<{ cacheUrl: string; fleetFile: string }> {
  await cache.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => cache.close());
  const cacheUrl = `http://127.0.0.1:${(cache.server.address() as AddressInfo).port}`;
  const fleetFile = join(dir, 'fleet.yaml');
  await writeFile(fleetFile, `origin: ${origin}\nregions:\n  region-a:\n    caches: [${cacheUrl}]\ndispatchDelay: 0s\n`);
  return { cacheUrl, fleetFile };
}

function capture(): { log: RunLog; text: () => string } {
  let out = '';
  return { log: new RunLog((s) => (out += s)), text: () => out };
}

t.test('embedded default: two regions, each machine pulls through its own cache', async (t) => {
  const dir = await demoProject(t);
  const { log, text } = capture();
  let embedded: EmbeddedFleet | undefined;
  const artifacts = join(dir, '..', 'artifacts');
  const result = await runProject({
    cwd: dir,
    filters: [],
    agentBundle: await agentBundle(),
    log,
    dataRoot: join(dir, 'cache'),
    artifactsDir: artifacts,
    onEmbedded: (e) => {
      embedded = e;
    },
  });
  t.ok(embedded, 'embedded fleet started');
  t.equal((await stat(join(dir, 'cache', 'origin'))).mode & 0o777, 0o700, "the embedded origin's data is the user's alone");
  if (!result.tally.ok) t.comment(text());
  t.equal(result.tally.ok, true, 'every job succeeded');
  t.equal(result.tally.successful, 8);
  // spread's line, to the letter (scripts parse it: spec §16), then what went to the origin
  const packed = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Project content is packed for delivery \((\d+\.\d\d)KB\)\.\n\S+ \S+ Sent .* to the origin as a new base \(run /m.exec(text());
  t.ok(packed, 'the pack line as spread prints it');
  t.equal(packed?.[1], (result.push.fullUploadBytes / 1024).toFixed(2), 'the compressed tar\'s size in KB');
  // up to two workers for each of two systems, each machine pulling once: a worker whose turn
  // to start comes once its system's jobs are all taken starts none (the 8 quick jobs may go
  // to the first three)
  const allocated = text().split('\n').filter((l) => /Allocated local:\S+ #\d+\.$/.test(l)).length;
  t.ok(result.pulls.length >= 2 && result.pulls.length <= allocated && allocated <= 4, `a pull per machine started, two to four (${result.pulls.length} pulls, ${allocated} machines)`);
  t.same([...new Set(result.pulls.map((p) => p.machine))].sort(), ['local:alpha-1', 'local:beta-1'], 'both systems');
  const regionA = embedded!.fleet.regions['region-a']!.caches[0]!;
  const regionB = embedded!.fleet.regions['region-b']!.caches[0]!;
  for (const p of result.pulls) {
    t.equal(p.url, p.machine.includes('alpha') ? regionA : regionB, `${p.machine} pulled through its region's cache`);
  }
  t.equal((await readFile(join(artifacts, 'local:alpha-1:tests/artifacts', 'report.txt'), 'utf8')).trim(), 'report of local:alpha-1:tests/artifacts');
  t.match(text(), /Successful tasks|Executing local:alpha-1:tests\/hello/);
  // a machine's start-up lines in spread's order (spec §16: scripts wait for "Connected to")
  const startLines = text().split('\n').map((l) => l.slice(20)).filter((l) => / local:alpha-1 #1\b/.test(l) && /^(Allocat|Connect|Machine|Sending)/.test(l));
  t.match(startLines, [
    'Allocating local:alpha-1 #1...',
    'Allocated local:alpha-1 #1.',
    'Connecting to local:alpha-1 #1...',
    /^Connected to local:alpha-1 #1 at \/\S+\.$/,
    /^Machine local:alpha-1 #1 at \S+ pulls through /,
    'Sending project content to local:alpha-1 #1...',
  ]);
});

t.test('a failing task is reported as spread does and the run is unsuccessful', async (t) => {
  const dir = await demoProject(t, { oneWorker: true });
  await writeFile(join(dir, 'tests/hello/task.yaml'), 'summary: fails\nexecute: |\n  echo about to fail\n  exit 3\n');
  const { log, text } = capture();
  // the variants beside it, not the artifacts job: its upload (an agent command) proves nothing here
  const result = await runProject({ cwd: dir, filters: ['alpha-1:tests/hello', 'alpha-1:tests/variants'], agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache') });
  t.equal(result.tally.ok, false);
  t.same(result.tally.failed, ['local:alpha-1:tests/hello']);
  t.equal(result.tally.successful, 2, 'both variants passed');
  t.match(result.tally.summary(), /Failed tasks: 1\n    - local:alpha-1:tests\/hello/);
  t.match(text(), /Error executing local:alpha-1:tests\/hello \(local:alpha-1\) :\n-----\n[^]*about to fail/);
});

t.test('configured fleet: a cache that is down makes its machines fall back, the run still passes', async (t) => {
  const dir = await demoProject(t, { oneWorker: true });
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const caches: string[] = [];
  const apps: FastifyInstance[] = [];
  for (const region of ['region-a', 'region-b']) {
    const app = await regionCache(region, origin.url, join(dir, '..', region));
    await app.listen({ host: '127.0.0.1', port: 0 });
    t.teardown(() => app.close());
    const addr = app.server.address();
    caches.push(`http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`);
    apps.push(app);
  }
  // region-b's cache dies before its machines pull; region-a's dies mid-run, as its first
  // artifacts go up, so they must find another way
  await apps[1]!.close();
  const fleetFile = join(dir, 'fleet.yaml');
  await writeFile(fleetFile, `origin: ${origin.url}\nregions:\n  region-a:\n    caches: [${caches[0]}]\n  region-b:\n    caches: [${caches[1]}]\ndispatchDelay: 0s\n`);
  let out = '';
  let killed: Promise<void> | undefined;
  const log = new RunLog((s) => {
    out += s;
    // logged just before the agent uploads: the cache stops listening before the upload starts
    if (!killed && /Fetching artifacts of local:alpha-1:tests\/artifacts/.test(s)) killed = apps[0]!.close();
  });
  const text = () => out;
  // one job per region: a machine of each region, and alpha-1's artifacts going up as region-a's
  // cache dies (beta-1's job sends none: its upload, three agent commands through the dead
  // caches to the origin, was asserted nowhere)
  const result = await runProject({ cwd: dir, filters: ['alpha-1:tests/artifacts', 'beta-1:tests/hello'], fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: await tokenFile(t, origin.token) });
  await killed;
  if (!result.tally.ok) t.comment(text());
  t.equal(result.tally.ok, true, 'every job succeeded');
  const beta = result.pulls.filter((p) => p.machine.includes('beta'));
  t.ok(beta.length > 0);
  // the next cache, or the origin when region-a's was already stopped by then
  for (const p of beta) t.ok([caches[0], origin.url].includes(p.url), `region-b machine ${p.machine} fell back (${p.url})`);
  // The report counts each machine where its bytes went: region-a's cache, or the origin.
  for (const p of beta) t.equal(p.region, p.url === caches[0] ? 'region-a' : '(origin)', `${p.machine} counted where it pulled from`);
  t.equal(result.ledger.links.find((l) => l.link === 'cache region-b → machines')?.naiveBytes, 0, 'the dead cache is charged no machine');
  const direct = result.pulls.filter((p) => p.region === '(origin)');
  const directLink = result.ledger.links.find((l) => l.link === 'origin → machines (project, direct)');
  t.same(directLink?.actualBytes, direct.length > 0 ? direct.reduce((n, p) => n + p.bytes + result.push.manifestBytes, 0) : undefined, 'pulls from the origin itself have their link: their base, delta and run manifest');
  t.match(text(), /fell back to/);
  t.ok(killed, 'region-a cache was stopped mid-run');
  t.match(text(), /Artifacts of local:alpha-1:tests\/artifacts went through /);
  t.same(result.ledger.caches.map((c) => c.region), ['region-a', 'region-b']);
  t.ok(result.ledger.links.some((l) => l.link === 'machines → origin (artifacts)' && (l.actualBytes ?? 0) > 0), 'artifacts reached the origin');
});

// Two ways a cache fails an artifacts upload, a job for each on the one machine of one run
// (a run each cost its pull and its runner): the cache tells the jobs' uploads apart by path.
t.test('artifacts a cache fails go through the next URL', async (t) => {
  const dir = await demoProject(t, { oneWorker: true });
  await mkdir(join(dir, 'tests/two'));
  await writeFile(join(dir, 'tests/two/task.yaml'), 'summary: two artifacts\nartifacts: [a.bin, b.bin]\nexecute: |\n  head -c 1048576 /dev/urandom > a.bin\n  head -c 4096 /dev/urandom > b.bin\n');
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const cache = await regionCache('region-a', origin.url, join(dir, '..', 'region-a'));
  /** The task of an artifact upload (`tests/<task>` of alpha-1) and its file, from the request's path. */
  const upload = (url: string): { task: string; file: string } | undefined => {
    const m = /^\/artifacts\/[^/]+\/local:alpha-1:tests\/([^/]+)\/(.+)$/.exec(decodeURIComponent(url));
    return m ? { task: m[1]!, file: m[2]! } : undefined;
  };
  let refused = 0;
  cache.addHook('onRequest', async (req, reply) => {
    const put = req.method === 'PUT' ? upload(req.url) : undefined;
    if (put?.task === 'artifacts') {
      refused++;
      return reply.code(431).send({ code: 'FC_ERR_TOO_MANY_HEADERS', message: 'a lower limit than the origin\'s' });
    }
    if (put?.task === 'two' && put.file === 'b.bin') return reply.code(503).send({ code: 'FC_ERR_UNAVAILABLE', message: 'injected: the cache cannot take it' });
  });
  /** The artifact PUTs the origin was sent, by task and file name. */
  const puts = new Map<string, Record<string, number>>();
  origin.app.server.on('request', (req: IncomingMessage) => {
    const put = req.method === 'PUT' ? upload(req.url ?? '') : undefined;
    if (!put) return;
    const files = puts.get(put.task) ?? {};
    files[put.file] = (files[put.file] ?? 0) + 1;
    puts.set(put.task, files);
  });
  const { fleetFile } = await fleetOfOneCache(t, dir, origin.url, cache);
  const { log, text } = capture();
  const filters = ['alpha-1:tests/artifacts', 'alpha-1:tests/two'];
  const result = await runProject({ cwd: dir, filters, fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: await tokenFile(t, origin.token) });
  t.equal(result.tally.ok, true, 'every job succeeded', { out: text() });
  t.equal(result.tally.successful, 2);
  t.ok(result.ledger.links.some((l) => l.link === 'machines → origin (artifacts)' && (l.actualBytes ?? 0) > 0), 'the artifacts reached the origin, as the report counts them');

  t.test('a cache that refuses the artifacts upload itself (431: another version, a lower limit): the next URL takes it', async (t) => {
    t.ok(refused > 0, 'the cache refused the upload');
    t.match(text(), new RegExp(`Artifacts of local:alpha-1:tests/artifacts went through ${origin.url}`));
    t.match(puts.get('artifacts'), { 'report.txt': 1 }, 'the artifacts reached the origin');
  });

  t.test('a cache that fails one artifact: the upload goes through the next URL, and the files stored before are not sent again', async (t) => {
    t.match(text(), new RegExp(`Artifacts of local:alpha-1:tests/two went through ${origin.url}`));
    t.same(puts.get('two'), { 'a.bin': 1, 'b.bin': 1, '_index.json': 1 }, 'a.bin, stored through the cache, was not sent again to the origin');
    const index = await request(`${origin.url}/artifacts/${result.run}/local:alpha-1:tests/two/_index.json`);
    t.same(((await index.body.json()) as { files: Array<{ path: string }> }).files.map((f) => f.path), ['a.bin', 'b.bin'], 'the index lists both');
  });
});

t.test('a cache that accepts the artifacts upload and takes none of it costs the machine cacheTimeout; the origin takes them', async (t) => {
  const dir = await demoProject(t);
  // larger than what the sockets' buffers take in of an upload no one reads
  await writeFile(join(dir, 'tests/artifacts/task.yaml'), 'summary: a large artifact\nartifacts: [a.bin]\nexecute: |\n  head -c 16777216 /dev/urandom > a.bin\n');
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const cache = await regionCache('region-a', origin.url, join(dir, '..', 'region-a'));
  // the uploads' connections, held: neither their bodies read nor answered
  const held = new Set<Socket>();
  const release = (): void => held.forEach((socket) => socket.destroy());
  cache.addHook('onRequest', async (req, reply) => {
    if (req.method !== 'PUT' || !req.url.startsWith('/artifacts/')) return;
    held.add(req.raw.socket);
    reply.hijack();
  });
  const { fleetFile } = await fleetOfOneCache(t, dir, origin.url, cache);
  t.teardown(release);
  await writeFile(fleetFile, `${await readFile(fleetFile, 'utf8')}cacheTimeout: 1s\n`);
  const { log, text } = capture();
  const started = Date.now();
  const result = await runProject({ cwd: dir, filters: ['alpha-1:tests/artifacts'], fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: await tokenFile(t, origin.token) });
  const took = Date.now() - started;
  release();
  t.equal(result.tally.ok, true, 'the job succeeded', { out: text() });
  t.ok(held.size > 0, 'the cache was sent the upload');
  t.match(text(), new RegExp(`Artifacts of local:alpha-1:tests/artifacts went through ${origin.url}`));
  t.ok(took < 30_000, `the cache cost seconds (${took} ms), not the client's minute`);
});

t.test('a cache that accepts and never answers costs the first machine cacheTimeout; the next ones try it last', async (t) => {
  const dir = await demoProject(t);
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const live = await regionCache('region-b', origin.url, join(dir, '..', 'region-b'));
  await live.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => live.close());
  const liveUrl = `http://127.0.0.1:${(live.server.address() as AddressInfo).port}`;
  // region-a's cache: a process that accepts connections and reads requests, and never answers.
  // The run's report reads /-/stats before the run and after it: the first read is left
  // hanging too (the run goes on after the report's own timeout, shortened here from 5 s to
  // statsTimeout); a later one finds the connection closed, as a cache that is down (a
  // second hang would only wait the same time).
  const projectRequests: string[] = [];
  const statsRequests: string[] = [];
  /** When the report gave up its first read (it closed the connection), a moment after statsTimeout. */
  let firstStatsEndedAt: number | undefined;
  const sockets = new Set<Socket>();
  const hung = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => {
      const line = chunk.toString('latin1').split('\r\n')[0] ?? '';
      if (line.includes(' /projects/')) projectRequests.push(line);
      if (!line.includes(' /-/stats ')) return;
      if (statsRequests.push(line) > 1) socket.destroy();
      // the report's timeout closes it: a FIN ('end'), or a reset ('error'), before the push can begin if it waits
      else for (const event of ['end', 'error', 'close']) socket.on(event, () => (firstStatsEndedAt ??= Date.now()));
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    hung.close();
  });
  const hungUrl = `http://127.0.0.1:${(hung.address() as AddressInfo).port}`;
  const fleetFile = join(dir, 'fleet.yaml');
  await writeFile(fleetFile, [`origin: ${origin.url}`, 'regions:', `  region-a:\n    caches: [${hungUrl}]`, `  region-b:\n    caches: [${liveUrl}]`, 'startupLimit: 1', 'dispatchDelay: 0s', 'cacheTimeout: 1s', ''].join('\n'));
  // when the push's first request reached the origin (after the report's read of the origin's
  // stats): the report's first read of the hung cache must not delay it
  let pushStartedAt: number | undefined;
  origin.app.server.on('request', (req: IncomingMessage) => {
    if (req.url !== '/-/stats') pushStartedAt ??= Date.now();
  });
  let out = '';
  const log = new RunLog((s) => (out += s));
  const text = (): string => out;
  const started = Date.now();
  // the machines wait out the hung read: 1.5 s, not 2.5. The push begins some milliseconds
  // after the first read; a push that waits for the caches' reads begins only once the read
  // was given up. (The push's end was measured against this bound before: under load it
  // took 1570 ms once, though it had not waited.)
  const statsTimeout = 1500;
  const result = await runProject({ cwd: dir, filters: ['alpha-1'], fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: await tokenFile(t, origin.token), statsTimeout });
  if (!result.tally.ok) t.comment(text());
  t.equal(result.tally.ok, true, 'every job succeeded');
  t.equal(result.pulls.length, 2, 'two machines of region-a');
  for (const p of result.pulls) t.equal(p.url, liveUrl, `${p.machine} pulled through region-b's cache`);
  t.equal(projectRequests.length, 1, 'the hung cache was asked for the project once, by the first machine');
  t.equal(statsRequests.length, 2, "the report's stats were read before and after the run; the first read hung");
  t.ok(pushStartedAt! < firstStatsEndedAt!, `the push began while the first read hung (${firstStatsEndedAt! - pushStartedAt!} ms before the read was given up)`);
  t.match(text(), new RegExp(`pulls through ${liveUrl} \\(region region-a; tried last, unreachable for a machine of this run lately: ${hungUrl}\\)`));
  t.ok(Date.now() - started < 45_000, 'no machine waited the client\'s minute');
});

t.test("a cache a machine's failed pull gave up on is tried last by the run's next machines", async (t) => {
  const dir = await demoProject(t);
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const live = await regionCache('region-b', origin.url, join(dir, '..', 'region-b'));
  // the first machine's pull: region-a's cache is down, then region-b's refuses its token (a
  // failure that ends the pull); the second machine's pull is served
  let refused = 0;
  live.addHook('onRequest', async (req, reply) => {
    if (req.method !== 'GET' || !/^\/projects\/[^/]+\/runs\/[^/?]+$/.test(req.url) || refused++ > 0) return;
    return reply.code(403).send({ code: 'FC_ERR_FORBIDDEN', message: 'injected: token not accepted' });
  });
  await live.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => live.close());
  const liveUrl = `http://127.0.0.1:${(live.server.address() as AddressInfo).port}`;
  const down = await deadUrl();
  const fleetFile = join(dir, 'fleet.yaml');
  await writeFile(fleetFile, [`origin: ${origin.url}`, 'regions:', `  region-a:\n    caches: [${down}]`, `  region-b:\n    caches: [${liveUrl}]`, 'startupLimit: 1', 'dispatchDelay: 0s', ''].join('\n'));
  const { log, text } = capture();
  // no artifacts job: its upload (an agent command) proves nothing here
  const result = await runProject({ cwd: dir, filters: ['alpha-1:tests/hello', 'alpha-1:tests/variants'], fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: await tokenFile(t, origin.token) });
  t.equal(refused, 2, "region-b's cache refused the first pull only", { out: text() });
  t.match(text(), /agent pull on [^\n]* failed: [^\n]*HTTP 403: injected: token not accepted/, "the first machine's pull failed");
  t.match(text(), new RegExp(`pulls through ${liveUrl} \\(region region-a; tried last, unreachable for a machine of this run lately: ${down}\\)`), 'the next machine tried the dead cache last');
  t.same(result.pulls.map((p) => p.url), [liveUrl], "the next machine's pull was served by region-b's cache");
});

t.test('an origin whose reads need a token: the machines read with their run token, through the cache', async (t) => {
  const dir = await demoProject(t);
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin'), readAccess: 'token' });
  const cache = await regionCache('region-a', origin.url, join(dir, '..', 'region-a'));
  const tokensSeen = new Set<string>();
  cache.addHook('onRequest', async (req) => void tokensSeen.add(String(req.headers.authorization ?? 'none')));
  const { cacheUrl, fleetFile } = await fleetOfOneCache(t, dir, origin.url, cache);
  const { log, text } = capture();
  const artifacts = join(dir, '..', 'artifacts');
  const result = await runProject({ cwd: dir, filters: ['alpha-1'], fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: await tokenFile(t, origin.token), artifactsDir: artifacts });
  if (!result.tally.ok) t.comment(text());
  t.equal(result.tally.ok, true, 'every job succeeded: pulls, assets and artifacts');
  t.ok(result.pulls.every((p) => p.url === cacheUrl), 'through the cache');
  tokensSeen.delete('none'); // the report's /-/stats
  t.same([...tokensSeen].map((a) => a.split('.')[0]), ['Bearer fcrun2'], "every other request through the cache, the runner's too, carried the run's token, never the write token");
  // one token for the run's first hour: requests of several machines for one object then join one fill
  t.equal(tokensSeen.size, 1, 'the same run token on every request');
  // run --artifacts: what the runner fetched back (each job's index and files) is its own link, not the machines'
  const job = 'local:alpha-1:tests/artifacts';
  const index = await request(`${cacheUrl}/artifacts/${result.run}/${job.split('/').map(encodeURIComponent).join('/')}/_index.json`, { headers: { authorization: `Bearer ${origin.token}` } });
  const indexBytes = (await index.body.text()).length;
  const fileBytes = (await stat(join(artifacts, job, 'report.txt'))).size;
  t.same(result.ledger.links.find((l) => l.link === 'cache region-a → controller (artifacts)'), { link: 'cache region-a → controller (artifacts)', actualBytes: indexBytes + fileBytes, naiveBytes: indexBytes + fileBytes }, 'its index counted too; naive: the runner would have fetched them from the origin');
  // Nothing of it kept (the origin's reads need a token): each of the runner's fetches cost the
  // slow link its bytes, which are not the machines' pull, nor their misses.
  const kinds = ((await (await request(`${cacheUrl}/-/stats`)).body.json()) as { kinds: Record<string, { bytesUpstream: number; misses: number }> }).kinds;
  const machines = ['projects', 'cas'].map((k) => kinds[k] ?? { bytesUpstream: 0, misses: 0 });
  t.ok(Object.keys(kinds).every((k) => ['projects', 'cas', 'artifacts'].includes(k)), `the machines' kinds and the runner's (${Object.keys(kinds).join(', ')})`);
  t.same(result.ledger.links.filter((l) => l.link.startsWith('origin → cache region-a')), [
    { link: 'origin → cache region-a', actualBytes: machines.reduce((n, k) => n + k.bytesUpstream, 0), naiveBytes: result.ledger.links.find((l) => l.link === 'cache region-a → machines')!.naiveBytes },
    { link: 'origin → cache region-a (artifacts)', actualBytes: indexBytes + fileBytes, naiveBytes: indexBytes + fileBytes },
  ], "the runner's artifacts from the origin are a link of their own, not the machines'");
  t.equal(result.ledger.caches[0]!.misses, machines.reduce((n, k) => n + k.misses, 0), "the cache's misses are the machines'");
  // Without the cache the runner would have fetched them from the origin too: the origin's naive egress counts them.
  t.equal(result.ledger.originEgress.naive, result.ledger.links.find((l) => l.link === 'cache region-a → machines')!.naiveBytes + indexBytes + fileBytes, "the origin's naive egress counts the runner's artifacts");
});

t.test('the embedded origin prunes what is two weeks old as a run starts', async (t) => {
  const dir = await demoProject(t);
  const dataRoot = join(dir, 'cache');
  const bundle = await agentBundle();
  const first = await runProject({ cwd: dir, filters: ['alpha-1:tests/artifacts'], agentBundle: bundle, log: capture().log, dataRoot });
  t.equal(first.tally.ok, true);
  // the first run's artifact, made 15 days old while no run is going
  const names = new NameStore(join(dataRoot, 'origin'));
  await names.open();
  const artifact = ['artifacts', first.run, 'local:alpha-1:tests', 'artifacts', 'report.txt'];
  const record = await names.get<NameRecord>(artifact);
  await names.put(artifact, { ...record, created: Date.now() - 15 * 24 * 3600_000 });
  const store = new DiskBlobStore(join(dataRoot, 'origin'));
  const digest = parseDigestString(record.digest);
  t.ok(await store.has(digest));
  const second = await runProject({ cwd: dir, filters: ['alpha-1:tests/hello'], agentBundle: bundle, log: capture().log, dataRoot });
  t.equal(second.tally.ok, true);
  t.equal(await names.find(artifact), undefined, 'pruned by the second run\'s embedded origin');
  t.notOk(await store.has(digest), 'its blob too: the embedded origin has no uploads of others to wait for');
  t.ok(await names.find(['projects', 'fleet-demo', 'runs', second.run]), 'the second run is kept');
});

t.test('the origin restarting as a machine uploads its artifacts: the upload passes over the URLs again and gets through', async (t) => {
  const dir = await demoProject(t);
  const dataDir = join(dir, '..', 'origin');
  const origin = await startOrigin(t, { dataDir });
  const port = Number(new URL(origin.url).port);
  const fleetFile = join(dir, 'fleet.yaml');
  await writeFile(fleetFile, `origin: ${origin.url}\nregions:\n  region-a:\n    caches: [${await deadUrl()}]\ndispatchDelay: 0s\n`);
  let out = '';
  let restarted: Promise<unknown> | undefined;
  const log = new RunLog((s) => {
    out += s;
    // logged just before the agent uploads: the origin goes away as a restart does, until the
    // upload's first request reached its port and was cut (a fixed second was over before the
    // agent, slow to start under load, tried at all: the test then failed)
    if (!restarted && /Fetching artifacts of local:alpha-1:tests\/artifacts/.test(s)) {
      restarted = origin.app.close().then(async () => {
        await new Promise<void>((resolve) => {
          const sockets = new Set<Socket>();
          const down = createServer((socket) => {
            sockets.add(socket);
            socket.on('error', () => undefined);
            socket.on('data', (chunk: Buffer) => {
              socket.destroy();
              if (!chunk.toString('latin1').startsWith('PUT /artifacts/')) return;
              down.close(() => resolve());
              for (const other of sockets) other.destroy();
            });
          });
          down.listen(port, '127.0.0.1');
        });
        const again = await buildOrigin({ dataDir, tokens: [origin.token], logLevel: false });
        await again.app.listen({ host: '127.0.0.1', port });
        t.teardown(() => again.app.close());
      });
    }
  });
  const result = await runProject({ cwd: dir, filters: ['alpha-1:tests/artifacts'], fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: await tokenFile(t, origin.token) });
  await restarted;
  t.equal(result.tally.ok, true, 'the job succeeded');
  t.match(out, /Artifacts of local:alpha-1:tests\/artifacts: every URL failed \(.*\); trying them again in 2 s\./);
  t.notMatch(out, /Error fetching artifacts/);
  const stored = await request(`${origin.url}/artifacts/${result.run}/local:alpha-1:tests/artifacts/report.txt`);
  t.equal(stored.statusCode, 200, 'the artifact is at the origin');
  await stored.body.dump();
});

t.test('artifacts that cannot be sent: logged as spread does, the run\'s outcome unchanged, the job listed last in the summary', async (t) => {
  const dir = await demoProject(t, { oneWorker: true });
  // a file the upload refuses before its first byte (it would read as the job's index)
  const task = join(dir, 'tests/artifacts/task.yaml');
  await writeFile(task, (await readFile(task, 'utf8')).replace('  - report.txt', '  - report.txt\n  - _index.json').replace('> report.txt', '> report.txt; echo {} > _index.json'));
  const { log, text } = capture();
  const result = await runProject({ cwd: dir, filters: ['alpha-1:tests/artifacts'], agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache') });
  t.match(text(), /Error fetching artifacts of local:alpha-1:tests\/artifacts: /);
  t.equal(result.tally.ok, true, 'the run succeeds, as spread\'s does');
  const summary = result.tally.summaryLines();
  t.equal(summary.at(-1), 'Artifacts not sent: 1\n    - local:alpha-1:tests/artifacts', 'the job is listed');
  t.equal(summary.filter((l) => l.startsWith('Artifacts')).length, 1);
});

async function tokenFile(t: Test, token: string): Promise<string> {
  const file = join(t.testdirName, 'token');
  await writeFile(file, token);
  return file;
}

// One run for both: -repeat's rounds neither pull again nor change where the machine pulls from.
t.test('a run of -repeat 2 through a fleet whose defaultRegion is auto', async (t) => {
  const dir = await demoProject(t);
  const spread = await readFile(join(dir, 'spread.yaml'), 'utf8');
  await writeFile(join(dir, 'spread.yaml'), spread.replace(/^\s+region: region-[ab]\n/gm, ''));
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const app = await regionCache('b', origin.url, join(dir, '..', 'cache-b'));
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const live = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const fleetFile = join(dir, 'fleet.yaml');
  // region a's cache, first in the file, is down: measured, it comes last
  await writeFile(fleetFile, `origin: ${origin.url}\nregions:\n  a:\n    caches: [http://127.0.0.1:1]\n  b:\n    caches: [${live}]\ndefaultRegion: auto\ndispatchDelay: 0s\n`);
  const { log, text } = capture();
  const result = await runProject({ cwd: dir, filters: ['local:alpha-1:tests/hello'], repeat: 2, fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: await tokenFile(t, origin.token) });
  if (!result.tally.ok) t.comment(text());
  t.ok(result.tally.ok, 'the run passes');

  t.test('defaultRegion: auto: machines of systems naming no region pull through the cache that answers first', async (t) => {
    t.match(text(), new RegExp(`pulls through ${live} \\(auto: `), 'the measured order, not region a by name');
    t.same(result.pulls.map((p) => p.url), [live]);
  });

  t.test('-repeat runs each job again', async (t) => {
    t.equal(result.tally.successful, 3, 'three rounds of one job');
    t.equal(text().match(/Executing local:alpha-1:tests\/hello \(local:alpha-1\) \(1\/1\)\.\.\./g)?.length, 3);
  });
});

t.test('-abend stops at the first failure without restores and keeps the machines on record: -reuse -restore takes them back, -discard releases them', async (t) => {
  const dir = await demoProject(t);
  const data = join(dir, 'cache');
  await writeFile(join(dir, 'tests/hello/task.yaml'), 'summary: fails\nexecute: exit 1\nrestore: echo restoring-hello\n');
  const opts = { cwd: dir, filters: ['alpha-1:tests/hello'], agentBundle: await agentBundle(), dataRoot: data };
  const reuseFile = async () => (JSON.parse(await readFile(join(dir, '.fleetcache-reuse.json'), 'utf8')) as { machines: Array<{ address: string }> }).machines.map((m) => m.address);
  const abended = capture();
  const a = await runProject({ ...opts, abend: true, log: abended.log });
  t.equal(a.tally.ok, false);
  t.notMatch(abended.text(), /Restoring/, 'no restore script ran');
  t.match(abended.text(), /Keeping local:alpha-1 at .* \(-abend\)/);
  const kept = await reuseFile();
  t.equal(kept.length, 1, 'the kept machine is recorded');

  const again = capture();
  await runProject({ ...opts, abend: true, reuse: true, log: again.log });
  t.match(again.text(), new RegExp(`Reusing local:alpha-1 at ${kept[0]}`));
  t.same(await reuseFile(), kept, '-reuse -abend keeps the record of the machine it took back');

  const restoring = capture();
  const r = await runProject({ ...opts, reuse: true, restoreOnly: true, log: restoring.log });
  t.equal(r.tally.ok, true);
  t.match(restoring.text(), /Reusing local:alpha-1 at /);
  t.notMatch(restoring.text(), /Allocating/, 'no new machine for -restore');
  t.match(restoring.text(), /Restoring local:alpha-1:tests\/hello \(local:alpha-1\)/);

  t.equal(await discardKeptMachines({ cwd: dir, dataRoot: data, log: capture().log }), 1);
  await t.rejects(stat(kept[0]!), { code: 'ENOENT' }, 'the machine directory is removed');
});

t.test('-reuse keeps machines and takes them back, -discard releases them; runner state is never packed', async (t) => {
  const dir = await demoProject(t);
  const data = join(dir, 'cache'); // inside the project: must not be shipped with it
  // What an earlier run with the default data directory left, the embedded origin's write token with it.
  await mkdir(join(dir, '.fleetcache', 'origin'), { recursive: true });
  await writeFile(join(dir, '.fleetcache', 'origin', 'token'), 'token-left-by-an-earlier-run');
  // the artifacts job keeps its restore but sends nothing: an upload (an agent command) each run proves nothing here
  await writeFile(join(dir, 'tests/artifacts/task.yaml'), 'summary: a task with a restore\nexecute: echo report > report.txt\nrestore: rm -f report.txt\n');
  const opts = { cwd: dir, filters: ['alpha-1'], agentBundle: await agentBundle(), dataRoot: data, reuse: true };
  const first = capture();
  const r1 = await runProject({ ...opts, log: first.log });
  t.equal(r1.tally.ok, true);
  t.equal(first.text().match(/Keeping local:alpha-1 #\d at /g)?.length, 2, 'both machines kept');
  const kept = JSON.parse(await readFile(join(dir, '.fleetcache-reuse.json'), 'utf8')) as { machines: Array<{ address: string }> };
  t.equal(kept.machines.length, 2);
  for (const m of kept.machines) {
    const found = spawnSync('grep', ['-rl', 'token-left-by-an-earlier-run', m.address], { encoding: 'utf8' });
    t.equal(found.stdout, '', 'a leftover default data directory is not shipped either');
  }

  const second = capture();
  const r2 = await runProject({ ...opts, log: second.log });
  t.equal(r2.tally.ok, true);
  // a second worker may find the queue empty and not start: its machine stays kept, untouched
  const reused = second.text().match(/Reusing local:alpha-1 #\d at /g)?.length ?? 0;
  t.ok(reused >= 1, `${reused} machine(s) taken back`);
  t.equal(second.text().match(/Reusing project data on local:alpha-1( #\d)?\.\.\./g)?.length, reused);
  t.equal(second.text().match(/Allocating /g), null, 'no new machine allocated');
  const stillKept = JSON.parse(await readFile(join(dir, '.fleetcache-reuse.json'), 'utf8')) as { machines: unknown[] };
  t.equal(stillKept.machines.length, 2, 'both machines still kept');
  t.equal(r2.pulls.length, 0, 'nothing pulled again without -resend');
  t.equal(r2.ledger.reused, reused, 'the report counts the machines that had the project');
  t.match(formatLedger(r2.ledger), new RegExp(`\\(fleet-demo, ${reused} machines?, ${reused} reusing their project\\)`));
  t.ok(r2.push.fullUploadBytes < r1.push.fullUploadBytes * 1.5, `the data directory and reuse file are not packed (${r1.push.fullUploadBytes} → ${r2.push.fullUploadBytes})`);

  // a pull cut short on a kept machine (killed runner: no marker, a partial tree) is sent again
  const markers = kept.machines.flatMap((m) => execFileSync('find', [m.address, '-name', 'project-pulled'], { encoding: 'utf8' }).split('\n').filter(Boolean));
  t.equal(markers.length, 2, 'each kept machine has its pull marked complete');
  for (const marker of markers) {
    const tree = (await readFile(marker, 'utf8')).trim();
    await rm(marker);
    await rm(join(tree, 'tests/hello/task.yaml'));
  }
  const cut = capture();
  const r2b = await runProject({ ...opts, log: cut.log });
  t.equal(r2b.tally.ok, true, 'the jobs pass on the trees sent again');
  const retaken = cut.text().match(/Reusing local:alpha-1 #\d at /g)?.length ?? 0;
  t.equal(cut.text().match(/Sending project content to local:alpha-1/g)?.length, retaken, 'the partial trees are sent again');
  t.equal(cut.text().match(/Reusing project data/g), null);
  t.equal(r2b.pulls.length, retaken);

  // -resend: the project is sent again to every machine taken back, as spread sends it
  const resent = capture();
  const r2c = await runProject({ ...opts, resend: true, log: resent.log });
  t.equal(r2c.tally.ok, true);
  const again = resent.text().match(/Reusing local:alpha-1 #\d at /g)?.length ?? 0;
  t.ok(again >= 1);
  t.equal(resent.text().match(/Removing project data from local:alpha-1 #\d at \/\S+\.\.\./g)?.length, again, "spread's line");
  t.equal(resent.text().match(/Sending project content to local:alpha-1 #\d\.\.\./g)?.length, again, 'then the project sent');
  t.equal(resent.text().match(/Reusing project data/g), null);
  t.equal(r2c.pulls.length, again);

  const restoring = capture();
  const r3 = await runProject({ ...opts, restoreOnly: true, log: restoring.log });
  t.equal(r3.tally.ok, true);
  t.notMatch(restoring.text(), /Preparing|Executing/, '-restore prepares and executes nothing');
  t.match(restoring.text(), /Restoring local:alpha-1:tests\/ \(local:alpha-1 #\d\)/, 'the suite restore ran');
  t.match(restoring.text(), /Restoring local:alpha-1:tests\/artifacts \(local:alpha-1 #\d\)/, 'a task restore ran');

  const third = capture();
  const discarded = await discardKeptMachines({ cwd: dir, log: third.log, dataRoot: data });
  t.equal(discarded, 2);
  await t.rejects(readFile(join(dir, '.fleetcache-reuse.json')), { code: 'ENOENT' }, 'reuse file removed');
  for (const m of kept.machines) await t.rejects(stat(m.address), { code: 'ENOENT' }, `machine directory ${m.address} removed`);
});

// One fleet of three regions' caches for both questions: which caches a run asks, and how.
t.test("a run asks only the caches of its machines' regions which bases they hold, without credentials, before it picks one: a region no machine of the run is in fetches no base", async (t) => {
  const dir = await demoProject(t);
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const regions = ['region-a', 'region-b', 'region-c'];
  const probed = new Map<string, Array<{ url: string; authorization: string | undefined }>>();
  const urls: string[] = [];
  for (const region of regions) {
    const cache = await regionCache(region, origin.url, join(dir, '..', region));
    probed.set(region, []);
    cache.addHook('onRequest', async (req) => {
      if (req.method === 'HEAD' && /only-if-cached/.test(String(req.headers['cache-control']))) probed.get(region)!.push({ url: req.url, authorization: req.headers.authorization });
    });
    await cache.listen({ host: '127.0.0.1', port: 0 });
    t.teardown(() => cache.close());
    urls.push(`http://127.0.0.1:${(cache.server.address() as AddressInfo).port}`);
  }
  const fleetFile = join(dir, 'fleet.yaml');
  await writeFile(fleetFile, `origin: ${origin.url}\nregions:\n${regions.map((r, i) => `  ${r}:\n    caches: [${urls[i]}]\n`).join('')}dispatchDelay: 0s\n`);
  const token = await tokenFile(t, origin.token);
  // alpha-1 is in region-b here: neither the fleet's first region nor its only one
  await writeFile(join(dir, 'spread.yaml'), (await readFile(join(dir, 'spread.yaml'), 'utf8')).replace('region: region-a', 'region: region-b'));
  const run = async () => {
    const { log, text } = capture();
    const result = await runProject({ cwd: dir, filters: ['local:alpha-1:tests/hello'], fleetFile, agentBundle: await agentBundle(), log, dataRoot: join(dir, 'cache'), tokenFile: token });
    if (!result.tally.ok) t.comment(text());
    t.equal(result.tally.ok, true);
    return result;
  };
  const first = await run();
  t.same([...probed.values()].flat(), [], 'the first run: no base to ask about');
  // a second base: the caches are asked only to rank candidates, one alone is not asked about
  await writeFile(join(dir, 'large.bin'), randomBytes(512 << 10));
  const second = await run();
  t.same([...probed.values()].flat(), [], 'the second run: one candidate base, no cache asked');
  t.not(second.push.manifest.base.digest, first.push.manifest.base.digest, 'a second base');
  await writeFile(join(dir, 'NEW.md'), 'a change\n');
  await run();
  const bases = [first, second].map((r) => `/cas/sha256/${parseDigestString(r.push.manifest.base.digest).hex}`).sort();
  t.same(probed.get('region-b')!.sort((x, y) => x.url.localeCompare(y.url)), bases.map((url) => ({ url, authorization: undefined })), "the third run asked region-b's cache, its machine's, for each base, without the write token");
  t.same(probed.get('region-a'), [], 'region-a, which no machine of the run is in, was not asked');
  t.same(probed.get('region-c'), [], 'nor region-c');
});

t.test("a base lost at the origin is passed over with a warning: the run makes a new base and passes", async (t) => {
  const dir = await demoProject(t);
  const dataRoot = join(dir, 'cache');
  const run = async () => {
    const { log, text } = capture();
    const result = await runProject({ cwd: dir, filters: ['local:alpha-1:tests/hello'], agentBundle: await agentBundle(), log, dataRoot });
    if (!result.tally.ok) t.comment(text());
    return { result, out: text() };
  };
  const first = await run();
  t.equal(first.result.tally.ok, true);
  // The base's blob gone from the origin (this runner's base cache still has the tar).
  const base = /Sent .* as a new base \(run (\S+)\)/.exec(first.out)?.[1];
  const names = new NameStore(join(dataRoot, 'origin'));
  const manifest = await names.get<{ base: { id: string; digest: string } }>(['projects', 'fleet-demo', 'runs', base!]);
  const hex = parseDigestString(manifest.base.digest).hex;
  const blobs = new DiskBlobStore(join(dataRoot, 'origin'));
  await blobs.delete(parseDigestString(manifest.base.digest));
  await writeFile(join(dir, 'NEW.md'), 'a change\n');
  const second = await run();
  t.equal(second.result.tally.ok, true, 'the run passes');
  t.match(second.out, new RegExp(`WARNING: base ${manifest.base.id} at the origin cannot be used, passed over .*: its blob sha256:${hex} is not at the origin \\(HTTP 404\\)`));
  t.match(second.out, /Sent .* to the origin as a new base/);
});
