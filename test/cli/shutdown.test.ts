// A server stopped by SIGTERM drains: it takes no new connection, lets the transfers in
// flight finish for up to its shutdownTimeout, then cuts what is left (never a clean end of
// a cut body) and exits. As under systemd, a cache's workers get the signal too.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { Agent, request } from 'undici';
import { filesUnder } from '../helpers/crash.js';
import { pacedProxy } from '../helpers/paced-proxy.js';
import { descendantsOf, startServerProcess, type RunningServer } from '../helpers/processes.js';
import { uploadBlob } from '../helpers/origin.js';
import { eventually } from '../helpers/wait.js';

const TOKEN = 'shutdown-test-token';
const MiB = 1024 * 1024;
// More than loopback buffers hold: a paused reader holds the answer open. 1 MiB did not (the
// drain tests fail: the transfers end), 5 MiB did; 16 MiB leaves room, and each of the file's
// uploads, fills and downloads costs half what 32 MiB did.
const blob = randomBytes(16 * MiB);
const hex = createHash('sha256').update(blob).digest('hex');

/**
 * An origin process in `dir` (made by the caller, with t.testdir() once) holding the blob,
 * logging from `logLevel`; stopped when `owner` ends (the test itself, or the file for the
 * shared upstream).
 */
async function startOriginWithBlob(t: Test, dir: string, shutdownTimeout: string, { owner = t, logLevel = 'warn' }: { owner?: Test; logLevel?: string } = {}): Promise<RunningServer> {
  writeFileSync(join(dir, 'origin.yaml'), `shutdownTimeout: ${shutdownTimeout}\n`);
  const origin = await startServerProcess(owner, ['origin', '-c', join(dir, 'origin.yaml'), '--listen', '127.0.0.1:0', '--data', join(dir, 'data')], { FLEETCACHE_TOKEN: TOKEN, FLEETCACHE_LOG_LEVEL: logLevel });
  const put = await request(`${origin.url}/cas/sha256/${hex}`, { method: 'PUT', body: blob, headers: { authorization: `Bearer ${TOKEN}` } });
  await put.body.dump();
  t.equal(put.statusCode, 201);
  return origin;
}

/** Starts a download (of the blob, or of `digest`) on a connection of its own and reads nothing yet: `finish()` reads it whole and hashes it. */
async function pausedDownload(url: string, digest = hex): Promise<{ finish: () => Promise<string> }> {
  const dispatcher = new Agent();
  const res = await request(`${url}/cas/sha256/${digest}`, { dispatcher });
  res.body.pause();
  return {
    finish: async () => {
      const h = createHash('sha256');
      try {
        for await (const c of res.body) h.update(c as Buffer);
        return h.digest('hex');
      } finally {
        await dispatcher.destroy();
      }
    },
  };
}

function refusesConnections(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(port), hostname);
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });
}

const exited = (server: RunningServer): Promise<number | null> =>
  server.child.exitCode !== null ? Promise.resolve(server.child.exitCode) : new Promise((resolve) => server.child.once('exit', (code) => resolve(code)));

/**
 * The upstream of the caches whose own shutdown is tested, started once for the file (a
 * process start and a 16 MiB upload less per test), in a directory of its own: signalled only
 * by the last test, the origin's own drain, once every cache in front of it is gone.
 */
let sharedUpstream: Promise<RunningServer> | undefined;
function upstreamOrigin(test: Test): Promise<RunningServer> {
  return (sharedUpstream ??= (() => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetcache-shutdown-upstream-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    return startOriginWithBlob(test, dir, '30s', { owner: t, logLevel: 'info' });
  })());
}

/**
 * A two-worker cache in front of an origin holding the blob (the shared one unless `upstream`
 * names another URL), the blob already asked once: a first client left after the first bytes
 * (dump's limit), and the fill it started goes on.
 */
