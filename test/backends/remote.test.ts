import t, { type Test } from 'tap';
import { getEventListeners } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createProvider } from '../../src/backends/registry.js';
import { parseMarkers } from '../../src/backends/adhoc.js';
import type { BackendContext, Machine, MachineRecord, Provider } from '../../src/backends/backend.js';
import { REMOTE_PATH } from '../../src/backends/script.js';
import { isAlive } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { freePort, startSshd, type Sshd } from '../ssh/sshd.js';
import { lostMidScript, relayedHost } from './relayed-host.js';
import { leavingScript, leftPids } from '../ssh/leaving-script.js';

/**
 * How long a test waits to see that an allocation did NOT happen. One that wrongly went
 * ahead is an SSH connection to the local sshd: tens of milliseconds, well under this
 * bound even when three test files share two cores (200 ms left little margin).
 */
const ALLOCATION_MS = 1000;

t.test('adhoc markers', async (t) => {
  t.same(parseMarkers(0, 'noise\n<ADDRESS 10.0.0.1:2222>\n'), { exitCode: 0, output: 'noise\n<ADDRESS 10.0.0.1:2222>\n', address: '10.0.0.1:2222' });
  t.equal(parseMarkers(213, '<ERROR not yet>\n').error, 'not yet');
  t.equal(parseMarkers(213, '<FATAL no quota>\n').fatal, 'no quota');
  t.equal(parseMarkers(0, 'ADDRESS=1.2.3.4\n').address, undefined, 'ADDRESS= does not work, as in spread');
});

t.test('adhoc: a malformed address from the allocate script is the backend\'s allocation error', async (t) => {
  const dir = t.testdir();
  const ctx: BackendContext = { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'cache') };
  for (const address of ['a:b:c', 'host:port', '[::1', '127.0.0.1:70000', '127.0.0.1:0']) {
    const p = await createProvider('lab', 'adhoc', { allocate: `ADDRESS '${address}'` }, ctx);
    await t.rejects(p.allocate({ name: 'debian-12' }), {
      code: 'FC_ERR_UNAVAILABLE',
      message: `cannot allocate lab:debian-12: allocate script must print an address with ADDRESS <host[:port]>, not "${address}"`,
    }, address);
  }
});

t.test('adhoc: allocate and discard past their kill-timeout are killed, and the error says so', async (t) => {
  const dir = t.testdir();
  const pids = join(dir, 'pids');
  // Ignores SIGTERM: only SIGKILL to the group ends it. A child of its own, so the group is checked too.
  const hang = `trap '' TERM; sleep 30 & echo "$$ $!" >> ${pids}; echo started; wait`;
  const started = (): Promise<number[]> => readFile(pids, 'utf8').then((s) => s.split(/\s+/).filter(Boolean).map(Number), () => []);
  // Only if the check below did not see them end: their PIDs may be other tests' processes by then.
  let ended = false;
  t.teardown(async () => {
    if (!ended) for (const pid of await started()) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  });
  const ctx: BackendContext = { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'cache'), scriptTimeouts: { warn: 60_000, kill: 300 } };
  const p = await createProvider('adhoc', 'adhoc', { allocate: hang, discard: hang, 'allocate-timeout': '100ms' }, ctx);
  const allocating = Date.now();
  await t.rejects(p.allocate({ name: 'x' }), /^cannot allocate adhoc:x: allocate script failed: kill-timeout reached: started$/);
  t.ok(Date.now() - allocating < 5000, 'killed at its kill-timeout');
  const machine = { system: { name: 'x' }, address: '10.0.0.1' } as Machine;
  await t.rejects(p.discard(machine), /^cannot discard adhoc:x at 10\.0\.0\.1: discard script failed: kill-timeout reached: started$/);
  const pidList = await started();
  t.equal(pidList.length, 4, 'each script and its child were started');
  await eventually('every process of both scripts ended', () => pidList.every((pid) => !isAlive(pid)));
  ended = true;
});

