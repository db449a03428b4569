// Test helper: a real OpenSSH sshd on a loopback port with its own host key, config
// and authorized client key, stopped by its PID in teardown (and the PID in its PidFile,
// for tests that restart it).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../../src/http/free-port.js';
import { waitForPort } from '../../src/ssh/client.js';
import { undoAtExit } from '../helpers/processes.js';

/** sshd cannot listen on port 0: a free port is chosen first (see freePort). */
export { freePort };

export interface Sshd {
  host: '127.0.0.1';
  port: number;
  pid: number;
  /** Path and text of the client private key sshd accepts for root. */
  keyPath: string;
  key: string;
  /** Its host's public key file (`ssh-ed25519 BASE64 comment`), for known_hosts files. */
  hostKeyFile: string;
  /** The public key files of every host key it has, by type (`ed25519`, and those of `hostKeyTypes`). */
  hostKeyFiles: Map<string, string>;
  /** Its sshd_config and PidFile: a restarted sshd (`sshd -f config`) is stopped too. */
  config: string;
  pidFile: string;
  /** Its log, at VERBOSE level (with `log: true`; undefined: no log is kept). */
  logFile: string | undefined;
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/**
 * Starts sshd with its files under `<base>/sshd` (pass the test's one t.testdir(): a second call wipes it); `sftp: false`: no SFTP subsystem;
 * `hostKeyTypes`: host keys it has beside its ed25519 one (e.g. `rsa`); `log`: a log of every session it starts (commandSessions);
 * `config`: sshd_config lines of the test's own (e.g. a `ForceCommand` standing for a machine that misbehaves).
 */
export async function startSshd(t: Teardown, base: string, options: { sftp?: boolean; hostKeyTypes?: string[]; log?: boolean; config?: string[] } = {}): Promise<Sshd> {
  const dir = resolve(base, 'sshd');
  mkdirSync(dir, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
  const hostKeys = new Map([['ed25519', join(dir, 'host_key')], ...(options.hostKeyTypes ?? []).map((type): [string, string] => [type, join(dir, `host_key_${type}`)])]);
  for (const [type, file] of hostKeys) execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', file]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')]);
  copyFileSync(join(dir, 'client_key.pub'), join(dir, 'authorized_keys'));
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  const logFile = options.log ? join(dir, 'sshd.log') : undefined;
  // Outside the testdir: tap removes that before teardowns run, which read this file.
  const pidFile = join(tmpdir(), `fleetcache-test-sshd-${process.pid}-${port}.pid`);
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      ...[...hostKeys.values()].map((file) => `HostKey "${file}"`),
      `PidFile "${pidFile}"`,
      `AuthorizedKeysFile "${join(dir, 'authorized_keys')}"`,
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      // without it, as on hosts hardened so: files go through a shell (src/ssh/client.ts)
      ...(options.sftp === false ? [] : ['Subsystem sftp internal-sftp']),
      // bash sources ~/.bashrc for a command run by sshd (Debian builds it so) unless it is a
      // nested shell: root's here runs `pyenv init`, 0.4 s per command, every script of every
      // test. A machine's own start-up files are not what these tests test.
      'SetEnv SHLVL=1',
      'MaxSessions 50',
      'MaxStartups 50',
      // VERBOSE: a line for each session, which commandSessions counts
      `LogLevel ${logFile ? 'VERBOSE' : 'ERROR'}`,
      ...(options.config ?? []),
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/sshd', ['-D', '-f', config, ...(logFile ? ['-E', logFile] : ['-e'])], { stdio: 'ignore' });
  const pid = child.pid!;
  const stop = () => {
    let restarted: number | undefined;
    try {
      restarted = Number(readFileSync(pidFile, 'utf8').trim()) || undefined;
    } catch {
      // not written
    }
    // Only an sshd that is still there: one a reboot script killed left its PID in the pid
    // file, and by now the kernel may have given that PID to another test's process.
    const running = (p: number | undefined): p is number =>
      p === pid ? child.exitCode === null && child.signalCode === null : p !== undefined && isSshd(p);
    for (const p of new Set([pid, restarted])) {
      try {
        if (running(p)) process.kill(p, 'SIGTERM');
      } catch {
        // already stopped
      }
    }
    rmSync(pidFile, { force: true });
  };
  // A test file that times out runs no teardown: the sshd (or the one a reboot restarted) is stopped at exit.
  const forget = undoAtExit(stop);
  t.teardown(() => {
    stop();
    forget();
  });
  await waitForPort('127.0.0.1', port, 10_000);
  return { host: '127.0.0.1', port, pid, keyPath: join(dir, 'client_key'), key: readFileSync(join(dir, 'client_key'), 'utf8'), hostKeyFile: join(dir, 'host_key.pub'), hostKeyFiles: new Map([...hostKeys].map(([type, file]) => [type, `${file}.pub`])), config, pidFile, logFile };
}

