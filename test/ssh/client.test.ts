import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { shellQuote } from '../../src/shell-quote.js';
import { SshClient } from '../../src/ssh/client.js';
import { sweepJob, sweepScripts } from '../../src/ssh/script-guard.js';
import { descendantsOf, isAlive } from '../helpers/processes.js';
import { nobody } from '../helpers/nobody.js';
import { eventually } from '../helpers/wait.js';
import { leavingScript, leftPids } from './leaving-script.js';
import { freePort, isSshd, isSshdName, startSshd, type Sshd } from './sshd.js';

let shared: Promise<Sshd> | undefined;
/**
 * One real sshd for the tests that neither stop, freeze nor reconfigure theirs (each its own
 * directories and scripts): started by the first, stopped at the end of the file.
 */
function sharedSshd(): Promise<Sshd> {
  shared ??= startSshd(t, t.testdir());
  return shared;
}

t.test('ssh client against a real sshd', async (t) => {
  const dir = t.testdir();
  const sshd = await sharedSshd();
  const base = join(dir, 'remote');
  const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key }, { timeout: 5000 }, base);
  t.teardown(() => c.close());

  t.equal(await c.command(`mkdir -p ${base}/sub`), 0);
  let r = await c.exec('echo "$GREETING from $(pwd)"; echo err >&2', { env: [['GREETING', 'hello']], trace: false, cwd: 'sub' });
  t.equal(r.exitCode, 0);
  t.equal(r.output, `hello from ${base}/sub\nerr\n`, 'exports, cwd, combined output; the pid marker is hidden');
  r = await c.exec('echo "$PATH"', { trace: false });
  t.equal(r.output, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin\n', "spread's fixed PATH");
  r = await c.exec('exit 7', { trace: false });
  t.equal(r.exitCode, 7);
  r = await c.exec('ERROR bad thing', {});
  t.equal(r.exitCode, 213);
  t.match(r.output, /<ERROR bad thing>/);

  const chunks: string[] = [];
  const started = Date.now();
  // A duration of this test's own: the check below looks machine-wide.
  const nap = (20 + Math.random()).toFixed(6);
  r = await c.exec(`echo started; (sleep ${nap}; touch ${base}/survived) & sleep ${nap}`, { trace: false, killTimeout: 3000, onOutput: (s) => chunks.push(s) });
  t.ok(r.killed, 'kill timeout reached');
  // Well before the 20 s nap ends; loose, since a loaded machine (CI on 2 cores) delays the kill's round trips.
  t.ok(Date.now() - started < 15_000, `killed at the timeout, not at the end of the script (${Date.now() - started} ms)`);
  t.same(chunks, ['started\n'], 'output streamed as it came');
  r = await c.exec(`sleep 0.3; pgrep -f "sleep ${nap}" || echo none`, { trace: false });
  t.equal(r.output, 'none\n', 'the whole process group was killed');

  await c.upload(Readable.from([Buffer.from('streamed')]), 'deep/a/b.txt', 0o640);
  r = await c.exec('cat deep/a/b.txt; echo; stat -c %a deep/a/b.txt', { trace: false });
  t.equal(r.output, 'streamed\n640\n');
  await writeFile(join(dir, 'local.txt'), 'from a file');
  await c.upload(join(dir, 'local.txt'), `${base}/copied.txt`);
  t.equal((await c.exec('cat copied.txt', { trace: false })).output, 'from a file', 'a local file, to an absolute path');
});