t.test("adhoc: allocate and discard run with spread's fixed PATH and its SPREAD_* variables, as spread's local scripts do", async (t) => {
  const dir = t.testdir();
  const seen = join(dir, 'seen');
  const report = `path=$PATH backend=$SPREAD_BACKEND system=$SPREAD_SYSTEM user=[$SPREAD_SYSTEM_USERNAME] syspw=[$SPREAD_SYSTEM_PASSWORD] pw=\${SPREAD_PASSWORD:-unset} addr=[$SPREAD_SYSTEM_ADDRESS] deb=$DEBIAN_FRONTEND`;
  const ctx: BackendContext = { projectRoot: dir, remotePath: '/home/test', password: 'session-pw', stateDir: join(dir, 'cache') };
  const p = await createProvider('cloud', 'adhoc', { allocate: `FATAL "${report}"`, discard: `echo "${report}" > ${seen}` }, ctx);
  t.not(process.env.PATH, REMOTE_PATH, "the test's own PATH differs from spread's");
  await t.rejects(p.allocate({ name: 'ubuntu-24.04', username: 'admin' }), { message: `cannot allocate cloud:ubuntu-24.04: path=${REMOTE_PATH} backend=cloud system=ubuntu-24.04 user=[admin] syspw=[] pw=session-pw addr=[] deb=noninteractive` });
  await p.discard({ system: { name: 'ubuntu-24.04', password: 'own' }, address: '10.0.0.7:22' } as Machine);
  t.equal((await readFile(seen, 'utf8')).trim(), `path=${REMOTE_PATH} backend=cloud system=ubuntu-24.04 user=[] syspw=[own] pw=unset addr=[10.0.0.7:22] deb=noninteractive`, 'a system with its own password gets no SPREAD_PASSWORD');
});

t.test('adhoc: the wait for the SSH port has a deadline of its own after a slow allocate', async (t) => {
  const dir = t.testdir();
  const attempts = join(dir, 'attempts');
  const port = await freePort(); // nothing listens there
  const lines: string[] = [];
  const ctx: BackendContext = { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'cache'), log: (line) => lines.push(`${Date.now()} ${line}`) };
  // allocate-timeout 3s: the first attempt uses up 1.5 s of it (a margin of 1.5 s for the
  // shells under load), the second prints the address
  const allocate = `echo x >> ${attempts}; if [ $(wc -l < ${attempts}) -eq 1 ]; then sleep 1.5; ERROR not yet; fi; ADDRESS 127.0.0.1:${port}`;
  const p = await createProvider('cloud', 'adhoc', { allocate, 'allocate-timeout': '3s', 'retry-delay': '10ms' }, ctx);
  await t.rejects(p.allocate({ name: 'x' }), { message: /^127\.0\.0\.1:\d+ does not accept connections$/ });
  const failed = Date.now();
  const waiting = lines.find((l) => l.includes('Waiting for cloud:x to make SSH available'));
  t.ok(waiting, 'the port was waited on');
  const waited = failed - Number(waiting!.split(' ')[0]);
  t.ok(waited >= 3000, `the port got its own 3 s after allocate took 1.5 s (waited ${waited} ms)`);
});

t.test('ssh: a reuse that cannot connect frees its host for the other workers', async (t) => {
  const dir = t.testdir();
  const address = `127.0.0.1:${await freePort()}`; // nothing listens: every connection is refused
  const ctx: BackendContext = { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'cache') };
  const p = await createProvider('lab', 'ssh', { hosts: [{ address }], 'connect-retries': 0 }, ctx);
  await t.rejects(p.reuse({ backend: 'lab', system: 'debian-12', address }, { name: 'debian-12' }));
  // a host left busy would make this wait until the signal aborts it (a timer that holds the
  // process open, unlike AbortSignal.timeout's)
  const waited = new AbortController();
  const timer = setTimeout(() => waited.abort(), 10_000);
  const err = await p.allocate({ name: 'debian-12' }, { signal: waited.signal }).then(
    () => undefined,
    (e: Error) => e,
  );
  clearTimeout(timer);
  t.notOk(waited.signal.aborted, 'the allocation tried the host instead of waiting for it');
  t.ok(err, 'and failed to connect, as the reuse did');
});

let shared: Promise<Sshd> | undefined;
/**
 * One real sshd for the tests whose machines it serves as it is (neither stopped, relayed nor
 * reconfigured; each test its own provider): started by the first, stopped at the end of the file.
 */
function sharedSshd(): Promise<Sshd> {
  shared ??= startSshd(t, t.testdir());
  return shared;
}

/** b's allocation by `p` must be refused; a machine wrongly allocated is closed (its connection would hold the test open). */
function refusedAllocation(t: Test, p: Provider, message: string | RegExp, why: string): Promise<void> {
  return p.allocate({ name: 'b' }).then(async (m) => {
    await m.close();
    t.fail(`allocated at ${m.address}: ${why}`);
  }, (err: unknown) => void t.match(err, { code: 'FC_ERR_UNAVAILABLE', message }, why));
}

