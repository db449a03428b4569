// A task's tooltool assets (fleetcache's `assets:` field) fetched by the agent on the machine
// before the task runs, and what the fetch warns of shown in the run's log.
import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatManifest } from '../../src/assets/manifest.js';
import { uploadAssets } from '../../src/assets/upload.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { DEFAULT_MAX_SIZE, DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { discardKeptMachines } from '../../src/run/discard.js';
import { RunLog } from '../../src/run/report.js';
import { startOrigin } from '../helpers/origin.js';
import { eventually } from '../helpers/wait.js';
import { project, run, spreadYaml } from './project.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

/** A proxy to `origin` that answers 503 to every tooltool download (/sha512/…): a cache behind it fails its assets only. */
function assetlessProxy(t: Test, origin: string): Promise<string> {
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/sha512/')) {
      res.writeHead(503).end('injected: no assets through this link\n');
      return;
    }
    const forward = http.request(new URL(req.url ?? '/', origin), { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  return serveOnLoopback(t, server);
}

/**
 * An origin holding `tool` as an asset (uploaded as a release engineer would) and region-a's
 * cache in front of it, beside the project in `dir`: the fleet file, the token file, the
 * asset's manifest and digest.
 */
async function assetFleet(t: Test, dir: string, tool: Buffer, options: { cacheRefusesAssets?: boolean } = {}): Promise<{ cache: FastifyInstance; fleetFile: string; tokenFile: string; manifest: string; digest: string }> {
  const base = join(dir, '..');
  const origin = await startOrigin(t, { dataDir: join(base, 'origin') });
  const upstream = options.cacheRefusesAssets ? await assetlessProxy(t, origin.url) : origin.url;
  const cache = await buildCacheServer({ region: 'region-a', upstream, dataDir: join(base, 'cache-a'), maxSize: DEFAULT_MAX_SIZE, timeouts: DEFAULT_TIMEOUTS, mirrors: new Map(), logLevel: 'silent' });
  const cacheUrl = await cache.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => cache.close());
  const digest = createHash('sha512').update(tool).digest('hex');
  const upload = join(base, 'upload');
  await mkdir(upload);
  await writeFile(join(upload, 'tool.bin'), tool);
  const manifest = formatManifest([{ filename: 'tool.bin', size: tool.length, algorithm: 'sha512', digest, unpack: false, visibility: 'public' }]);
  await writeFile(join(upload, 'manifest.tt'), manifest);
  await uploadAssets({ manifestPath: join(upload, 'manifest.tt'), origin: origin.url, token: origin.token, dir: upload });
  const fleetFile = join(base, 'fleet.yaml');
  await writeFile(fleetFile, `origin: ${origin.url}\nregions:\n  region-a:\n    caches: [${cacheUrl}]\ndispatchDelay: 0s\n`);
  const tokenFile = join(base, 'token');
  await writeFile(tokenFile, origin.token);
  return { cache, fleetFile, tokenFile, manifest, digest };
}

t.test('a task\'s asset is fetched on the machines through their region\'s cache, from the origin once', async (t) => {
  // project() makes the test directory (once per test): everything else goes beside the project
  const backend = ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          region: region-a', '          workers: 2'];
  const task = (name: string): string => `summary: ${name}\nassets: manifest.tt\nexecute: test "$(sha512sum tool.bin | cut -d' ' -f1)" = "$(cat want)"\n`;
  const dir = await project(t, spreadYaml('assets-fleet', backend), { 's/one': task('one'), 's/two': task('two') });
  const tool = randomBytes(256 * 1024);
  const { cache, fleetFile, tokenFile, manifest, digest } = await assetFleet(t, dir, tool);
  // two workers of one system in region-a, two tasks each needing the asset
  for (const name of ['one', 'two']) {
    await writeFile(join(dir, `s/${name}/manifest.tt`), manifest);
    await writeFile(join(dir, `s/${name}/want`), digest);
  }
  const { result, out } = await run(dir, [], { fleetFile, tokenFile });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.successful, 2, 'both tasks found the asset, digest right');
  // each machine downloads it once (its cache folder serves its next task): one or two
  // downloads, as the two tasks went to one worker or to both
  t.ok([tool.length, 2 * tool.length].includes(result.assetBytes), `the machines downloaded it once each (${result.assetBytes} bytes)`);
  // an answer is counted once its last write is done, which can come after the client read it
  await eventually('the cache counted what it served', () => cache.cache.metrics.stats().kinds.tooltool?.bytesServed === result.assetBytes);
  const stats = cache.cache.metrics.stats().kinds.tooltool;
  t.equal(stats?.bytesUpstream, tool.length, 'which fetched it from the origin once');
});

