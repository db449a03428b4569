// Pieces of the multi-process cache that the two-worker test (workers.test.ts) cannot
// observe: how messages are batched, and the sweep of socket directories left by a
// primary killed with SIGKILL.
import { existsSync, mkdirSync, utimesSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Outbox, unbatch, type Batch } from '../../src/cache/cluster/protocol.js';
import { removeStaleSocketDirs } from '../../src/cache/cluster/primary.js';
import { exitedPid } from '../helpers/processes.js';

type M = { t: 'a'; n: number };

t.test('messages of one event-loop turn go as one batch; a lone one goes as itself', async (t) => {
  const sent: (M | Batch<M>)[] = [];
  const out = new Outbox<M>((m) => sent.push(m));
  out.push({ t: 'a', n: 1 });
  out.push({ t: 'a', n: 2 });
  out.push({ t: 'a', n: 3 });
  t.equal(sent.length, 0, 'nothing sent before the turn ends');
  await new Promise((r) => setImmediate(r));
  t.same(sent, [{ t: 'batch', m: [{ t: 'a', n: 1 }, { t: 'a', n: 2 }, { t: 'a', n: 3 }] }]);
  out.push({ t: 'a', n: 4 });
  await new Promise((r) => setImmediate(r));
  t.same(sent[1], { t: 'a', n: 4 });
  out.push({ t: 'a', n: 5 });
  out.flush();
  t.same(sent[2], { t: 'a', n: 5 }, 'flush sends at once');
  await new Promise((r) => setImmediate(r));
  t.equal(sent.length, 3, 'and nothing twice');
  const got: number[] = [];
  for (const m of sent) unbatch<M>(m, (one) => got.push(one.n));
  t.same(got, [1, 2, 3, 4, 5], 'unbatched in order');
  for (const foreign of [null, 'text', { cmd: 'NODE_X' }]) unbatch<M>(foreign, (one) => got.push(one.n));
  t.same(got, [1, 2, 3, 4, 5], 'what is not one of ours is ignored');
});

t.test("socket directories of dead primaries are removed, live ones' kept", async (t) => {
  const parent = t.testdir();
  const dead = path.join(parent, `fleetcache-cache-${exitedPid()}-abc123`);
  // touched lately: maybe a cache's in another PID namespace, its PID none here (see LEFTOVER_IDLE_MS, pid-alive.ts)
  const touched = path.join(parent, `fleetcache-cache-${exitedPid()}-ghi789`);
  const live = path.join(parent, `fleetcache-cache-${process.pid}-def456`);
  const other = path.join(parent, 'fleetcache-cache-notapid');
  for (const d of [dead, touched, live, other]) mkdirSync(d);
  const anHourAgo = new Date(Date.now() - 3_600_000);
  for (const d of [dead, live, other]) utimesSync(d, anHourAgo, anHourAgo);
  removeStaleSocketDirs(parent);
  t.notOk(existsSync(dead), 'a dead primary\'s directory is gone');
  t.ok(existsSync(touched), 'one touched lately is kept');
  t.ok(existsSync(live), 'a live one\'s is kept');
  t.ok(existsSync(other), 'other names are not touched');
});