t.test('ssh and adhoc backends against a real sshd', async (t) => {
  const dir = t.testdir();
  const sshd = await sharedSshd();
  const remotePath = join(dir, 'remote-project');
  const ctx: BackendContext = { projectRoot: dir, remotePath, password: 'session-pw', stateDir: join(dir, 'cache') };
  const lines: string[] = [];

  await t.test('ssh: a static host list, one machine per host at a time', async (t) => {
    const p = await createProvider('lab', 'ssh', { hosts: [{ address: `127.0.0.1:${sshd.port}`, key: sshd.keyPath, systems: ['debian-12'] }] }, ctx);
    await t.rejects(p.allocate({ name: 'fedora' }), /no host serves system fedora/);
    const m = await p.allocate({ name: 'debian-12' });
    t.equal(m.name, 'lab:debian-12');
    t.equal(m.projectPath, remotePath);
    t.equal(m.executorKey, 'ssh:127.0.0.1');
    await m.exec('mkdir -p "$SPREAD_PATH"', { env: [['SPREAD_PATH', m.projectPath]], cwd: '/', trace: false });
    const r = await m.exec('echo "$(whoami) in $(pwd)"', { trace: false });
    t.equal(r.output, `root in ${remotePath}\n`);
    let second = false;
    const waiting = p.allocate({ name: 'debian-12' }).then((m2) => ((second = true), m2));
    await new Promise((r) => setTimeout(r, ALLOCATION_MS));
    t.notOk(second, 'the only host is busy: the second allocation waits');
    await m.discard();
    const m2 = await waiting; // released host is allocated again
    t.same(m2.record(), { backend: 'lab', system: 'debian-12', address: `127.0.0.1:${sshd.port}`, username: 'root', password: 'session-pw' });
    await m2.discard();
  });

  await t.test('adhoc: allocate prints ADDRESS, discard sees it; ERROR retries, FATAL stops', async (t) => {
    const log = join(dir, 'adhoc.log');
    const allocate = [
      `echo "allocate $SPREAD_BACKEND $SPREAD_SYSTEM pw=$SPREAD_PASSWORD addr=[$SPREAD_SYSTEM_ADDRESS] cwd=$(pwd)" >> ${log}`,
      `if [ ! -e ${dir}/tried ]; then touch ${dir}/tried; ERROR not ready yet; fi`,
      `ADDRESS 127.0.0.1:${sshd.port}`,
    ].join('\n');
    const discard = `echo "discard $SPREAD_SYSTEM_ADDRESS" >> ${log}`;
    const p = await createProvider('adhoc', 'adhoc', { allocate, discard, key: sshd.keyPath, 'retry-delay': '50ms' }, { ...ctx, log: (l) => lines.push(l) });
    const m = await p.allocate({ name: 'debian-12' });
    t.equal(m.name, 'adhoc:debian-12');
    t.equal(m.address, `127.0.0.1:${sshd.port}`);
    const r = await m.exec('echo $((6 * 7))', { cwd: '/', trace: false });
    t.equal(r.output, '42\n');
    await m.discard();
    const entries = (await readFile(log, 'utf8')).trim().split('\n');
    t.equal(entries.length, 3);
    t.equal(entries[0], `allocate adhoc debian-12 pw=session-pw addr=[] cwd=${dir}`);
    t.equal(entries[1], entries[0], 'ERROR made spread-style retry');
    t.equal(entries[2], `discard 127.0.0.1:${sshd.port}`);
    t.match(lines.join('\n'), /Cannot allocate adhoc:debian-12: not ready yet/);
    t.match(lines.join('\n'), new RegExp(`Waiting for adhoc:debian-12 to make SSH available at 127.0.0.1:${sshd.port}`));

    // `key` as the private key's text (spread's $(HOST: cat …) idiom, evaluated by the runner)
    const pem = await createProvider('adhoc', 'adhoc', { allocate: `ADDRESS 127.0.0.1:${sshd.port}`, key: (await readFile(sshd.keyPath, 'utf8')).trim() }, ctx);
    const viaPem = await pem.allocate({ name: 'debian-12' });
    t.equal((await viaPem.exec('echo pem', { cwd: '/', trace: false })).output, 'pem\n', 'a key given as its text');
    await viaPem.discard();
    const missing = await createProvider('adhoc', 'adhoc', { allocate: `ADDRESS 127.0.0.1:${sshd.port}`, key: 'keys/missing' }, ctx);
    await t.rejects(missing.allocate({ name: 'debian-12' }), { code: 'FC_ERR_CONFIG', message: /no private key file .*keys\/missing/ });

    const fatal = await createProvider('adhoc', 'adhoc', { allocate: 'FATAL out of quota' }, ctx);
    await t.rejects(fatal.allocate({ name: 'x' }), /cannot allocate adhoc:x: out of quota/);
    const silent = await createProvider('adhoc', 'adhoc', { allocate: 'echo ADDRESS=1.2.3.4' }, ctx);
    await t.rejects(silent.allocate({ name: 'x' }), /must print an address with ADDRESS/);
    const failing = await createProvider('adhoc', 'adhoc', { allocate: 'echo boom; exit 3', 'retry-delay': '20ms', 'allocate-timeout': '100ms' }, ctx);
    await t.rejects(failing.allocate({ name: 'x' }), /exit code 3: boom/);
  });

  await t.test('adhoc: a fixed address serves one machine of the run at a time, allocated or taken back', async (t) => {
    const address = `127.0.0.1:${sshd.port}`;
    const p = await createProvider('cloud', 'adhoc', { allocate: `ADDRESS ${address}`, key: sshd.keyPath }, ctx);
    const a = await p.allocate({ name: 'a' });
    await t.rejects(p.allocate({ name: 'b' }), { code: 'FC_ERR_UNAVAILABLE', message: `cannot allocate cloud:b: the allocate script of backend cloud gave address ${address}, which machine cloud:a of this run holds (one machine serves one worker at a time)` });
    // a machine an earlier run kept at that address is not taken back onto it either
    await t.rejects(p.reuse({ backend: 'cloud', system: 'b', address }, { name: 'b' }), { message: `cannot reuse cloud:b at ${address}, which machine cloud:a of this run holds` });
    await a.discard();
    const b = await p.reuse({ backend: 'cloud', system: 'b', address }, { name: 'b' });
    await t.rejects(p.allocate({ name: 'a' }), /which machine cloud:b of this run holds/, 'one taken back holds its address too');
    await b.discard();
    const again = await p.allocate({ name: 'a' });
    t.equal(again.address, address, 'free again once discarded');
    await again.discard();
  });

  await t.test('adhoc: a fixed address is held until its discard script has ended', async (t) => {
    const address = `127.0.0.1:${sshd.port}`;
    const started = join(dir, 'slow-discard-started');
    const finish = join(dir, 'slow-discard-finish');
    // a slow discard (a re-image), bounded: it ends by itself after 20 s
    const discard = `touch ${started}; for i in $(seq 400); do [ -e ${finish} ] && exit 0; sleep 0.05; done; exit 1`;
    const p = await createProvider('cloud', 'adhoc', { allocate: `ADDRESS ${address}`, discard, key: sshd.keyPath }, ctx);
    const a = await p.allocate({ name: 'a' });
    const discarding = a.discard();
    await eventually('the discard script started', () => readFile(started).then(() => true, () => false));
    const discarded = `gave address ${address}, where machine cloud:a of this run is being discarded (its discard script is running) (one machine serves one worker at a time)`;
    await refusedAllocation(t, p, discarded, 'the machine at the address is still being discarded');
    await t.rejects(p.reuse({ backend: 'cloud', system: 'b', address }, { name: 'b' }), { message: `cannot reuse cloud:b at ${address}, where machine cloud:a of this run is being discarded (its discard script is running)` });
    await writeFile(finish, '');
    await discarding;
    const again = await p.allocate({ name: 'b' });
    t.equal(again.address, address, 'free again once the discard script ended');
    await again.discard();
  });

  await t.test('adhoc: a fixed address whose discard failed serves no other machine of the run: the machine is left there, on record for run --discard', async (t) => {
    const address = `127.0.0.1:${sshd.port}`;
    const p = await createProvider('cloud', 'adhoc', { allocate: `ADDRESS ${address}`, discard: 'echo "no such machine"; exit 1', key: sshd.keyPath }, ctx);
    const a = await p.allocate({ name: 'a' });
    await t.rejects(a.discard(), /cannot discard cloud:a at .*: discard script failed with exit code 1: no such machine/);
    const left = `where machine cloud:a of this run was left by its failed discard (on record for run --discard)`;
    await refusedAllocation(t, p, `gave address ${address}, ${left} (one machine serves one worker at a time)`, 'the machine its discard left');
    await t.rejects(p.reuse({ backend: 'cloud', system: 'b', address }, { name: 'b' }), { message: `cannot reuse cloud:b at ${address}, ${left}` });
  });

  await t.test('adhoc: one IP address however it is written is one machine: held while allocated, or kept by an earlier run', async (t) => {
    // the script gives the next spelling of its list at each allocation
    const spellings = join(dir, 'spellings');
    const spell = async (...addresses: string[]): Promise<void> => writeFile(spellings, `${addresses.join('\n')}\n`);
    const allocate = `ADDRESS "$(head -n1 ${spellings})"; sed -i 1d ${spellings}`;
    const p = await createProvider('cloud', 'adhoc', { allocate, key: sshd.keyPath, 'allocate-timeout': '1s' }, ctx);
    await spell(`127.0.0.1:${sshd.port}`, `127.1:${sshd.port}`);
    const a = await p.allocate({ name: 'a' });
    await refusedAllocation(t, p, `gave address 127.1:${sshd.port}, which machine cloud:a of this run holds`, 'an IPv4 shorthand of the held address');
    await a.discard();
    // no sshd listens on ::1: an address wrongly let through fails to connect instead
    p.holdKept?.([{ backend: 'cloud', system: 'k', address: `[::1]:${sshd.port}` }, { backend: 'cloud', system: 'bare', address: '::1' }]);
    await spell(`[0:0:0:0:0:0:0:1]:${sshd.port}`, '[::1]:22', '0:0:0:0:0:0:0:1');
    await refusedAllocation(t, p, `gave address [0:0:0:0:0:0:0:1]:${sshd.port}, which machine cloud:k kept by an earlier run holds`, 'an IPv6 address written in full');
    await refusedAllocation(t, p, 'gave address [::1]:22, which machine cloud:bare kept by an earlier run holds', 'a kept bare IPv6 address and its bracketed spelling');
    await refusedAllocation(t, p, 'gave address 0:0:0:0:0:0:0:1, which machine cloud:bare kept by an earlier run holds', 'a bare IPv6 address written in full');
  });

  await t.test('adhoc: the address of a machine an earlier run kept (holdKept) goes to no allocation, also after a reuse that failed', async (t) => {
    const address = `127.0.0.1:${sshd.port}`;
    const discarded = join(dir, 'held-discarded');
    const p = await createProvider('cloud', 'adhoc', { allocate: `ADDRESS ${address}`, discard: `echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`, key: sshd.keyPath }, ctx);
    const kept: MachineRecord = { backend: 'cloud', system: 'a', address };
    const refused = (message: string | RegExp, why: string): Promise<void> => refusedAllocation(t, p, message, why);
    p.holdKept?.([kept]);
    const held = `cannot allocate cloud:b: the allocate script of backend cloud gave address ${address}, which machine cloud:a kept by an earlier run holds (one machine serves one worker at a time)`;
    await refused(held, 'an --abend run allocates nothing onto the machine left for inspection');
    await t.rejects(p.reuse(kept, { name: 'a' }, AbortSignal.abort()), 'a reuse cut short');
    await refused(held, 'the machine it did not take back is still held');
    const again = await p.reuse(kept, { name: 'a' });
    t.equal(again.address, address, 'taken back at its address');
    await refused(/which machine cloud:a of this run holds/, 'then held as a machine of the run');
    await again.discard();
    t.equal(await readFile(discarded, 'utf8'), `${address}\n`, 'discarded once, when the run is done with it');
  });
});