t.test('a -reuse run whose machines pulled nothing: the assets they used are the origin\'s naive egress', async (t) => {
  const backend = ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          region: region-a'];
  const dir = await project(t, spreadYaml('assets-reuse', backend), {
    // removed once used: the next run on the machine fetches it again (from the machine's cache folder)
    's/t': 'summary: uses a tool\nassets: manifest.tt\nexecute: test -s tool.bin\nrestore: rm tool.bin\n',
  });
  const tool = randomBytes(64 * 1024);
  const { fleetFile, tokenFile, manifest } = await assetFleet(t, dir, tool);
  await writeFile(join(dir, 's/t/manifest.tt'), manifest);
  const first = await run(dir, [], { fleetFile, tokenFile, reuse: true });
  t.equal(first.result.tally.ok, true, 'the first run pulled and kept its machine');
  const { result, out } = await run(dir, [], { fleetFile, tokenFile, reuse: true });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'the second ran on it');
  t.equal(result.pulls.length, 0, 'no pull: the machine had the project');
  const machines = result.ledger.links.find((l) => l.link === 'cache region-a → machines');
  t.equal(machines?.naiveBytes, tool.length, 'its asset is the naive bytes of its region');
  t.equal(result.ledger.originEgress.naive, tool.length, 'and of the origin\'s egress');
  t.equal(await discardKeptMachines({ cwd: dir, dataRoot: join(dir, 'cache'), log: new RunLog(() => undefined) }), 1, 'the machine discarded');
});

t.test('machines with no cache fetch assets from the origin: on a link of their own; one in the task directory is used, its manifest\'s mistakes warned of', async (t) => {
  const backend = ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:'];
  // s/local has its asset beside its manifest (one the origin does not hold): nothing to download
  const dir = await project(t, spreadYaml('assets-direct', backend), {
    's/t': 'summary: uses a tool\nassets: manifest.tt\nexecute: test -s tool.bin\n',
    's/local': 'summary: uses a tool\nassets: manifest.tt\nexecute: grep -q "a tool" tool.bin\n',
  });
  const local = Buffer.from('a tool\n');
  await writeFile(join(dir, 's/local/manifest.tt'), JSON.stringify([{
    filename: 'tool.bin', size: local.length, algorithm: 'sha512', digest: createHash('sha512').update(local).digest('hex'), visibility: 'Public',
  }]));
  await writeFile(join(dir, 's/local/tool.bin'), local);
  const tool = randomBytes(64 * 1024);
  const { fleetFile, tokenFile, manifest } = await assetFleet(t, dir, tool);
  await writeFile(join(dir, 's/t/manifest.tt'), manifest);
  // the same origin, no cache: every machine goes to the origin itself
  const origin = /^origin: (\S+)$/m.exec(await readFile(fleetFile, 'utf8'))![1]!;
  await writeFile(fleetFile, `origin: ${origin}\ndispatchDelay: 0s\n`);
  const { result, out } = await run(dir, [], { fleetFile, tokenFile });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.successful, 2, 'both tasks ran with their asset');
  t.equal(result.assetBytes, tool.length, 'the machine downloaded the one it did not have');
  t.match(out, /WARNING: assets of local:alpha-1:s\/local \(local:alpha-1\): \S*manifest\.tt:1: record 0: visibility "Public" is neither "public" nor "internal"/);
  const link = result.ledger.links.find((l) => l.link === 'origin → machines (assets, direct)');
  t.same(link, { link: 'origin → machines (assets, direct)', actualBytes: tool.length, naiveBytes: tool.length }, 'on a link of the report');
});