async function startCacheWithWorkers(t: Test, shutdownTimeout: string, { dir = t.testdir({ origin: {} }), upstream }: { dir?: string; upstream?: string } = {}): Promise<RunningServer> {
  const origin = upstream ?? (await upstreamOrigin(t)).url;
  writeFileSync(join(dir, 'cache.yaml'), `upstream: ${origin}\nshutdownTimeout: ${shutdownTimeout}\n`);
  const cache = await startServerProcess(t, ['cache', '-c', join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', join(dir, 'data'), '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const first = await request(`${cache.url}/cas/sha256/${hex}`);
  await first.body.dump();
  return cache;
}

t.test('cache with workers: SIGTERM to the primary and its workers (systemd) lets a transfer finish', async (t) => {
  const cache = await startCacheWithWorkers(t, '30s');
  // This client, on a connection of its own (the other worker, in turn), follows the fill.
  const download = await pausedDownload(cache.url);
  for (const pid of [cache.child.pid!, ...descendantsOf(cache.child.pid!)]) process.kill(pid, 'SIGTERM');
  await sleep(300);
  process.kill(cache.child.pid!, 'SIGTERM'); // a second one, as a restart script may send
  await sleep(300);
  t.equal(cache.child.exitCode, null, 'still running after a second SIGTERM: a transfer is in flight');
  t.equal(await download.finish(), hex, 'the transfer in flight ends whole');
  t.equal(await exited(cache), 0, 'exit 0');
});

t.test('cache with workers: SIGHUP, then SIGINT twice (one process for both: a SIGHUP leaves it as it was)', async (t) => {
  // The shared upstream: a SIGHUP leaves it serving (checked here), and nothing else sends it one.
  const origin = await upstreamOrigin(t);
  const cache = await startCacheWithWorkers(t, '60s');

  await t.test('SIGHUP is ignored, and said so: a download in flight goes on, the server keeps serving (origin, and a cache with workers)', async (t) => {
    for (const server of [origin, cache]) {
      const download = await pausedDownload(server.url);
      // a terminal's hangup reaches every process of its group: the cache's workers too
      for (const pid of [server.child.pid!, ...descendantsOf(server.child.pid!)]) process.kill(pid, 'SIGHUP');
      await eventually('the warning', () => /SIGHUP ignored: the configuration and tokens are read at start; restart the server to apply changes/.test(server.stderr()));
      await sleep(300); // a process the signal ended would be gone by now
      t.equal(server.child.exitCode, null, 'still running');
      t.equal(await download.finish(), hex, 'the download in flight is whole');
      const again = await request(`${server.url}/cas/sha256/${hex}`, { method: 'HEAD' });
      await again.body.dump();
      t.equal(again.statusCode, 200, 'and it serves on');
      t.equal(server.stderr().match(/SIGHUP ignored/g)?.length, 1, 'said once');
    }
  });

  await t.test('a second SIGINT to the primary cuts its workers\' transfers', async (t) => {
    const download = await pausedDownload(cache.url);
    const t0 = Date.now();
    process.kill(cache.child.pid!, 'SIGINT');
    await sleep(300);
    t.equal(cache.child.exitCode, null, 'draining after the first SIGINT');
    process.kill(cache.child.pid!, 'SIGINT');
    t.equal(await exited(cache), 0, 'exit 0');
    t.ok(Date.now() - t0 < 30_000, `cut at once (${Date.now() - t0} ms), not after the 60 s timeout`);
    await t.rejects(download.finish(), 'the cut transfer errors');
  });
});

/**
 * The files under a cache's data directory but its lock secret and the blob's entries. By
 * name only (filesUnder): the waits below ask every 20 ms, and reading and hashing every
 * file each time (describeTree), the blob and the growing temp files too, cost seconds.
 */
const leftBesideBlob = (data: string): string[] => filesUnder(data).filter((f) => f !== '.lock-id' && !f.includes(hex));

// fastify's pluginTimeout (10 s by default) bounds close hooks too: a drain that outlasted it
// crashed the process (exit 1, AVV_ERR_READY_TIMEOUT) at 10 s, each worker of a cache too.
// Its 10.5 s of waiting are spent while the tests above run: started with the file (its
// servers the file's, in a directory of its own), checked by the tests below. The cache
// also has a fill and an upload in flight, both still coming when the cut comes.
const LONG_DRAIN = '10500ms';
const longDrain = (async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetcache-shutdown-drain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'origin'));
  const origin = await startOriginWithBlob(t, join(dir, 'origin'), LONG_DRAIN);
  // The cache in front of the shared upstream (the origin here has one transfer in flight, the
  // paused download), through a proxy that trickles a second blob: 16 KiB every 100 ms, 25 s
  // at the least for 4 MiB, so its fill is still coming when the cut comes at 10.5 s.
  const upstream = await upstreamOrigin(t);
  const trickled = await uploadBlob(upstream.url, randomBytes(4 * MiB), TOKEN);
  const slowUpstream = await pacedProxy(t, upstream.url, (path) => path.endsWith(trickled), { bytes: 16 * 1024, everyMs: 100 });
  const cache = await startCacheWithWorkers(t, LONG_DRAIN, { dir, upstream: slowUpstream });
  const servers = [origin, cache];
  const downloads = await Promise.all(servers.map((s) => pausedDownload(s.url)));
  const data = join(dir, 'data');
  // the blob's fill (its body in tmp/) committed: what comes next in tmp/ is the cut ones'
  // (generous: three files at once on two loaded cores took more than 10 s)
  await eventually('the fill committed', () => leftBesideBlob(data).length === 0, 60_000);
  downloads.push(await pausedDownload(cache.url, trickled));
  const temps = () => leftBesideBlob(data).filter((f) => f.startsWith('tmp/') || f.includes('/.tmp-')).length;
  await eventually('the trickled fill has its temp file', () => temps() > 0);
  const filling = temps();
  const body = randomBytes(4 * MiB);
  // 32 KiB every 200 ms: 25 s at the least, still coming when the cut comes at 10.5 s.
  async function* slowly(): AsyncGenerator<Buffer> {
    for (let at = 0; at < body.length; at += 32 * 1024) {
      yield body.subarray(at, at + 32 * 1024);
      await sleep(200);
    }
  }
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.destroy());
  const upload = request(`${cache.url}/cas/sha256/${createHash('sha256').update(body).digest('hex')}`, {
    method: 'PUT', body: Readable.from(slowly()), dispatcher, headers: { authorization: `Bearer ${TOKEN}`, 'content-length': String(body.length) },
  });
  void upload.catch(() => undefined); // checked below
  await eventually('the upload has its temp file too', () => temps() > filling);
  const t0 = Date.now();
  for (const s of servers) process.kill(s.child.pid!, 'SIGTERM');
  const codes = await Promise.all(servers.map(exited));
  return { servers, downloads, codes, took: Date.now() - t0, upload, data };
})();
void longDrain.catch(() => undefined); // the tests below report it