t.test('ssh: two hosts of one address with their own port: are two machines, each released, kept and reused as itself', async (t) => {
  const dir = t.testdir();
  const [a, b] = [await startSshd(t, join(dir, 'a')), await startSshd(t, join(dir, 'b'))];
  const ctx: BackendContext = { projectRoot: dir, remotePath: join(dir, 'remote-project'), password: 'pw', stateDir: join(dir, 'cache') };
  const hosts = [a, b].map((s) => ({ address: '127.0.0.1', port: s.port, key: s.keyPath }));
  const p = await createProvider('lab', 'ssh', { hosts }, ctx);
  // the port sshd serves the session on: SSH_CONNECTION's fourth field
  const portOf = async (m: Machine): Promise<number> => Number((await m.exec('echo $SSH_CONNECTION', { cwd: '/', trace: false })).output.trim().split(' ')[3]);
  const m1 = await p.allocate({ name: 'debian-12' });
  const m2 = await p.allocate({ name: 'debian-12' });
  t.same([await portOf(m1), await portOf(m2)], [a.port, b.port], 'one machine per host');
  t.not(m1.record().address, m2.record().address, 'their records tell them apart (run --discard, the reuse file)');
  await m2.discard();
  // a host left busy would make this wait until the signal aborts it
  const waited = new AbortController();
  const timer = setTimeout(() => waited.abort(), 10_000);
  const m3 = await p.allocate({ name: 'debian-12' }, { signal: waited.signal });
  clearTimeout(timer);
  t.equal(await portOf(m3), b.port, 'the host released is the one the discarded machine was on, not the other one, still busy');
  p.keep?.(m3);
  await m3.close();
  // by a later run, as a kept machine is
  const again = await (await createProvider('lab', 'ssh', { hosts }, ctx)).reuse(m3.record(), { name: 'debian-12' });
  t.equal(await portOf(again), b.port, 'a kept machine is taken back on its own host');
  await again.discard();
  await m1.discard();
});

