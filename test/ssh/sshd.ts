// Test helper: a real OpenSSH sshd on a loopback port with its own host key, config
// and authorized client key, stopped by its PID in teardown.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { waitForPort } from '../../src/ssh/client.js';

export interface Sshd {
  host: '127.0.0.1';
  port: number;
  pid: number;
  /** Path and text of the client private key sshd accepts for root. */
  keyPath: string;
  key: string;
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** A free loopback port: sshd cannot listen on port 0, so bind one, close it, pass it on. */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => done(port));
    });
  });
}

/** Starts sshd with its files under `<base>/sshd` (pass the test's one t.testdir(): a second call wipes it). */
export async function startSshd(t: Teardown, base: string): Promise<Sshd> {
  const dir = resolve(base, 'sshd');
  mkdirSync(dir, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')]);
  copyFileSync(join(dir, 'client_key.pub'), join(dir, 'authorized_keys'));
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey "${join(dir, 'host_key')}"`,
      `PidFile "${join(dir, 'sshd.pid')}"`,
      `AuthorizedKeysFile "${join(dir, 'authorized_keys')}"`,
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'Subsystem sftp internal-sftp',
      'MaxSessions 50',
      'MaxStartups 50',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/sshd', ['-D', '-f', config, '-e'], { stdio: 'ignore' });
  const pid = child.pid!;
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already stopped
    }
  });
  await waitForPort('127.0.0.1', port, 10_000);
  return { host: '127.0.0.1', port, pid, keyPath: join(dir, 'client_key'), key: readFileSync(join(dir, 'client_key'), 'utf8') };
}
