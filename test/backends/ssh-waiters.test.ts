// Workers waiting for a host of the ssh backend (src/backends/ssh.ts): a host freed goes to
// the first of them whose system it serves, and to no other: one woken, not every waiter to
// find it taken and wait again (each through the run's start-up slots, runner's idle).
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createProvider } from '../../src/backends/registry.js';
import type { BackendContext, Idle, Machine, Provider } from '../../src/backends/backend.js';
import { startSshd } from '../ssh/sshd.js';
import { eventually } from '../helpers/wait.js';

/** How many workers wait for the one host besides the one holding it. */
const WAITERS = 3;

/** A backend of one host, the test's sshd, serving `debian-12`. */
async function oneHost(t: Test): Promise<Provider> {
  const dir = t.testdir();
  const sshd = await startSshd(t, dir);
  const ctx: BackendContext = { projectRoot: dir, remotePath: join(dir, 'remote-project'), password: 'pw', stateDir: join(dir, 'cache') };
  return createProvider('lab', 'ssh', { hosts: [{ address: `127.0.0.1:${sshd.port}`, key: sshd.keyPath }] }, ctx);
}

t.test('a host freed goes to the first worker waiting, the others wait on without waking; one that came later waits behind them', async (t) => {
  const p = await oneHost(t);
  let waits = 0;
  // as the runner's: counts the waits, and takes a while to take a start-up slot back
  const idle: Idle = async (wait) => {
    waits++;
    const woken = await wait();
    await sleep(200);
    return woken;
  };
  const held = await p.allocate({ name: 'debian-12' });
  const served: number[] = [];
  const machines = new Map<number, Machine>();
  const allocate = (i: number, o: { idle?: Idle }): void => void p.allocate({ name: 'debian-12' }, o).then((m) => (served.push(i), machines.set(i, m)));
  for (let i = 0; i < WAITERS; i++) {
    allocate(i, { idle });
    await eventually(`worker ${i} waits`, () => waits === i + 1, 5000);
  }
  await held.discard();
  // came after the host was freed, while the first waiter takes its slot back
  allocate(WAITERS, {});
  for (let i = 0; i <= WAITERS; i++) {
    await eventually(`a machine is served after ${i} discards`, () => served.length > i, 10_000);
    t.same(served, [...Array(i + 1).keys()], `served in order (so far ${served.join(', ')}), the later one last`);
    t.equal(waits, WAITERS, 'no worker woke to wait again');
    await machines.get(served[i]!)!.discard();
  }
});

t.test('a host freed passes over a worker that stopped waiting (interrupted, or its jobs taken meanwhile) to the next', async (t) => {
  const p = await oneHost(t);
  const held = await p.allocate({ name: 'debian-12' });
  const run = new AbortController();
  let waits = 0;
  const counted: Idle = (wait) => (waits++, wait());
  const interrupted = p.allocate({ name: 'debian-12' }, { signal: run.signal, idle: counted });
  await eventually('the first waits', () => waits === 1, 5000);
  // gives up once woken, as the runner's idle does when the other machines took every job
  const givesUp: Idle = async (wait) => {
    waits++;
    await wait();
    throw new Error('not needed any more');
  };
  const gone = p.allocate({ name: 'debian-12' }, { idle: givesUp });
  await eventually('the second waits', () => waits === 2, 5000);
  const next = p.allocate({ name: 'debian-12' }, { idle: counted });
  await eventually('the third waits', () => waits === 3, 5000);
  run.abort();
  await t.rejects(interrupted, 'the interrupted worker allocates nothing');
  await held.discard();
  await t.rejects(gone, { message: 'not needed any more' }, 'the worker handed the host and gone without it allocates nothing');
  const machine = await next;
  t.equal(machine.address, held.address, 'the host went to the worker still waiting');
  await machine.discard();
});