t.test("an upload into a directory that is not root's alone is refused, over SFTP and through a shell: another user could swap the agent root runs", { skip: typeof nobody() === 'string' && (nobody() as string) }, async (t) => {
  const who = nobody() as { uid: number; gid: number };
  for (const sftp of [true, false]) {
    await t.test(sftp ? 'sftp' : 'shell', async (t) => {
      const dir = t.testdir();
      const sshd = await startSshd(t, dir, { sftp });
      const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key }, { timeout: 5000 });
      t.teardown(() => c.close());
      const owned = join(dir, 'owned');
      await mkdir(owned);
      await chown(owned, who.uid, who.gid);
      await t.rejects(c.upload(Readable.from([Buffer.from('agent')]), join(owned, 'agent.mjs')), { message: /cannot write into .*\/owned on the machine \(exit 1: it is not root's alone/ }, 'a directory another user owns');
      t.notOk(existsSync(join(owned, 'agent.mjs')), 'nothing written there');
      const open = join(dir, 'open');
      await mkdir(open);
      await chmod(open, 0o777);
      await t.rejects(c.upload(Readable.from([Buffer.from('agent')]), join(open, 'agent.mjs')), { message: /it is not root's alone/ }, 'a directory others may write to');
      const linked = join(dir, 'linked');
      await symlink(owned, linked);
      await t.rejects(c.upload(Readable.from([Buffer.from('agent')]), join(linked, 'agent.mjs')), { message: /it is not root's alone/ }, 'a symlink to a directory');
      await c.upload(Readable.from([Buffer.from('agent')]), join(dir, 'made', 'here', 'agent.mjs'));
      t.equal(await readFile(join(dir, 'made', 'here', 'agent.mjs'), 'utf8'), 'agent', 'a directory it makes is root\'s');
      await chmod(join(dir, 'made', 'here'), 0o775);
      await c.upload(Readable.from([Buffer.from('again')]), join(dir, 'made', 'here', 'agent.mjs'));
      t.equal(await readFile(join(dir, 'made', 'here', 'agent.mjs'), 'utf8'), 'again', "one root's group may write to is root's still");
    });
  }
});

t.test('a host without an SFTP server: files go through a shell, whole or not at all', async (t) => {
  const dir = t.testdir();
  const sshd = await startSshd(t, dir, { sftp: false });
  const base = join(dir, 'remote');
  const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key }, { timeout: 5000 }, base);
  t.teardown(() => c.close());
  const big = randomBytes(3 * 1024 * 1024 + 17);
  await c.upload(Readable.from([big.subarray(0, 1000), big.subarray(1000)]), 'deep/a/b.bin', 0o640);
  const r = await c.exec('sha256sum < deep/a/b.bin | cut -c1-64; stat -c %a deep/a/b.bin; ls deep/a', { trace: false });
  t.equal(r.output, `${createHash('sha256').update(big).digest('hex')}\n640\nb.bin\n`, 'the bytes, the mode, no part file left');
  // a source that fails midway: nothing at the target's name
  const failing = new Readable({ read() { this.push(Buffer.alloc(1000)); this.destroy(new Error('source broke')); } });
  await t.rejects(c.upload(failing, 'cut.bin'), /source broke/);
  t.equal((await c.exec('ls cut.bin 2>&1 || true', { trace: false })).output.includes('No such file'), true, 'no cut.bin');
  // a target cat cannot write: the command's own words
  await c.command(`mkdir -p ${base}/x.bin.fleetcache-part`);
  await t.rejects(c.upload(Readable.from([Buffer.from('abc')]), 'x.bin'), /cannot write .*x\.bin on the machine \(exit 1: .*Is a directory\)/);
});

t.test('an upload is cut by its abort signal (the run interrupted), over SFTP and through a shell', async (t) => {
  for (const sftp of [true, false]) {
    await t.test(sftp ? 'sftp' : 'shell', async (t) => {
      const dir = t.testdir();
      const sshd = await startSshd(t, dir, { sftp });
      const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key }, { timeout: 5000 }, join(dir, 'remote'));
      t.teardown(() => c.close());
      // a source that sends a little, then nothing more, ever (a stalled transfer)
      let pulled = false;
      const stalled = new Readable({ read() { if (!pulled) this.push(Buffer.alloc(1000)); pulled = true; } });
      const ac = new AbortController();
      const upload = c.upload(stalled, 'stalled.bin', 0o644, ac.signal);
      setTimeout(() => ac.abort(), 300);
      const started = Date.now();
      // bounded: an upload deaf to its signal waits on the stalled source for ever
      const notCut = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('the upload still runs 5 s after its abort')), 5300).unref());
      await t.rejects(Promise.race([upload, notCut]), { name: 'AbortError' }, 'the upload fails with the abort, not another error');
      t.ok(Date.now() - started < 5000, `at the abort, not when the source ends (${Date.now() - started} ms)`);
      if (!sftp) t.equal((await c.exec('ls stalled.bin* 2>&1 || true', { trace: false })).output.includes('No such file'), true, 'no file left, not even the part');
    });
  }
});

t.test('an upload aborted while its directory is made (before the source is piped) fails with the abort, nothing uncaught', async (t) => {
  const c = await rootClient();
  const dir = t.testdir();
  const source = new Readable({ read() { this.push(null); } });
  const ac = new AbortController();
  const upload = c.upload(source, join(dir, 'never.bin'), 0o644, ac.signal);
  ac.abort(); // the mkdir is on its way to the machine
  await t.rejects(upload, { name: 'AbortError' });
  t.notOk(existsSync(join(dir, 'never.bin')), 'nothing written');
});