/** An ssh provider of one host (a real sshd), and a record of system a's machine kept on it by an earlier run. */
async function oneHostProvider(t: Test): Promise<{ p: Provider; kept: MachineRecord }> {
  const dir = t.testdir();
  const sshd = await sharedSshd();
  const ctx: BackendContext = { projectRoot: dir, remotePath: join(dir, 'remote-project'), password: 'pw', stateDir: join(dir, 'cache') };
  const p = await createProvider('lab', 'ssh', { hosts: [{ address: `127.0.0.1:${sshd.port}`, key: sshd.keyPath }] }, ctx);
  return { p, kept: { backend: 'lab', system: 'a', address: `127.0.0.1:${sshd.port}` } };
}

t.test('ssh: a kept machine is not taken back onto a host another machine of the run holds (a host of two systems)', async (t) => {
  const { p, kept } = await oneHostProvider(t);
  // system a's machine was kept by an earlier run, not held by this one (holdKept: as the second
  // record of a host on record twice); this run's worker of b got the host first
  const b = await p.allocate({ name: 'b' });
  await t.rejects(p.reuse(kept, { name: 'a' }), /host 127\.0\.0\.1:\d+ of backend lab serves another machine of this run/);
  await b.discard();
  const again = await p.reuse(kept, { name: 'a' });
  t.equal(again.address, kept.address, 'taken back once the host is free');
  await again.discard();
});