/** How many commands (exec sessions: not SFTP, not shells) the sshd started with `log: true` ran so far. */
export function commandSessions(sshd: Sshd): number {
  if (!sshd.logFile) throw new Error('commandSessions: the sshd was started without log: true');
  const log = existsSync(sshd.logFile) ? readFileSync(sshd.logFile, 'utf8') : '';
  // OpenSSH's session.c: verbose("Starting session: %s%s%s for %s from ...", "command", ...)
  return log.split('\n').filter((line) => line.includes('Starting session: command ')).length;
}

/** `ssh-keygen -lf FILE`'s fingerprint of a public key file (`SHA256:...`, its second field). */
export function keygenFingerprint(file: string): string {
  return execFileSync('ssh-keygen', ['-lf', file], { encoding: 'utf8' }).split(' ')[1]!;
}

/** A public key file's `type base64`, without its comment: a known_hosts line's key. */
export function publicKeyOf(file: string): string {
  return readFileSync(file, 'utf8').split(' ').slice(0, 2).join(' ');
}

/**
 * Whether a process name (/proc/PID/comm) is one of sshd's: the listener is `sshd`; a
 * connection's processes are `sshd` too before OpenSSH 9.8, `sshd-session` from it (and
 * `sshd-auth` from 10.0).
 */
export function isSshdName(comm: string): boolean {
  return comm === 'sshd' || comm === 'sshd-session' || comm === 'sshd-auth';
}

/** Whether process `p` runs sshd, its listener or a connection's (not a PID reused since the sshd it named ended). */
export function isSshd(p: number): boolean {
  try {
    return isSshdName(readFileSync(`/proc/${p}/comm`, 'utf8').trim());
  } catch {
    return false; // gone
  }
}

/**
 * For reboot tests: writes `<dir>/reboot.sh`, which does to this sshd what a reboot does to
 * a machine's: every connection drops, nothing answers for `down` seconds, then a new sshd
 * answers and `<dir>/boot_id` holds a new identity (with 'forever', nothing comes back). The sshd shares this host's kernel, so
 * /proc/sys/kernel/random/boot_id cannot change: the returned commands are what a backend's
 * `reboot-command` and `boot-id-command` are set to instead.
 */
export function writeRebootScript(sshd: Sshd, dir: string, down: number | 'forever' = 2): { rebootCommand: string; bootIdCommand: string } {
  const bootId = join(dir, 'boot_id');
  const script = join(dir, 'reboot.sh');
  writeFileSync(bootId, `${randomUUID()}\n`);
  writeFileSync(
    script,
    [
      'set -u',
      `old=$(cat '${sshd.pidFile}')`,
      '# not a PID reused since that sshd ended (another test\'s process): nothing to kill then',
      '[ "$(cat "/proc/$old/comm" 2>/dev/null)" = sshd ] || old=',
      '# the connections (children of the listener), then the listener itself',
      'if [ -n "$old" ]; then pkill -KILL -P "$old" || true; kill -KILL "$old"; fi',
      ...(down === 'forever' ? [] : [`sleep ${down}`, `cat /proc/sys/kernel/random/uuid > '${bootId}'`, `exec /usr/sbin/sshd -f '${sshd.config}'`]),
      '',
    ].join('\n'),
  );
  return { rebootCommand: `/bin/bash '${script}'`, bootIdCommand: `cat '${bootId}'` };
}
