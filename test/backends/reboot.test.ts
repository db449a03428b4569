// Machine.reboot on each backend, with real parts: local machines end their processes;
// ssh and adhoc machines against a real sshd. That sshd runs on this host and shares its
// kernel, so a real reboot is impossible here and /proc's boot_id never changes: the
// "reboot" is a reboot-command that kills the sshd and its connections and starts a new
// one after a pause, and the boot identity is a file it rewrites (writeRebootScript).
// What this shows: the request runs on the machine, the runner survives the machine being
// unreachable, reconnects with backoff to a new sshd, tells a new boot from the old one,
// and gives up with FC_ERR_REBOOT when none comes. What it cannot show: the default
// `reboot` command and boot_id on a real machine, nor a host that vanishes without closing
// its connections.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProvider } from '../../src/backends/registry.js';
import type { BackendContext, Machine } from '../../src/backends/backend.js';
import { isAlive } from '../helpers/processes.js';
import { startSshd, writeRebootScript } from '../ssh/sshd.js';

t.test('local: a reboot ends what the machine left running, nothing of another machine; so does discard', async (t) => {
  const dir = t.testdir();
  const p = await createProvider('local', 'local', {}, { projectRoot: dir, remotePath: '/home/test', password: 'pw', stateDir: join(dir, 'cache') });
  const [a, b] = (await Promise.all([p.allocate({ name: 's' }), p.allocate({ name: 's' })])) as [Machine, Machine];
  // One daemon left the script's process group (setsid), one stayed in it.
  const start = 'setsid sleep 600 >/dev/null 2>&1 & echo $! > daemon; sleep 600 >/dev/null 2>&1 & echo $! > child; touch kept';
  for (const m of [a, b]) t.equal((await m.exec(start, { trace: false })).exitCode, 0);
  const pids = (m: Machine) => ['daemon', 'child'].map((f) => Number(readFileSync(join(m.projectPath, f), 'utf8')));
  t.ok([...pids(a), ...pids(b)].every(isAlive), 'both machines have two processes left over');
  await a.reboot({ timeout: 10_000 });
  t.notOk(pids(a).some(isAlive), "the rebooted machine's processes are gone, the setsid one too");
  t.ok(pids(b).every(isAlive), "the other machine's processes still run");
  t.ok(existsSync(join(a.projectPath, 'kept')), 'files stay, as on a disk');
  t.equal((await a.exec('echo up', { trace: false })).output, 'up\n', 'the machine runs scripts after its reboot');
  const bPids = pids(b);
  await b.discard();
  t.notOk(bPids.some(isAlive), 'a discarded machine leaves no process behind either');
  await a.discard();
});

t.test('ssh and adhoc machines against a real sshd that restarts', async (t) => {
  const dir = t.testdir();
  const sshd = await startSshd(t, dir);
  const ctx: BackendContext = { projectRoot: dir, remotePath: join(dir, 'remote'), password: 'pw', stateDir: join(dir, 'cache') };
  const host = { address: `127.0.0.1:${sshd.port}`, key: sshd.keyPath };

  await t.test('ssh: the wait for a new boot identity gives up after reboot-timeout', async (t) => {
    // `true` reboots nothing: the kernel's boot_id stays the same, as on a machine that ignored the request.
    const p = await createProvider('lab', 'ssh', { hosts: [host], 'reboot-command': 'true', 'reboot-timeout': '1s' }, ctx);
    const m = await p.allocate({ name: 'debian-12' });
    const started = Date.now();
    await t.rejects(m.reboot({ timeout: 60_000 }), { code: 'FC_ERR_REBOOT', message: /^lab:debian-12 did not come back with a new boot identity within 1 s of its reboot \(last attempt: connected, boot identity unchanged\)$/ });
    const took = Date.now() - started;
    // An attempt under way at the deadline is let finish (an ssh connection, at least 3 s
    // allowed, and one command, up to 11 s; 1-3 s in all on a loaded test machine).
    t.ok(took >= 1000 && took < 1000 + 3000 + 11_000, `gave up after reboot-timeout and the attempt under way, not the runner's 60 s (${took} ms)`);
    await m.discard();
  });

  await t.test('adhoc: the machine goes away, comes back with a new boot identity, the machine reconnects', async (t) => {
    // down half a second: back before the runner's fourth attempt (backoff 250 ms, 500 ms, 1 s)
    const { rebootCommand, bootIdCommand } = writeRebootScript(sshd, dir, 0.5);
    const p = await createProvider('cloud', 'adhoc', { allocate: `ADDRESS ${host.address}`, key: sshd.keyPath, 'reboot-command': rebootCommand, 'boot-id-command': bootIdCommand }, ctx);
    const m = await p.allocate({ name: 'debian-12' });
    const bootBefore = readFileSync(join(dir, 'boot_id'), 'utf8');
    const sshdBefore = Number(readFileSync(sshd.pidFile, 'utf8'));
    let warnings = 0;
    const started = Date.now();
    await m.reboot({ timeout: 20_000, warnTimeout: 500, onWarn: () => warnings++ });
    const took = Date.now() - started;
    const sshdAfter = Number(readFileSync(sshd.pidFile, 'utf8'));
    t.ok(took >= 1500, `waited through the second before the reboot and the down time (${took} ms)`);
    t.ok(warnings >= 2, `said the reboot is taking a while (${warnings} times)`);
    t.not(sshdAfter, sshdBefore, 'a new sshd answers');
    t.notOk(isAlive(sshdBefore), 'the old sshd is gone');
    const r = await m.exec(bootIdCommand, { trace: false, cwd: '/' });
    t.equal(r.exitCode, 0, 'the machine runs scripts over its new connection');
    t.not(r.output, bootBefore, 'with a new boot identity');
    await m.discard();
  });

  await t.test('ssh: a machine that never comes back fails with FC_ERR_REBOOT and the last connection error', async (t) => {
    const { rebootCommand, bootIdCommand } = writeRebootScript(sshd, dir, 'forever');
    const p = await createProvider('lab', 'ssh', { hosts: [host], 'reboot-command': rebootCommand, 'boot-id-command': bootIdCommand }, ctx);
    const m = await p.allocate({ name: 'debian-12' });
    await t.rejects(m.reboot({ timeout: 3000 }), { code: 'FC_ERR_REBOOT', message: /did not come back with a new boot identity within 3 s .*cannot connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED/ });
    await m.discard();
  });
});
