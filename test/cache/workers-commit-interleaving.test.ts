// `fleetcache cache --workers 2`, two workers meeting over one http entry, the interleaving
// forced on the real processes with strace (no hook in the cache): a name another worker
// replaces (revalidated, changed upstream: its commit renames the new sidecar, then the new
// body, over the old files) while a worker that does not know the entry yet looks it up
// (DiskStore.lookup: the body's stat of its probe, the sidecar's read, the body's stat
// again). strace, attached to both workers, holds the read of the entry's sidecar on entry
// (an openat of its path, which only such a lookup makes: the committing worker knows the
// entry, and writes its new sidecar under a temp name) until the replacement has landed,
// then detaches. The lookup then finds a whole new pair beside the size its probe took: not
// damage, and not to be unlinked.
//
// The primary is stopped (SIGSTOP) from before the replacement until that lookup is over:
// resumed, it tells the held worker to forget the entry, and a lookup that finds its entry
// forgotten takes a mismatch for a miss, damage or not, which would hide the defect. No
// answer is awaited while it is stopped: a worker may need it to answer (a hang, in CI at
// 2cf59c2).
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { httpId } from '../../src/cache/disk-store.js';
import { startServerProcess } from '../helpers/processes.js';
import { attachStrace } from '../helpers/strace.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers, fetchHash, type Fetched } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

/** openat's number, as /proc/<tid>/syscall gives it. */
const OPENAT = ({ x64: 257, arm64: 56 } as Record<string, number>)[process.arch];
/** How long strace holds the lookup's read at most: the test lets it go (detaches) once the replacement landed. */
const HOLD_US = 20_000_000;

/** How many threads of `pids` strace holds on entering openat (the held reads). */
function heldInOpenat(pids: readonly number[]): number {
  let held = 0;
  for (const pid of pids) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      try {
        const stopped = /^State:\s+t/m.test(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
        if (stopped && readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8').startsWith(`${OPENAT} `)) held++;
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return held;
}

t.test('two workers: a lookup meeting another worker\'s replacement of a name, landed between its stat and its read, keeps the new files', { skip: OPENAT === undefined ? `no openat number for ${process.arch}` : false }, async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const name = '/artifacts/r/j/log';
  const v1 = Buffer.from('version 1');
  const v2 = Buffer.from('version 2, another size');
  up.objects.set(name, { body: v1, headers: { etag: '"v1"' } });
  const data = path.join(t.testdir(), 'data');
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', data, '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const file = path.join(data, httpId(`GET ${name}`));
  t.equal((await fetchHash(cache.url + name, {}, { fresh: true })).xcache, 'MISS', 'stored by one worker, which knows it from now on');
  await eventually('stored', () => statSync(file, { throwIfNoEntry: false })?.size === v1.length, 5000);

  const workers = cacheWorkers(cache.child.pid!);
  t.equal(workers.length, 2, 'two workers');
  // not in t.testdir(): strace writes there until it is stopped
  const traceDir = mkdtempSync(path.join(tmpdir(), 'fleetcache-strace-'));
  t.teardown(() => rmSync(traceDir, { recursive: true, force: true }));
  const detach = await attachStrace(t, workers, path.join(traceDir, 'trace'), ['-P', `${file}.json`, '-e', 'trace=openat', '-e', `inject=openat:delay_enter=${HOLD_US}`]);

  // The name changed upstream; the revalidations are held there until the other worker's lookup is held too.
  up.objects.set(name, { body: v2, headers: { etag: '"v2"' } });
  const release = up.hold(name);
  const asked = up.count(name);
  // Fresh connections, shared between the workers in turn, one at a time until each worker
  // has one: the worker that knows the name revalidates it (held upstream), the other looks
  // it up on disk (held in its read).
  // Their answers as they come (a failed request's error instead), waited for with a bound.
  const answers: (Fetched | Error)[] = [];
  let sent = 0;
  for (let i = 0; i < 6 && (up.count(name) === asked || heldInOpenat(workers) === 0); i++) {
    const [reached, held] = [up.count(name), heldInOpenat(workers)];
    sent++;
    void fetchHash(cache.url + name, {}, { fresh: true }).then((a) => answers.push(a), (err: unknown) => answers.push(err instanceof Error ? err : new Error(String(err))));
    // Pacing only: one not seen within 5 s (it happened once in CI and once in about a
    // hundred runs under load, cause not found) is left to 'every request answered' below,
    // which a request that never ends fails, and the next one is sent.
    await eventually('the request reached a worker', () => up.count(name) > reached || heldInOpenat(workers) > held, 5000).catch(() => undefined);
  }
  t.ok(heldInOpenat(workers) > 0, 'a worker that does not know the name is held in the read of its sidecar');
  t.ok(up.count(name) > asked, 'the worker that knows it revalidates it');

  // The primary stopped: it does not pass the replacement's commit on to the held worker
  // before that worker's lookup is over; a real lookup reads within microseconds, long
  // before any report.
  const primary = cache.child.pid!;
  process.kill(primary, 'SIGSTOP');
  let replaced: number | undefined;
  try {
    release();
    // The replacement lands: its sidecar names the new body, in place.
    await eventually('the replacement committed', () => {
      const st = statSync(file, { throwIfNoEntry: false });
      if (st?.size !== v2.length) return false;
      replaced = st.ino;
      return (JSON.parse(readFileSync(`${file}.json`, 'utf8')) as { ino?: number }).ino === st.ino;
    }, 5000);
    t.ok(heldInOpenat(workers) > 0, 'while the lookup is still held');
    // From now on upstream's answers are not kept: the lookup's own miss stores nothing over the replacement.
    up.objects.set(name, { body: v2, headers: { 'cache-control': 'no-store' } });
    const before = up.count(name);
    await detach(); // the held read goes on: the new sidecar, beside the size of the old body
    // The lookup is over once its miss asks upstream (a fill needs no primary to start).
    await eventually('the held lookup ended in a miss, fetched anew', () => up.count(name) > before, 5000);
  } finally {
    process.kill(primary, 'SIGCONT');
  }
  await eventually('every request answered', () => answers.length === sent, 10_000);
  t.same(answers.map((a) => (a instanceof Error ? a.message : a.status)), answers.map(() => 200), 'every request answered');
  // The held request's fill (upstream's no-store answer) is joined by a request of the same
  // key in its worker until it ends, which in a worker is after its answer's last byte (the
  // unlink of its claim's link): the requests below must find the entry, not that fill.
  await eventually('the fill of the held request is over', () => readdirSync(path.dirname(file)).every((n) => !n.startsWith('.tmp-')), 5000);
  t.notMatch(cache.stderr(), /dropping unreadable cache entry/, 'nothing taken for damage');
  const st = statSync(file, { throwIfNoEntry: false });
  t.equal(st?.ino, replaced, "the replacement's body is still in place");
  t.equal(st?.size, v2.length);
  t.equal((JSON.parse(readFileSync(`${file}.json`, 'utf8')) as { ino?: number }).ino, replaced, 'with its sidecar');
  up.objects.set(name, { body: v2, headers: { etag: '"v2"' } });
  for (let i = 0; i < 4; i++) {
    const again = await fetchHash(cache.url + name, {}, { fresh: true });
    t.same([again.status, again.size, again.xcache], [200, v2.length, 'HIT'], 'served from the cache by either worker');
  }
});