t.test('ssh: a host held for its kept machine (holdKept) goes to no other system, also after a reuse that failed', async (t) => {
  const { p, kept } = await oneHostProvider(t);
  p.holdKept?.([kept]);
  await t.rejects(p.allocate({ name: 'b' }), /every host of backend lab serving b is kept/, 'the other system allocates nothing');
  await t.rejects(p.reuse(kept, { name: 'a' }, AbortSignal.abort()), 'a reuse cut short');
  await t.rejects(p.allocate({ name: 'b' }), /every host of backend lab serving b is kept/, 'the machine it did not take back is still held');
  const again = await p.reuse(kept, { name: 'a' });
  t.equal(again.address, kept.address, 'taken back on its host');
  await again.close();
});

t.test('ssh: a host that cannot be reached is passed over for a free one, and no machine goes to it again this run', async (t) => {
  const dir = t.testdir();
  const sshd = await sharedSshd();
  const down = await freePort(); // nothing listens: every connection is refused
  const lines: string[] = [];
  const ctx: BackendContext = { projectRoot: dir, remotePath: join(dir, 'remote-project'), password: 'pw', stateDir: join(dir, 'cache'), log: (l) => lines.push(l) };
  // the host that is down comes first: the first free host is the one each allocation took
  const p = await createProvider('lab', 'ssh', { hosts: [{ address: `127.0.0.1:${down}` }, { address: `127.0.0.1:${sshd.port}`, key: sshd.keyPath }], 'connect-retries': 0 }, ctx);
  const m = await p.allocate({ name: 'debian-12' });
  t.equal(m.address, `127.0.0.1:${sshd.port}`, 'the machine is on the host that answers');
  t.match(lines.join('\n'), new RegExp(`Host 127\\.0\\.0\\.1:${down} of backend lab is passed over for the rest of the run: cannot connect to 127\\.0\\.0\\.1:${down}`));
  await m.discard();
  const again = await p.allocate({ name: 'debian-12' });
  t.equal(again.address, `127.0.0.1:${sshd.port}`, 'the next allocation goes to the live host at once');
  t.equal(lines.length, 1, 'the host that is down was not tried again');
  // the live host busy and the other one down: a second machine waits for the live one
  let second = false;
  const waiting = p.allocate({ name: 'debian-12' }).then((m2) => ((second = true), m2));
  await new Promise((r) => setTimeout(r, ALLOCATION_MS));
  t.notOk(second, 'it waits for the busy host rather than fail on the one that is down');
  await again.discard();
  await (await waiting).discard();
});

