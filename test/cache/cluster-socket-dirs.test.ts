// A cache's socket directory (where its workers follow each other's fills), seen by a cache
// that starts in another PID namespace sharing the temp directory (containers sharing /tmp):
// there, the running primary's PID is no process, and the starting one's sweep of dead
// primaries' directories must not take it for one.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { descendantsOf, isAlive, startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

function pidNamespaceUnavailable(): string | false {
  if (process.getuid?.() !== 0) return 'needs root for a PID namespace';
  return spawnSync('unshare', ['--pid', '--fork', 'true']).status === 0 ? false : 'unshare --pid fails here';
}

t.test("a cache starting in another PID namespace leaves a running cache's socket directory alone", { skip: pidNamespaceUnavailable() }, async (t) => {
  const { upUrl } = await startUpstream(t);
  // The temp directory both caches use: a short path, as /tmp (the test's own is too long for the workers' socket paths).
  const tmp = mkdtempSync(path.join(tmpdir(), 'fleetcache-pidns-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  // 1 s: the primary looks at its workers (and touches its socket directory) every 333 ms
  const config = path.join(tmp, 'cache.yaml');
  writeFileSync(config, 'workerTimeout: 1s\n');
  const start = (data: string, under: string[] = []) => startServerProcess(t, ['cache', '-c', config, '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', path.join(tmp, data), '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn', TMPDIR: tmp }, { under });
  const socketDirs = () => readdirSync(tmp).filter((name) => name.startsWith('fleetcache-cache-'));
  const running = await start('running');
  await eventually('two workers', () => cacheWorkers(running.child.pid!).length === 2, 30_000);
  const [dir] = socketDirs();
  const dirPath = path.join(tmp, dir!);
  const sockets = readdirSync(dirPath).sort();
  t.equal(sockets.length, 4, "the running cache's socket directory holds two sockets per worker (fills followed, HTTP)");
  // A cache running for an hour: its directory made, and its sockets, that long ago.
  const anHourAgo = Date.now() - 3_600_000;
  utimesSync(dirPath, new Date(anHourAgo), new Date(anHourAgo));
  await eventually('the running primary touches its directory', () => statSync(dirPath).mtimeMs > anHourAgo + 1000);

  // unshare forks the cache as PID 1 of a new PID namespace, and hands it SIGTERM when stopped
  const other = await start('other', ['unshare', '--pid', '--kill-child=SIGTERM', '--']);
  const inside = descendantsOf(other.child.pid!);
  t.equal(socketDirs().length, 2, 'the other cache made its own');
  t.same(readdirSync(dirPath).sort(), sockets, "the running cache's directory and sockets are kept");
  await other.stop();
  await eventually('the other cache stopped', () => inside.every((pid) => !isAlive(pid)));
  await running.stop();
});
