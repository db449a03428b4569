// Test helper: a backend of one machine on a real sshd reached through a HalfOpenRelay, and a
// script on it whose connection is lost while the machine runs its processes on (a network cut).
import type { Test } from 'tap';
import { join } from 'node:path';
import { createProvider } from '../../src/backends/registry.js';
import type { BackendContext, Machine, Provider } from '../../src/backends/backend.js';
import { isAlive } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { halfOpenRelay, type HalfOpenRelay } from '../helpers/half-open-relay.js';
import { startSshd } from '../ssh/sshd.js';
import { leavingScript, leftPids } from '../ssh/leaving-script.js';

/**
 * A backend `p` of one machine, a real sshd reached through a HalfOpenRelay: an ssh backend's
 * host, or the address an adhoc backend's allocate script gives every time (its discard script
 * appends the address to `<dir>/discarded`); what it logs goes to `lines`. `sshdConfig`: lines
 * of the sshd's own (startSshd's `config`).
 */
export async function relayedHost(t: Test, type: 'ssh' | 'adhoc' = 'ssh', sshdConfig: string[] = []): Promise<{ dir: string; relay: HalfOpenRelay; p: Provider; lines: string[]; nextRun: () => Promise<Provider> }> {
  const dir = t.testdir();
  const sshd = await startSshd(t, dir, { config: sshdConfig });
  const relay = await halfOpenRelay(t, sshd.port);
  const lines: string[] = [];
  const ctx: BackendContext = { projectRoot: dir, remotePath: join(dir, 'remote-project'), password: 'pw', stateDir: join(dir, 'cache'), log: (l) => lines.push(l) };
  const address = `127.0.0.1:${relay.port}`;
  // the backend as a later run makes it anew
  const nextRun = (): Promise<Provider> => type === 'ssh'
    ? createProvider('lab', 'ssh', { hosts: [{ address, key: sshd.keyPath }], 'connect-retries': 0 }, ctx)
    : createProvider('lab', 'adhoc', { allocate: `ADDRESS ${address}`, discard: `echo "$SPREAD_SYSTEM_ADDRESS" >> ${join(dir, 'discarded')}`, key: sshd.keyPath }, ctx);
  return { dir, relay, p: await nextRun(), lines, nextRun };
}

/** Allocates the relay's host of `p`, runs leavingScript on it and waits, cuts the client side of its connection: the script is lost, its sleeps run on. */
export async function lostMidScript(t: Test, p: Provider, relay: HalfOpenRelay, file: string): Promise<{ machine: Machine; left: number[] }> {
  const machine = await p.allocate({ name: 'debian-12' });
  let out = '';
  const lost = machine.exec(`${leavingScript(file)}; echo started; wait`, { trace: false, cwd: '/', onOutput: (s) => (out += s) });
  await eventually('the script started both sleeps', () => out.includes('started'), 20_000);
  const left = leftPids(t, file);
  relay.cut();
  await t.rejects(lost, { name: 'ScriptLostError' });
  t.ok(left.every(isAlive), 'the machine never saw the connection drop: the sleeps run on');
  return { machine, left };
}