t.test('connect retries, then fails with a clear error', async (t) => {
  const port = await freePort();
  const started = Date.now();
  await t.rejects(
    SshClient.connect({ host: '127.0.0.1', port, privateKey: 'x' }, { timeout: 1000, retries: 2, retryDelay: 100 }),
    { code: 'FC_ERR_UPSTREAM', message: new RegExp(`cannot connect to 127.0.0.1:${port}`) },
  );
  t.ok(Date.now() - started >= 200, 'waited between attempts');
});

t.test('a machine that freezes: the kill timeout still ends the call', async (t) => {
  // Every process serving the connections is stopped (SIGSTOP), as on a machine that froze
  // or vanished without closing its TCP connection: nothing answers the channel's close.
  const dir = t.testdir();
  const sshd = await startSshd(t, dir);
  const frozen: number[] = [];
  t.teardown(() => {
    for (const p of frozen) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  const freeze = (): void => {
    for (const p of descendantsOf(sshd.pid)) {
      try {
        process.kill(p, 'SIGSTOP');
        frozen.push(p);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // ended since it was listed
      }
    }
  };
  const target = { host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key };

  // The grace is shortened from KILL_GRACE_MS: what is checked is that it ends the call.
  const killGrace = 1000;
  const mid = await SshClient.connect(target, { timeout: 5000, killGrace });
  t.teardown(() => mid.close());
  const chunks: string[] = [];
  let started = Date.now();
  // Time enough for the channel to open and the script to start on a loaded machine (the
  // kill timeout counts from the call).
  const killTimeout = 3000;
  let r = await mid.exec('echo started; sleep 47', { trace: false, killTimeout, onOutput: (s) => {
    chunks.push(s);
    freeze();
  } });
  let took = Date.now() - started;
  t.same(chunks, ['started\n'], 'the script ran until the machine froze');
  t.ok(r.killed && r.exitCode === 137, 'reported as killed');
  t.ok(took >= killTimeout + killGrace && took < killTimeout + killGrace + 4000, `ended after the kill timeout and the grace (${took} ms)`);

  const before = await SshClient.connect(target, { timeout: 5000 });
  t.teardown(() => before.close());
  freeze();
  started = Date.now();
  r = await before.exec('echo never', { trace: false, killTimeout: 1000 });
  took = Date.now() - started;
  t.ok(r.killed && r.output === '', 'frozen before the channel opened: killed, no output');
  t.ok(took >= 1000 && took < 4000, `ended at the kill timeout (${took} ms)`);
});

t.test('a server that accepts but never answers: one clear error per attempt, nothing uncaught', async (t) => {
  // As an sshd too busy to send its banner: the handshake times out, and then the client
  // also reports "Connection lost before handshake", which used to be thrown as an uncaught
  // exception (once seen in the reboot test, where an attempt may have little time left).
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const { port } = server.address() as AddressInfo;
  await t.rejects(SshClient.connect({ host: '127.0.0.1', port, password: 'x' }, { timeout: 300, retries: 1, retryDelay: 50 }), {
    code: 'FC_ERR_UPSTREAM',
    message: `cannot connect to 127.0.0.1:${port}: Timed out while waiting for handshake`,
  });
  // A second error comes on a later turn: give it time to surface.
  await new Promise((r) => setTimeout(r, 200));
});

t.test('a server that closes the connection mid-handshake: a clear error, no hang', async (t) => {
  // An sshd killed after its banner (a reboot that starts during a connection attempt):
  // ssh2 reports no error then, and stops its ready timeout; the attempt used to hang.
  const server = createServer((socket) => {
    socket.resume(); // what the client says is read, so that the close is a clean one (FIN)
    socket.write('SSH-2.0-OpenSSH_9.2p1\r\n');
    setTimeout(() => socket.end(), 50);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;
  const started = Date.now();
  await t.rejects(SshClient.connect({ host: '127.0.0.1', port, password: 'x' }, { timeout: 5000 }), {
    code: 'FC_ERR_UPSTREAM',
    message: `cannot connect to 127.0.0.1:${port}: the server closed the connection during the handshake`,
  });
  t.ok(Date.now() - started < 2000, 'at once, not at the ready timeout');
});

t.test('a machine whose stderr never sends the PID line: its bytes are passed on as they come, not kept in memory until the channel closes and then dropped', async (t) => {
  const dir = t.testdir();
  const size = 300_000 + Math.floor(Math.random() * 1000);
  // every command runs this instead (a hostile or broken machine): stderr with no line break, then stdout
  const sshd = await startSshd(t, dir, { config: [`ForceCommand printf '%0${size}d' 0 | tr 0 x >&2; sleep 1; echo done`] });
  const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key }, { timeout: 5000 });
  t.teardown(() => c.close());
  const r = await c.exec('true', { trace: false, killTimeout: 30_000 });
  t.equal(r.exitCode, 0);
  // compared as booleans and lengths: tap's diff of two 300 kB strings takes minutes
  t.equal(r.output.length, size + 'done\n'.length, 'every byte');
  t.ok(r.output === `${'x'.repeat(size)}done\n`, 'in order: the first line was passed on as it came, before what came after it');
});

t.test("a quick command's exit status in the same read as its channel's confirmation is not lost", async (t) => {
  const dir = t.testdir();
  const sshd = await sharedSshd();
  // Between client and sshd: once connected, what the server sends is held and passed on in
  // one write every 300 ms, so that `true`'s whole answer (channel confirmed, exit status,
  // close) arrives in one read, as it may from a busy or distant host. The handshake's many
  // round trips pass at once (held, they would take seconds).
  const sockets = new Set<Socket>();
  let holding = false;
  const proxy = createServer((client) => {
    const server = createConnection({ host: sshd.host, port: sshd.port });
    sockets.add(client).add(server);
    let held: Buffer[] = [];
    const flush = setInterval(() => {
      if (held.length > 0) client.write(Buffer.concat(held));
      held = [];
    }, 300);
    server.on('data', (chunk: Buffer) => (holding ? held.push(chunk) : client.write(chunk)));
    client.on('data', (chunk: Buffer) => server.write(chunk));
    const end = (): void => {
      clearInterval(flush);
      client.destroy();
      server.destroy();
    };
    for (const s of [client, server]) s.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    proxy.close();
  });
  const c = await SshClient.connect({ host: '127.0.0.1', port: (proxy.address() as AddressInfo).port, username: 'root', privateKey: sshd.key }, { timeout: 10_000 });
  t.teardown(() => c.close());
  holding = true;
  t.same(await Promise.all([c.command('true'), c.command('exit 3'), c.command(`mkdir -p ${join(dir, 'made')}`)]), [0, 3, 0]);
});

t.test('a connection that drops mid-script: the machine stops every process of the script, one that left its process group too', async (t) => {
  const dir = t.testdir();
  const sshd = await startSshd(t, dir);
  const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key }, { timeout: 5000 });
  t.teardown(() => c.close());
  const file = join(dir, 'pids');
  let out = '';
  const lost = c.exec(`${leavingScript(file)}; echo started; wait`, { trace: false, onOutput: (s) => (out += s) });
  await eventually('the script started both sleeps', () => out.includes('started'), 20_000);
  const left = leftPids(t, file);
  t.equal(left.length, 2);
  t.ok(left.every(isAlive), 'both sleeps run');
  // the sshd processes serving the connection (not the listener, not the script's): as a connection cut
  const serving = descendantsOf(sshd.pid).filter(isSshd);
  // none found: nothing would be cut, and the test would wait for tap's timeout
  if (serving.length === 0) throw new Error(`no process of sshd ${sshd.pid} serves the connection (by the names isSshdName knows)`);
  for (const p of serving) process.kill(p, 'SIGKILL');
  await t.rejects(lost, { name: 'ScriptLostError' });
  await eventually('the sleeps are stopped', () => !left.some(isAlive), 5000);
  t.equal(c.lostScripts().length, 1, 'the script is on the client\'s list of lost ones');
});

