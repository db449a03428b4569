// `fleetcache cache --workers 2` with clientHeaderTimeout and maxConnections in its file: each
// worker lets go of a connection whose request head is late, and closes a connection over
// its own cap as it comes (node's server.maxConnections would have the primary hand such a
// connection from worker to worker without end). test/cache/slow-head.test.ts: one process.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { dribbleHead, getOn, openMany, silent, silentFirstLatest, silentFirstMs } from '../helpers/slow-client.js';
import { startUpstream } from './upstream-fixture.js';

const LIMIT_MS = 1000;
/** node looks for late heads every second: a cut comes within that after the limit, plus slack for a loaded machine. */
const LATEST_MS = LIMIT_MS + 2000;
const PER_WORKER = 2;

t.test('two workers: late heads cut, each worker capped', async (t) => {
  const { upUrl: upstream } = await startUpstream(t);
  const dir = t.testdir();
  const config = path.join(dir, 'cache.yaml');
  writeFileSync(config, `upstream: ${upstream}\nclientHeaderTimeout: 1s\nmaxConnections: ${PER_WORKER}\n`);
  const cache = await startServerProcess(t, ['cache', '--config', config, '--listen', '127.0.0.1:0', '--data', path.join(dir, 'data'), '--workers', '2']);

  // three at once: node's cluster deals them out in turn, within each worker's cap
  const [nothing, dribbled, silentThenDribbled] = await Promise.all([silent(cache.url), dribbleHead(cache.url), dribbleHead(cache.url, { silentMs: silentFirstMs(LIMIT_MS) })]);
  t.ok(nothing.ms >= LIMIT_MS - 100 && nothing.ms <= LATEST_MS, `a connection that sends nothing: closed after ${nothing.ms} ms`);
  t.ok(dribbled.ms >= LIMIT_MS - 100 && dribbled.ms <= LATEST_MS, `a head sent a byte at a time: closed after ${dribbled.ms} ms`);
  t.match(dribbled.answer, /^HTTP\/1\.1 408 /, 'answered 408');
  t.ok(silentThenDribbled.ms <= silentFirstLatest(LIMIT_MS), `silent, then a head a byte at a time: closed after ${silentThenDribbled.ms} ms`);

  const { closed, open } = await openMany(cache.url, 4 * PER_WORKER);
  t.ok(open.length <= 2 * PER_WORKER, `at most ${PER_WORKER} open in each worker (${open.length} open, ${closed} closed as they came)`);
  await eventually('the refusals logged', () => cache.stderr().includes('connections refused: maxConnections are open'));
  t.equal(await getOn(open[0]!, cache.url, '/-/healthz'), 200, 'the ones within it are served');
  for (const s of open) s.destroy();
});