t.test('a machine that pulled through its cache but got its assets from the origin itself: those bytes are on the origin\'s direct link, not its region\'s', async (t) => {
  const backend = ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          region: region-a'];
  const dir = await project(t, spreadYaml('assets-fallback', backend), { 's/t': 'summary: uses a tool\nassets: manifest.tt\nexecute: test -s tool.bin\n' });
  const tool = randomBytes(64 * 1024);
  const { cache, fleetFile, tokenFile, manifest } = await assetFleet(t, dir, tool, { cacheRefusesAssets: true });
  await writeFile(join(dir, 's/t/manifest.tt'), manifest);
  const { result, out } = await run(dir, [], { fleetFile, tokenFile });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'the task ran with its asset');
  t.same(result.pulls.map((p) => p.region), ['region-a'], 'the project came through the cache');
  // what it served of that kind is the refusal passed on (a short JSON error body, counted since a48e953), not the asset
  const served = cache.cache.metrics.stats().kinds.tooltool?.bytesServed ?? 0;
  t.ok(served < tool.length, `the cache served no asset (${served} bytes of errors, the asset has ${tool.length})`);
  const link = result.ledger.links.find((l) => l.link === 'origin → machines (assets, direct)');
  t.same(link, { link: 'origin → machines (assets, direct)', actualBytes: tool.length, naiveBytes: tool.length }, 'the asset is on the origin\'s direct link');
  const machines = result.ledger.links.find((l) => l.link === 'cache region-a → machines');
  t.equal(machines?.naiveBytes, result.push.fullUploadBytes + result.push.manifestBytes, 'the region\'s naive bytes are its machine\'s project (tar and run manifest) only');
});

/**
 * A region-b cache beside region-a's `cache`, in the fleet file, with one machine started at a
 * time, the second 6 s after the first: its pull comes after the first's asset fetch failed.
 */
async function secondRegionAfter(t: Test, dir: string, cache: FastifyInstance, fleetFile: string): Promise<{ cacheUrl: string; otherUrl: string }> {
  const origin = /^origin: (\S+)$/m.exec(await readFile(fleetFile, 'utf8'))![1]!;
  const other = await buildCacheServer({ region: 'region-b', upstream: origin, dataDir: join(dir, '..', 'cache-b'), maxSize: DEFAULT_MAX_SIZE, timeouts: DEFAULT_TIMEOUTS, mirrors: new Map(), logLevel: 'silent' });
  const otherUrl = await other.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => other.close());
  const cacheUrl = `http://127.0.0.1:${(cache.server.address() as AddressInfo).port}`;
  await writeFile(fleetFile, [`origin: ${origin}`, 'regions:', `  region-a:\n    caches: [${cacheUrl}]`, `  region-b:\n    caches: [${otherUrl}]`, 'startupLimit: 1', 'dispatchDelay: 6s', ''].join('\n'));
  return { cacheUrl, otherUrl };
}

t.test("a cache an asset fetch gave up on is tried last by the run's next machines, as one a pull gave up on", async (t) => {
  const systems = ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          region: region-a', '      - alpha-2:', '          region: region-a'];
  const dir = await project(t, spreadYaml('assets-memory', systems), { 's/t': 'summary: uses a tool\nassets: manifest.tt\nexecute: test -s tool.bin\n' });
  const tool = randomBytes(64 * 1024);
  const { cache, fleetFile, tokenFile, manifest } = await assetFleet(t, dir, tool, { cacheRefusesAssets: true });
  await writeFile(join(dir, 's/t/manifest.tt'), manifest);
  const { cacheUrl, otherUrl } = await secondRegionAfter(t, dir, cache, fleetFile);
  const { result, out } = await run(dir, [], { fleetFile, tokenFile });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'both tasks ran with their asset');
  t.same(result.pulls.map((p) => p.url), [cacheUrl, otherUrl], "the first machine pulled through its region's cache, the second through the other region's");
  t.match(out, new RegExp(`pulls through ${otherUrl} \\(region region-a; tried last, unreachable for a machine of this run lately: ${cacheUrl}\\)`));
});

