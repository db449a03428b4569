// Delays above Node's timer limit (2^31-1 ms, about 24.8 days): spread accepts any Go
// duration for warn-timeout and kill-timeout, and a `600h` given to setTimeout or
// setInterval as it is fires after 1 ms. Nothing here may fire within the test.
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createProvider } from '../src/backends/registry.js';
import { rebootOverSsh } from '../src/backends/ssh-reboot.js';
import { after, every, MAX_TIMER_DELAY, sleepFor } from '../src/long-timer.js';
import type { SshClient } from '../src/ssh/client.js';
import { eventually } from './helpers/wait.js';

const H600 = 600 * 3600_000;

/** Node's TimeoutOverflowWarnings while the test runs. */
function overflowWarnings(t: Test): string[] {
  const seen: string[] = [];
  const listen = (w: Error): void => {
    if (w.name === 'TimeoutOverflowWarning') seen.push(w.message);
  };
  process.on('warning', listen);
  t.teardown(() => process.off('warning', listen));
  return seen;
}

t.test('after, every and sleepFor wait through delays above 2^31-1 ms', async (t) => {
  t.ok(H600 > MAX_TIMER_DELAY);
  const warnings = overflowWarnings(t);
  let fired = 0;
  const cancels = [after(H600, () => fired++), every(H600, () => fired++), after(MAX_TIMER_DELAY + 1, () => fired++)];
  const ac = new AbortController();
  const slept = sleepFor(H600, ac.signal).then(() => 'resolved', (err: Error) => err.name);
  await sleep(300);
  t.equal(fired, 0, 'no timer fired');
  ac.abort();
  t.equal(await slept, 'AbortError', 'the long sleep was still waiting, and stops on abort');
  for (const cancel of cancels) cancel();
  t.same(warnings, [], 'no TimeoutOverflowWarning');

  // short delays still fire, repeatedly for every
  let ticks = 0;
  const stop = every(20, () => ticks++);
  const once = await new Promise<number>((done) => after(10, () => done(Date.now())));
  await sleepFor(150);
  stop();
  t.ok(once > 0);
  t.ok(ticks >= 3, `every fired ${ticks} times in 150 ms`);
});

t.test('a script with warn and kill timeouts of 600h runs to its end, unwarned', async (t) => {
  const warnings = overflowWarnings(t);
  const dir = t.testdir();
  const m = await (await createProvider('local', 'local', {}, { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'cache') })).allocate({ name: 's' });
  let warned = 0;
  const r = await m.exec('sleep 0.5; echo done', { trace: false, warnTimeout: H600, killTimeout: H600, onWarn: () => warned++ });
  t.equal(r.killed, false, 'not killed');
  t.equal(r.exitCode, 0);
  t.equal(r.output, 'done\n');
  t.equal(warned, 0, 'no running-late warning');
  t.same(warnings, []);
  await m.discard();
});

t.test('adhoc: a retry-delay of 600h waits before the next allocate attempt', async (t) => {
  const dir = t.testdir();
  const attempts = join(dir, 'attempts');
  const p = await createProvider('cloud', 'adhoc', { allocate: `echo x >> ${attempts}; if [ $(wc -l < ${attempts}) -gt 1 ]; then FATAL second attempt; fi; ERROR not yet`, 'retry-delay': '600h' }, { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'cache') });
  const ac = new AbortController();
  const allocating = p.allocate({ name: 'debian-12' }, { signal: ac.signal });
  // A 600h overflowing Node's timer would start the second attempt 1 ms after the first.
  await eventually('the first allocate attempt', () => existsSync(attempts), 10_000);
  await sleep(300);
  ac.abort();
  await t.rejects(allocating, { name: 'AbortError' }, 'still waiting to retry when aborted, not failed by a second attempt');
});

t.test('a reboot with a warn-timeout of 600h says nothing while it waits', async (t) => {
  // a machine that answers with a new boot identity on the fourth connection
  let boots = 0;
  const client = (boot: string): Pick<SshClient, 'exec' | 'close'> => ({
    exec: async (command: string) => ({ exitCode: 0, output: command.startsWith('cat') ? `${boot}\n` : '', killed: false }),
    close: async () => undefined,
  });
  const connect = async () => {
    boots++;
    if (boots < 4) throw new Error('connection refused');
    return client('new');
  };
  let warned = 0;
  const next = await rebootOverSsh('lab:debian-12', client('old'), connect, { command: 'reboot', bootIdCommand: 'cat /proc/sys/kernel/random/boot_id' }, { timeout: 60_000, warnTimeout: H600, onWarn: () => warned++ });
  t.ok(next);
  t.equal(warned, 0, 'no "taking a while" line');
});