t.test('ssh: a worker waiting for a host leaves one abort listener on the run\'s signal however often it is woken', async (t) => {
  const dir = t.testdir();
  const sshd = await sharedSshd();
  const ctx: BackendContext = { projectRoot: dir, remotePath: join(dir, 'remote-project'), password: 'pw', stateDir: join(dir, 'cache') };
  const address = `127.0.0.1:${sshd.port}`;
  // one host per system, both on the test sshd: each release of b's host wakes the worker waiting for a's
  const p = await createProvider('lab', 'ssh', { hosts: [{ address, key: sshd.keyPath, systems: ['a'] }, { address: `localhost:${sshd.port}`, key: sshd.keyPath, systems: ['b'] }] }, ctx);
  const held = await p.allocate({ name: 'a' });
  const run = new AbortController();
  const waiting = p.allocate({ name: 'a' }, { signal: run.signal }).then(() => t.fail('the host of a was never released'), () => undefined);
  for (let i = 0; i < 5; i++) await (await p.allocate({ name: 'b' })).discard();
  t.equal(getEventListeners(run.signal, 'abort').length, 1, 'one listener, not one more per wake-up');
  run.abort();
  await waiting;
  await held.discard();
});

t.test('ssh: a machine whose script lost its connection stops the script\'s processes, over a new connection, before its host serves another', async (t) => {
  const { dir, relay, p } = await relayedHost(t);
  const { machine, left } = await lostMidScript(t, p, relay, join(dir, 'pids'));
  await machine.discard();
  // a SIGKILLed process is gone once the kernel has run its exit: awaited, not assumed at once
  await eventually('both sleeps are stopped once the machine is discarded, the one that left its process group too', () => !left.some(isAlive), 5000);
  const next = await p.allocate({ name: 'debian-12' });
  t.equal(next.address, machine.address, 'the host serves the next machine');
  await next.discard();
});

t.test('ssh: a host where a script lost its connection and whose processes cannot be stopped is swept again when next taken: it serves once that succeeds, and is passed over while it still cannot', async (t) => {
  const { dir, relay, p, lines, nextRun } = await relayedHost(t);
  const { machine, left } = await lostMidScript(t, p, relay, join(dir, 'pids'));
  relay.refuse();
  await machine.discard();
  t.match(lines.join('\n'), new RegExp(`The processes of a script on host 127\\.0\\.0\\.1:${relay.port} of backend lab whose connection was lost could not be stopped: the host serves another machine of this run only once they are`));
  t.notMatch(lines.join('\n'), /passed over/, 'the host is not lost to the run yet');
  t.ok(left.every(isAlive), 'the sleeps run on');
  // the host answers again (a network cut healed): the next allocation sweeps first, then is served
  relay.accept();
  const next = await p.allocate({ name: 'debian-12' });
  t.equal(next.address, machine.address, 'the host serves the next machine');
  await eventually('the lost script\'s sleeps were stopped first, the one that left its process group too', () => !left.some(isAlive), 5000);
  await next.discard();

  // a host that still does not answer when next taken: passed over for the rest of the run
  const other = await nextRun();
  const second = await lostMidScript(t, other, relay, join(dir, 'pids-2'));
  relay.refuse();
  await second.machine.discard();
  const refused = /a script whose connection was lost may still run on host 127\.0\.0\.1:\d+ of backend lab: its processes still cannot be stopped/;
  await t.rejects(other.allocate({ name: 'debian-12' }), { message: refused }, 'the only host serves no other machine');
  t.match(lines.join('\n'), new RegExp(`Host 127\\.0\\.0\\.1:${relay.port} of backend lab is passed over for the rest of the run: ${refused.source}`));
  relay.accept();
  await t.rejects(other.allocate({ name: 'debian-12' }), { message: refused }, 'nor later in the run: it was passed over');
});