t.test("sshd's processes are told by their names before OpenSSH 9.8 and from it", async (t) => {
  // this host's OpenSSH names a connection's processes `sshd`; 9.8 and later `sshd-session`, 10.0 `sshd-auth` too
  for (const name of ['sshd', 'sshd-session', 'sshd-auth']) t.ok(isSshdName(name), name);
  for (const name of ['sleep', 'ssh', 'sshd-', 'bash']) t.notOk(isSshdName(name), name);
});

let sharedRoot: Promise<SshClient> | undefined;
/** A client connected as root to the shared sshd, for the sweeps' tests (each kills only what its own scripts and jobs left): closed at the end of the file. */
function rootClient(): Promise<SshClient> {
  sharedRoot ??= sharedSshd().then(async (sshd) => {
    const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key }, { timeout: 5000 });
    t.teardown(() => c.close());
    return c;
  });
  return sharedRoot;
}

/** A directory whose `grep` lacks -z (as BusyBox's may): put first on PATH, a sweep falls back to reading /proc with bash. */
async function grepWithoutZ(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'grep'), '#!/bin/sh\nfor a; do [ "$a" = -z ] && { echo "grep: unknown option -- z" >&2; exit 2; }; done\nexec /usr/bin/grep "$@"\n', { mode: 0o755 });
  return dir;
}

