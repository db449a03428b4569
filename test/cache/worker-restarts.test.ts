// A worker of a multi-process cache that dies after the cache started is replaced, after a
// delay that doubles with each death of the last minute (workerRestartDelay; 0.25 s, 0.5 s,
// 1 s, 2 s by default); the fifth death within a minute stops the cache (as systemd's
// StartLimitBurst): an error logged, the other workers stopped, and the primary exits
// non-zero for its supervisor to see.
// What a dead worker committed but had not reported yet is still counted and evicted.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { request } from 'undici';
import { casId } from '../../src/cache/disk-store.js';
import { EXIT } from '../../src/errors.js';
import { isAlive, rememberProcess, startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers, fetchHash, metricSum } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

// One cache for three subtests (a cache start is half a second of CPU, and each worker more):
// the first pauses it whole, the second stops a worker, which the primary kills after
// workerTimeout, the third counts that death as the first of five.
t.test('two workers, workerTimeout 1s, workerRestartDelay 100ms: a pause of the whole cache, a stopped worker killed by the primary, then each replacement killed in turn', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blob = up.addBlob(4096);
  const dir = t.testdir();
  // the file without an upstream: --upstream gives it (flags override the file)
  // workerTimeout 1 s (the primary looks every 333 ms): the waits below are in proportion to it.
  // workerRestartDelay 100 ms, 200, 400, 800 (the default's 250 ms, 0.5, 1, 2 s in all took 3.75 s)
  writeFileSync(path.join(dir, 'cache.yaml'), 'workerTimeout: 1s\nworkerRestartDelay: 100ms\n');
  const cache = await startServerProcess(t, ['cache', '-c', path.join(dir, 'cache.yaml'), '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', path.join(dir, 'data'), '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const exited = new Promise<number | null>((resolve) => cache.child.once('exit', (code) => resolve(code)));
  const primary = cache.child.pid!;
  const [first, survivor] = cacheWorkers(primary);
  /** When the last worker was killed. */
  let killedAt = 0;

  await t.test('a pause of the whole cache longer than workerTimeout kills no worker', async (t) => {
    // The whole cache stopped for longer than workerTimeout (Ctrl-Z, a paused machine), then
    // resumed: nobody is killed, since the primary was stopped too. The workers are stopped
    // a little before the primary (under workerTimeout), so that the primary, which looks
    // every workerTimeout / 3, has asked them a question they left unanswered: a primary that
    // took the pause for their silence would kill them at its first look after it, well
    // within the wait below.
    const workers = [first!, survivor!];
    for (const pid of workers) process.kill(pid, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 600));
    process.kill(primary, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 1500));
    for (const pid of [primary, ...workers]) process.kill(pid, 'SIGCONT');
    await new Promise((r) => setTimeout(r, 1250));
    t.notMatch(cache.stderr(), /does not answer/, 'a pause of the whole cache kills no worker');
    t.ok(workers.every((pid) => isAlive(pid)), 'both workers live on');
  });

  await t.test('a worker that stops answering (SIGSTOP) is killed after workerTimeout and replaced; no connection is lost with it, every fresh one is answered', async (t) => {
    const stopped = rememberProcess(first!);
    t.teardown(() => stopped.kill('SIGKILL'));
    stopped.kill('SIGSTOP');
    // The primary hands the stopped worker one of these, which it never takes: once the
    // worker is killed, that one goes to the other worker (handoff.ts). With Node's round
    // robin it was never answered nor closed: Node kept it in flight.
    const settled: string[] = [];
    for (let i = 0; i < 6; i++) {
      void fetchHash(`${cache.url}/-/healthz`, {}, { fresh: true }).then(
        (r) => settled.push(`${i}:${r.status}`),
        (err: Error) => settled.push(`${i}:${err.message}`),
      );
    }
    await eventually('the silent worker is killed', () => !isAlive(first!), 15_000);
    let killLine: RegExpExecArray | null = null;
    await eventually('the kill logged', () => (killLine = /"time":(\d+),.*"silentMs":\d+,"msg":"cache worker does not answer: killing it"/.exec(cache.stderr())) !== null);
    killedAt = Number(killLine![1]); // logged just before the kill
    await eventually('replaced as a worker that died', () => /"signal":"SIGKILL".*"msg":"cache worker died: starting another"/.test(cache.stderr()));
    // (on failure, the ones left are ended by the cache's stop at the test's end)
    await eventually('every one settled', () => settled.length === 6, 10_000).catch((err: Error) => t.fail(`${err.message}: ${settled.join(' ')}`));
    t.equal(settled.filter((s) => s.endsWith(':200')).length, 6, `all six answered 200 (${settled.join(' ')})`);
    t.equal(await metricSum(cache.url, 'fleetcache_cache_connections_rerouted_total'), 1, 'the one the stopped worker held was handed on, and counted');
    await eventually('a replacement runs', () => cacheWorkers(primary).length === 2, 30_000);
    // on fresh connections, spread over both workers: each answered
    const got = await Promise.all(Array.from({ length: 12 }, () => fetchHash(`${cache.url}/cas/sha256/${blob.hex}`, {}, { fresh: true })));
    t.ok(got.every((g) => g.status === 200 && g.hash === blob.hex), 'twelve answers');
    t.equal(cache.child.exitCode, null, 'the cache serves on');
  });

  await t.test('a worker killed five times within a minute: replaced with back-off, then the cache gives up', async (t) => {
    t.ok(survivor !== undefined && first !== undefined, 'two workers');
    // The worker the primary killed above was the first death. Each replacement of the one
    // killed before is killed in turn; the other worker lives on.
    const seen = new Set([survivor, first]);
    let victim = first!;
    for (let death = 1; death <= 5; death++) {
      if (death > 1) {
        process.kill(victim, 'SIGKILL');
        killedAt = Date.now();
      }
      if (death === 5) break;
      let next: number | undefined;
      // Seen once in CI (no replacement after death 2): what the primary logged, and whether it lives, say why.
      await eventually(`a replacement after death ${death}`, () => (next = cacheWorkers(primary).find((p) => !seen.has(p))) !== undefined, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}; primary ${isAlive(primary) ? 'alive' : 'gone'}, its log: ${cache.stderr()}`);
      });
      const waited = Date.now() - killedAt;
      const delay = 100 * 2 ** (death - 1);
      t.ok(waited >= delay - 20, `death ${death}: replaced after ${waited} ms (back-off ${delay} ms)`);
      seen.add(next!);
      victim = next!;
    }
    await eventually('the cache gives up', () => cache.child.exitCode !== null || cache.child.signalCode !== null, 30_000);
    t.equal(await exited, EXIT.failure, `exit ${EXIT.failure}`);
    t.match(cache.stderr(), /"msg":"cache workers keep dying: stopping the cache"/, 'an error logged');
    t.match(cache.stderr(), /fleetcache: error: 5 cache workers died within 60 s/, 'and said on exit');
    t.notOk(isAlive(survivor!), 'the other worker stopped');
    t.equal(cacheWorkers(primary).length, 0, 'no worker left');
  });
});

// One cache for two subtests that each kill both its workers (four deaths within the minute:
// the fifth would stop it). The first counts on counters that start with the cache.
t.test('a cache of two workers, both killed twice', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const dir = t.testdir();
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', dir, '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const primary = cache.child.pid!;
  const stats = async () => (await (await request(`${cache.url}/-/stats`)).body.json()) as { startedAt: string; workersLost: number; store: { objects: number }; kinds: Record<string, { bytesServed: number; hits: number; misses: number }> };
  /** Kills both workers at once; resolves once both are replaced. */
  const killBoth = async (): Promise<void> => {
    const workers = cacheWorkers(primary);
    for (const pid of workers) process.kill(pid, 'SIGKILL');
    await eventually('both replaced', () => cacheWorkers(primary).filter((p) => !workers.includes(p)).length === 2, 30_000);
  };

  await t.test('what dead workers counted more than 200 ms before their death is still in /-/stats, and the counters keep their start', async (t) => {
    const blob = up.addBlob(16 << 20); // more than the sockets' buffers hold: its bytes are counted when a slow reader has them
    const startedAt = (await stats()).startedAt;
    t.match(startedAt, /^\d{4}-\d\d-\d\dT/, 'the counters say when they started');
    t.equal((await stats()).workersLost, 0, 'no worker lost yet');
    t.equal((await fetchHash(`${cache.url}/cas/sha256/${blob.hex}`)).hash, blob.hex, 'a miss');
    // Committed before the hits: the commit follows the answer, and a request that comes before
    // it joins the fill (COLLAPSED, neither a hit nor a miss; seen on a loaded machine).
    await eventually('the miss committed', async () => (await stats()).store.objects === 1);
    // hits that last longer than a report's delay: their bytes are counted after the report their start asked for
    const slow = () => promisify(execFile)('curl', ['-sf', '--limit-rate', '12M', '-o', '/dev/null', '-w', '%{size_download}', `${cache.url}/cas/sha256/${blob.hex}`]);
    for (const { stdout } of await Promise.all([slow(), slow()])) t.equal(stdout, String(16 << 20), 'a slow hit');
    // The bound OPERATIONS.md states: a dead worker loses at most its last 200 ms of counts.
    await new Promise((resolve) => setTimeout(resolve, 600));
    await killBoth();
    let after: Awaited<ReturnType<typeof stats>> | undefined;
    await eventually('stats answered', async () => (after = await stats().catch(() => undefined)) !== undefined, 10_000);
    if (!after) return;
    t.same({ served: after.kinds['cas']?.bytesServed, requests: (after.kinds['cas']?.hits ?? 0) + (after.kinds['cas']?.misses ?? 0) }, { served: 3 * (16 << 20), requests: 3 }, 'every byte and request counted');
    t.equal(after.startedAt, startedAt, 'a replaced worker does not reset the counters');
    t.equal(after.workersLost, 2, 'the two dead workers are counted (the run report marks its figures as lower bounds)');
  });

  // What a dead worker leaves is found in one walk of the data directory by the primary
  // (DiskStore.adoptUnreported): one death shows all three kinds.
  await t.test("workers killed mid-fill and right after commits: the bodies they had not reported are indexed by the primary, their temp files and claims removed; replacements listen on the same port", async (t) => {
    const objects = async (): Promise<number> => stats().then((s) => s.store.objects, () => -1);
    const before = await objects();
    // Two fills to kill the workers in the middle of (8 s each): one to a temp file, one
    // written to its claim (a blob asked with credentials).
    const inTemp = up.addBlob(4 << 20);
    const inClaim = up.addBlob(4 << 20);
    up.options = { rate: 512 * 1024 };
    const temps = () => readdirSync(path.join(dir, 'tmp'));
    const shard = path.dirname(path.join(dir, casId({ algo: 'sha256', hex: inClaim.hex })));
    // The claim of a key with credentials is a file of its own, which the fill writes its body to.
    const claims = () => (existsSync(shard) ? readdirSync(shard) : []).filter((n) => n.startsWith('.tmp-fill-'));
    const reading = [
      request(`${cache.url}/cas/sha256/${inTemp.hex}`).then((res) => res.body.dump(), () => undefined),
      request(`${cache.url}/cas/sha256/${inClaim.hex}`, { headers: { authorization: 'Bearer someone' } }).then((res) => res.body.dump(), () => undefined),
    ];
    await eventually('the fill writes its temp file', () => temps().some((n) => statSync(path.join(dir, 'tmp', n)).size > 0), 10_000);
    await eventually('the fill writes its claim', () => claims().some((n) => statSync(path.join(shard, n)).size > 0), 10_000);
    up.options = {}; // (each answer keeps the rate it started with)
    const blobs = Array.from({ length: 24 }, () => up.addBlob(4096));
    const got = await Promise.all(blobs.map((b) => fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true })));
    t.ok(got.every((r, i) => r.hash === blobs[i]!.hex), 'every body right');
    // Killed as soon as the bodies are on disk: well within the 200 ms their reports wait for.
    // (a claim has the blob's name too, with no permission bits until its body is complete)
    const committed = (hex: string): boolean => ((statSync(path.join(dir, casId({ algo: 'sha256', hex })), { throwIfNoEntry: false })?.mode ?? 0) & 0o777) !== 0;
    await eventually('all committed', () => blobs.every((b) => committed(b.hex)), 5000);
    await killBoth();
    await Promise.all(reading);
    // With both workers gone, the port refuses connections until a replacement listens: on the
    // port the cache announced, though it was started with port 0.
    await eventually('the primary counts every body on disk', async () => (await objects()) === before + blobs.length, 10_000);
    t.equal(await objects(), before + blobs.length, `${blobs.length} objects more`);
    await eventually('the dead workers\' temp files removed', () => temps().length === 0, 10_000);
    t.same(temps(), []);
    // Never asked again, it stayed on disk, counted by no index, until the next start.
    await eventually('the dead workers\' claims removed', () => claims().length === 0, 10_000);
    t.same(claims(), []);
    t.equal((await fetchHash(`${cache.url}/cas/sha256/${inTemp.hex}`)).hash, inTemp.hex, 'the object is filled again');
  });
});