t.test('adhoc: an address whose lost script could not be stopped is swept again when it comes back, and serves the new machine once that succeeds', async (t) => {
  const { dir, relay, p, lines } = await relayedHost(t, 'adhoc');
  const { machine, left } = await lostMidScript(t, p, relay, join(dir, 'pids'));
  const discarded = async (): Promise<number> => (await readFile(join(dir, 'discarded'), 'utf8')).trim().split('\n').length;
  relay.refuse();
  await machine.discard();
  t.match(lines.join('\n'), /whose connection was lost could not be stopped: its address serves another machine of this run only once they are/);
  t.equal(await discarded(), 1, 'the machine is discarded');
  // still not answering: a machine taken back at the address (one retry, as its own connection) serves no job
  const record: MachineRecord = { backend: 'lab', system: 'debian-12', address: machine.address };
  await t.rejects(p.reuse(record, { name: 'debian-12' }), { code: 'FC_ERR_UNAVAILABLE', message: /may still run there, and its processes still cannot be stopped/ });
  t.ok(left.every(isAlive), 'the sleeps run on');
  // allocate gives the address back, its port open before its sshd answers (a device coming
  // up): the sweep waits as long as the connection to the new machine would, past the
  // attempt and retry that refused the machine taken back
  const before = relay.refused();
  let failed: unknown;
  const allocating = p.allocate({ name: 'debian-12' });
  allocating.catch((err: unknown) => (failed = err));
  await eventually('the sweep is tried more than twice', () => failed !== undefined || relay.refused() - before > 3, 20_000);
  t.equal(failed, undefined, 'the new machine is not refused meanwhile');
  relay.accept();
  const next = await allocating;
  t.equal(next.address, machine.address, 'the address serves the next machine once it answers');
  await eventually('the lost script\'s sleeps were stopped first, the one that left its process group too', () => !left.some(isAlive), 5000);
  await next.discard();
  t.equal(await discarded(), 2, 'each machine discarded once');
});

t.test('adhoc: a machine kept with its lost script on record is taken back by the next run\'s reuse only after the script\'s processes are stopped', async (t) => {
  const { dir, relay, p, nextRun } = await relayedHost(t, 'adhoc');
  const { machine, left } = await lostMidScript(t, p, relay, join(dir, 'pids'));
  relay.refuse();
  await t.rejects(machine.stopLostScripts!(), 'the machine does not answer the sweep');
  // kept as the runner keeps it: its record, its connections closed
  const record = machine.record();
  t.equal(record.lostScripts?.length, 1, 'the lost script is on record');
  await machine.close();
  t.ok(left.every(isAlive), 'the sleeps run on');
  relay.accept();
  const reused = await (await nextRun()).reuse(record, { name: 'debian-12' });
  // a SIGKILLed process is gone once the kernel has run its exit: awaited, not assumed at once
  await eventually('the lost script\'s sleeps were stopped before the machine was handed back, the one that left its process group too', () => !left.some(isAlive), 5000);
  t.notOk(reused.record().lostScripts, 'nothing left on record once stopped');
  await reused.close();
});

t.test("ssh: a job whose processes could not be stopped at its end (its connection lost) has them stopped when its machine is discarded", async (t) => {
  const { dir, relay, p } = await relayedHost(t);
  const machine = await p.allocate({ name: 'debian-12' });
  const file = join(dir, 'pids');
  // the job's first script ends, leaving its sleeps; then its connection is lost
  t.equal((await machine.exec(leavingScript(file), { trace: false, cwd: '/', job: 'job-1' })).exitCode, 0);
  const left = leftPids(t, file);
  relay.cut();
  await t.rejects(machine.stopJob!('job-1'), 'the job cannot be stopped over the lost connection');
  t.ok(left.every(isAlive), 'the machine never saw the connection drop: the sleeps run on');
  await machine.discard();
  await eventually("the job's sleeps are stopped once the machine is discarded", () => !left.some(isAlive), 5000);
});

t.test('ssh: a job whose end-of-job sweep an interrupt cut has nothing killed when its machine is discarded either', async (t) => {
  const { dir, p } = await relayedHost(t);
  const machine = await p.allocate({ name: 'debian-12' });
  const file = join(dir, 'pids');
  t.equal((await machine.exec(leavingScript(file), { trace: false, cwd: '/', job: 'job-1' })).exitCode, 0);
  const left = leftPids(t, file);
  const interrupt = new AbortController();
  const sweep = machine.stopJob!('job-1', interrupt.signal);
  interrupt.abort(); // Ctrl-C while the sweep runs
  await t.rejects(sweep, 'the sweep is cut');
  t.ok(left.every(isAlive), 'the cut sweep killed nothing');
  await machine.discard();
  t.ok(left.every(isAlive), "nothing is killed after an interrupt (docs/run.md): the job's sleeps run on once the machine is discarded");
});