t.test("a cache an asset fetch gave up on is tried last by the run's next machines also when no URL served the file", async (t) => {
  const systems = ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          region: region-a', '      - alpha-2:', '          region: region-a'];
  const dir = await project(t, spreadYaml('assets-memory-failed', systems), { 's/t': 'summary: uses a tool\nassets: manifest.tt\nexecute: test -s tool.bin\n' });
  const { cache, fleetFile, tokenFile } = await assetFleet(t, dir, randomBytes(1024), { cacheRefusesAssets: true });
  // a file the origin does not have: the cache fails it (503), then the origin (404)
  const missing = randomBytes(1024);
  await writeFile(join(dir, 's/t/manifest.tt'), formatManifest([{ filename: 'tool.bin', size: missing.length, algorithm: 'sha512', digest: createHash('sha512').update(missing).digest('hex'), unpack: false, visibility: 'public' }]));
  const { cacheUrl, otherUrl } = await secondRegionAfter(t, dir, cache, fleetFile);
  const { result, out } = await run(dir, [], { fleetFile, tokenFile });
  t.equal(result.tally.ok, false, 'no machine had the asset');
  t.same(result.pulls.map((p) => p.url), [cacheUrl, otherUrl], "the second machine pulled through the other region's cache", { out });
  t.match(out, new RegExp(`pulls through ${otherUrl} \\(region region-a; tried last, unreachable for a machine of this run lately: ${cacheUrl}\\)`));
  t.match(out, new RegExp(`WARNING: assets of [^\\n]*: tool\\.bin: GET ${cacheUrl}/`), "the fetch's warnings are logged too");
  t.match(out, /Error fetching assets of [^\n]*: agent assets on [^\n]* failed: "tool\.bin: every URL failed: [^\n]*"\n/, 'the error says which file failed and why, in words, quoted');
});

t.test("a cache that never answers for an asset costs the machine the fleet's cacheTimeout, then the origin serves it", async (t) => {
  const dir = await project(t, spreadYaml('assets-hung', ['backends:', '  local:', '    type: local', '    systems:', '      - alpha-1:', '          region: region-a']), {
    's/t': 'summary: uses a tool\nassets: manifest.tt\nexecute: test "$(sha512sum tool.bin | cut -d\' \' -f1)" = "$(cat want)"\n',
  });
  const tool = randomBytes(64 * 1024);
  const { cache, fleetFile, tokenFile, manifest, digest } = await assetFleet(t, dir, tool);
  // The cache serves the project, and takes every asset request without ever answering it
  // (before its own listeners, which answer a hit before fastify sees it: fast-hit.ts).
  const hung = new Set<Socket>();
  const answering = cache.server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  cache.server.removeAllListeners('request');
  cache.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith('/sha512/')) return void hung.add(req.socket);
    for (const listener of answering) listener.call(cache.server, req, res);
  });
  t.teardown(() => {
    for (const socket of hung) socket.destroy();
  });
  await writeFile(join(dir, 's/t/manifest.tt'), manifest);
  await writeFile(join(dir, 's/t/want'), digest);
  await writeFile(fleetFile, `${await readFile(fleetFile, 'utf8')}cacheTimeout: 1s\n`);
  const started = Date.now();
  const { result, out } = await run(dir, [], { fleetFile, tokenFile });
  const took = Date.now() - started;
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.successful, 1, 'the task found its asset');
  t.ok(hung.size > 0, 'the cache was asked for it first');
  t.match(out, /WARNING: assets of local:alpha-1:s\/t \(local:alpha-1\): tool\.bin: GET http:\/\/127\.0\.0\.1:\d+\/sha512\/\S+: .*timeout/i, 'the cache given up on, for its silence');
  t.ok(took < 30_000, `the run took seconds, not the client's minute of waiting for headers (${took} ms)`);
});