t.test("a job's sweep kills every process of the job, and no process of a job whose token begins with its one; with grep and where grep lacks -z (bash)", async (t) => {
  const dir = t.testdir();
  const c = await rootClient();
  const fallback = await grepWithoutZ(join(dir, 'no-z'));
  for (const [name, path] of [['grep', ''], ['bash', `PATH=${fallback}:$PATH\n`]] as const) {
    await t.test(name, async (t) => {
      const [mine, other] = [join(dir, `${name}-mine`), join(dir, `${name}-other`)];
      t.equal((await c.exec(leavingScript(mine), { trace: false, job: 'job-1' })).exitCode, 0);
      t.equal((await c.exec(leavingScript(other), { trace: false, job: 'job-10' })).exitCode, 0);
      const [left, othersLeft] = [leftPids(t, mine), leftPids(t, other)];
      const swept = await c.exec(`${path}${sweepJob('job-1')}echo swept`, { trace: false, cwd: '/' });
      t.same([swept.exitCode, swept.output], [0, 'swept\n']);
      await eventually("the job's sleeps are stopped", () => !left.some(isAlive), 5000);
      t.ok(othersLeft.every(isAlive), "the other job's sleeps run on");
    });
  }
});

t.test("a job's sweep under the scripts' set -eu on a bash without $BASHPID (3.2, macOS's) ends well: nothing to sweep is no failure", async (t) => {
  const dir = t.testdir();
  const c = await rootClient();
  const file = join(dir, 'pids');
  t.equal((await c.exec(leavingScript(file), { trace: false, job: 'job-b' })).exitCode, 0);
  const left = leftPids(t, file);
  // unset, $BASHPID is unbound as in bash 3.2; the sweep runs as every script, under set -eu
  const swept = await c.exec(`unset BASHPID\n${sweepJob('job-b')}echo swept`, { trace: false, cwd: '/' });
  t.same([swept.exitCode, swept.output], [0, 'swept\n']);
  await eventually("the job's sleeps are stopped", () => !left.some(isAlive), 5000);
});

t.test("the sweeping shell is spared though it carries the token it sweeps (a script's watcher)", async (t) => {
  const dir = t.testdir();
  const c = await rootClient();
  const file = join(dir, 'pids');
  const sweep = `${leavingScript(file)}; ${sweepScripts(['token-1'])}echo swept`;
  let out = '';
  t.equal(await c.command(`env FLEETCACHE_SCRIPT=token-1 bash -c ${shellQuote(sweep)} 2>/dev/null`, undefined, (s) => (out += s)), 0);
  t.equal(out, 'swept\n', 'the shell ran on after its sweep');
  const left = leftPids(t, file);
  await eventually('the sleeps it started are stopped', () => !left.some(isAlive), 5000);
});

t.test("a job's sweep reads every process's /proc environ through grep -z, not variable by variable in bash (1.5-2.5 s at 2,000 processes)", async (t) => {
  const dir = t.testdir();
  const c = await rootClient();
  // a grep first on PATH that notes how many environ files each call is given, then runs grep
  const bin = join(dir, 'counting-grep');
  const log = join(dir, 'grep.log');
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'grep'), `#!/bin/sh\nn=0\nfor a; do case "$a" in /proc/*/environ) n=$((n + 1));; esac; done\necho $n >> ${log}\nexec /usr/bin/grep "$@"\n`, { mode: 0o755 });
  const processes = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).length;
  t.equal((await c.exec(`PATH=${bin}:$PATH\n${sweepJob('job-1')}`, { trace: false, cwd: '/' })).exitCode, 0);
  const given = (await readFile(log, 'utf8')).trim().split('\n').map(Number);
  // two passes over every process (a few may end between the count and the sweep)
  t.ok(given.reduce((a, b) => a + b, 0) >= processes, `grep read the environ files of every process (${given.join(' + ')} files, ${processes} processes)`);
});