t.test('a drain longer than 10 s is cut at shutdownTimeout, exit 0: origin, cache with workers (a download of a committed blob and one following a fill)', async (t) => {
  const { servers, downloads, codes, took } = await longDrain;
  t.same(codes, [0, 0], 'each exits 0');
  t.ok(took >= 10_400, `after the shutdown timeout (${took} ms)`);
  for (const d of downloads) await t.rejects(d.finish(), 'the cut transfer errors');
  // the origin's one transfer in flight, never ended clean
  t.match(servers[0]!.stderr(), /"level":40,[^\n]*"connections":1,"shutdownTimeoutMs":10500,"msg":"shutdown timeout: cutting what is still in flight"/, 'the origin logs the cut, with what was cut');
  t.match(servers[1]!.stderr(), /"shutdownTimeoutMs":10500,"msg":"shutdown timeout: cutting what is still in flight"/, 'the cache logs the cut');
  for (const s of servers) t.notMatch(s.stderr(), /AVV_ERR_READY_TIMEOUT|did not start in time/, 'no close timeout');
});

t.test('cache with workers: a fill and an upload cut at shutdownTimeout leave no temp file behind', async (t) => {
  const { upload, data } = await longDrain;
  await t.rejects(upload, 'the cut upload errors');
  t.same(leftBesideBlob(data), [], 'no claim, link or temp file of the cut fill, no temp file of the cut upload is left: only the lock secret and the blob');
});

t.test('origin: a transfer in flight finishes, then the process exits, saying in its log that a signal stopped it (the shared upstream, last: its caches are gone)', async (t) => {
  await longDrain.catch(() => undefined); // its cache, the last in front of the shared upstream, is gone
  const origin = await upstreamOrigin(t);
  const download = await pausedDownload(origin.url);
  const t0 = Date.now();
  process.kill(origin.child.pid!, 'SIGTERM');
  await sleep(300);
  t.ok(await refusesConnections(origin.url), 'no new connection is taken while draining');
  t.equal(origin.child.exitCode, null, 'still running: a transfer is in flight');
  t.equal(await download.finish(), hex, 'the transfer in flight ends whole');
  t.equal(await exited(origin), 0, 'exit 0');
  t.ok(Date.now() - t0 < 10_000, `exited once the transfer ended (${Date.now() - t0} ms), not at the timeout`);
  t.match(origin.stderr(), /"signal":"SIGTERM","msg":"stopping: draining the requests in flight"/, 'the log says a signal stopped it');
});
