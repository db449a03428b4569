// The cache run as an unprivileged user, as in production (deploy/ runs it as its own
// user), with two workers. Root reads a file whatever its mode, so the other tests, run
// as root in CI, cannot tell whether the claims (a /cas blob is claimed under its own
// name with mode 000 until complete, see DiskStore.claimFill) work for a process bound by
// permissions: here every object is still fetched once, every body is right, what is
// stored is complete and readable, and a restart serves it all from disk (a cache of one
// process: the files are what the workers left, read as that user; two more workers would
// cost two process starts to prove no more).
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { nobody } from '../helpers/nobody.js';
import { exitedPid, startServerProcess } from '../helpers/processes.js';
import { fetchHash } from './harness.js';
import { startUpstream } from './upstream-fixture.js';


/** Every file under `dir`, with its mode bits. */
function files(dir: string): { name: string; mode: number; uid: number }[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const p = path.join(e.parentPath, e.name);
      const st = statSync(p);
      return { name: path.relative(dir, p), mode: st.mode & 0o777, uid: st.uid };
    });
}

const user = nobody();
t.test('an unprivileged cache with two workers: each object fetched once, stored complete, kept over a restart (of one process)', { skip: typeof user === 'string' ? user : false }, async (t) => {
  if (typeof user === 'string') return;
  const { up, upUrl } = await startUpstream(t);
  // In the temp directory, not the test's own (which an unprivileged user may not reach).
  const data = mkdtempSync(path.join(tmpdir(), 'fleetcache-unprivileged-'));
  t.teardown(() => rmSync(data, { recursive: true, force: true }));
  chmodSync(data, 0o755);
  chownSync(data, user.uid, user.gid);
  // A socket directory a root cache killed with SIGKILL left behind: not ours to remove,
  // and no reason not to start. In a temp directory of this test's own (TMPDIR, sticky
  // like /tmp), where the root caches of tests running meanwhile do not sweep it away.
  const tmp = mkdtempSync(path.join(tmpdir(), 'fleetcache-unprivileged-tmp-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  chmodSync(tmp, 0o1777);
  const rootsLeftover = mkdtempSync(path.join(tmp, `fleetcache-cache-${exitedPid()}-`));
  const anHourAgo = new Date(Date.now() - 3_600_000);
  utimesSync(rootsLeftover, anHourAgo, anHourAgo); // idle long enough to be swept (LEFTOVER_IDLE_MS), were it this user's
  // Without tap's hooks (NODE_OPTIONS), which write where this user may not.
  const start = (workers: string[]) => startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', data, ...workers], { FLEETCACHE_LOG_LEVEL: 'warn', NODE_OPTIONS: '', TMPDIR: tmp }, user);

  // Two small blobs (answered whole, stored in place) and a large one (streamed from a temp
  // file renamed over its claim), six clients each on fresh connections, so that both
  // workers take some; the large one fills for a third of a second.
  const blobs = [4096, 8192, 3 * 1024 * 1024].map((size) => ({ size, ...up.addBlob(size) }));
  up.options.rate = 9 * 1024 * 1024;
  let cache = await start(['--workers', '2']);
  t.ok(existsSync(rootsLeftover), "root's leftover socket directory is left alone by the start's sweep");
  const first = await Promise.all(blobs.flatMap((b) => Array.from({ length: 6 }, async () => ({ b, got: await fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true }) }))));
  up.options.rate = 0;
  t.ok(first.every(({ b, got }) => got.status === 200 && got.hash === b.hex && got.size === b.size), 'all 18 bodies hash right');
  for (const b of blobs) t.equal(up.count(`/cas/sha256/${b.hex}`), 1, `${b.size} bytes: one upstream request`);

  await cache.stop();
  const stored = files(data).filter((f) => blobs.some((b) => f.name.endsWith(b.hex)));
  t.equal(stored.length, 3, 'the three blobs are on disk');
  t.ok(stored.every((f) => f.mode === 0o644 && f.uid === user.uid), 'complete (mode 644) and owned by the cache\'s user');
  t.same(files(data).filter((f) => f.mode === 0), [], 'no claim left behind');

  cache = await start([]);
  const again = await Promise.all(blobs.map(async (b) => ({ b, got: await fetchHash(`${cache.url}/cas/sha256/${b.hex}`, {}, { fresh: true }) })));
  t.ok(again.every(({ b, got }) => got.hash === b.hex && got.xcache === 'HIT'), 'after a restart: every blob a hit, right');
  for (const b of blobs) t.equal(up.count(`/cas/sha256/${b.hex}`), 1, `${b.size} bytes: still one upstream request`);
});
