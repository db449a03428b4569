// A worker of a multi-process cache that dies after the cache started is replaced, after a
// delay that doubles with each death of the last minute (0.25 s, 0.5 s, 1 s, 2 s); the fifth
// death within a minute stops the cache (as systemd's StartLimitBurst): an error logged,
// the other workers stopped, and the primary exits non-zero for its supervisor to see.
import t from 'tap';
import { EXIT } from '../../src/errors.js';
import { isAlive, startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers } from './harness.js';

t.test('a worker killed five times within a minute: replaced with back-off, then the cache gives up', async (t) => {
  const dir = t.testdir();
  const cache = await startServerProcess(t, ['cache', '--upstream', 'http://127.0.0.1:1', '--listen', '127.0.0.1:0', '--data', dir, '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const exited = new Promise<number | null>((resolve) => cache.child.once('exit', (code) => resolve(code)));
  const primary = cache.child.pid!;
  const [survivor, first] = cacheWorkers(primary);
  t.ok(survivor !== undefined && first !== undefined, 'two workers');
  // Each replacement of the one killed before is killed in turn; the other worker lives on.
  const seen = new Set([survivor, first]);
  let victim = first!;
  for (let death = 1; death <= 5; death++) {
    process.kill(victim, 'SIGKILL');
    if (death === 5) break;
    const killedAt = Date.now();
    let next: number | undefined;
    await eventually(`a replacement after death ${death}`, () => (next = cacheWorkers(primary).find((p) => !seen.has(p))) !== undefined, 30_000);
    const waited = Date.now() - killedAt;
    const delay = 250 * 2 ** (death - 1);
    t.ok(waited >= delay - 50, `death ${death}: replaced after ${waited} ms (back-off ${delay} ms)`);
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
