// Host-key verification (the fleet's knownHosts) against a real sshd: the key it presents is
// checked against known_hosts files written as OpenSSH writes them, fingerprints as
// `ssh-keygen -lf` prints them.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SshClient } from '../../src/ssh/client.js';
import { hostKeyCheck, parseKnownHosts } from '../../src/ssh/known-hosts.js';
import { keygenFingerprint, publicKeyOf, startSshd } from './sshd.js';

t.test('knownHosts against a real sshd', async (t) => {
  const dir = t.testdir();
  const sshd = await startSshd(t, dir);
  const hostKey = publicKeyOf(sshd.hostKeyFile);
  const name = `[127.0.0.1]:${sshd.port}`;
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'other_key')]);
  const otherKey = publicKeyOf(join(dir, 'other_key.pub'));
  let files = 0;
  const knownHosts = (text: string): string => {
    const file = join(dir, `known_hosts.${++files}`);
    writeFileSync(file, text);
    return file;
  };
  const connect = async (file: string | undefined): Promise<number> => {
    const c = await SshClient.connect({ host: sshd.host, port: sshd.port, privateKey: sshd.key, ...(file ? { knownHosts: file } : {}) }, { timeout: 5000, retries: 2, retryDelay: 5000 });
    try {
      return await c.command('true');
    } finally {
      await c.close();
    }
  };

  t.test('unset: any host key is accepted, as spread does', async (t) => {
    t.equal(await connect(undefined), 0);
  });

  t.test('the host listed as [127.0.0.1]:PORT with its key connects', async (t) => {
    t.equal(await connect(knownHosts(`# comment\n\nother.example ${otherKey}\n${name},other.example ${hostKey} root@host\n`)), 0);
  });

  t.test('a hashed entry (ssh-keygen -H) connects', async (t) => {
    const file = knownHosts(`${name} ${hostKey}\n`);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', file], { stdio: 'ignore' });
    t.match(readFileSync(file, 'utf8'), /^\|1\|[^ ]+ ssh-ed25519 /, 'the file holds the hashed name only');
    t.notMatch(readFileSync(file, 'utf8'), /127\.0\.0\.1/);
    t.equal(await connect(file), 0);
  });

  t.test('a wildcard pattern names the host; a negated one takes it out', async (t) => {
    t.equal(await connect(knownHosts(`[127.0.0.*]:${sshd.port} ${hostKey}\n`)), 0);
    await t.rejects(connect(knownHosts(`[127.0.0.*]:${sshd.port},!${name} ${hostKey}\n`)), /does not list/);
  });

  t.test('a different key listed for the host is refused at once, naming the host and both fingerprints', async (t) => {
    const file = knownHosts(`${name} ${otherKey}\n`);
    const started = Date.now();
    const err = await connect(file).then(() => undefined, (e: Error) => e);
    t.ok(err, 'refused');
    t.match(err?.message, `cannot connect to 127.0.0.1:${sshd.port}: host key verification failed: host ${name} presented the ssh-ed25519 key ${keygenFingerprint(sshd.hostKeyFile)}`);
    t.match(err?.message, `lists ssh-ed25519 ${keygenFingerprint(join(dir, 'other_key.pub'))} (line 1)`);
    t.ok(Date.now() - started < 5000, 'not tried again: a refused key is the same on every attempt');
  });

  t.test('a host the file does not list is refused with its fingerprint', async (t) => {
    await t.rejects(connect(knownHosts(`other.example ${hostKey}\n127.0.0.1 ${hostKey}\n`)), {
      message: `cannot connect to 127.0.0.1:${sshd.port}: host key verification failed: host ${name} presented the ssh-ed25519 key ${keygenFingerprint(sshd.hostKeyFile)}, which ${join(dir, `known_hosts.${files}`)} does not list for ${name}; if that is the host's key, add it to ${join(dir, `known_hosts.${files}`)}`,
    });
  });

  t.test('a host that offers no key of the types listed for it is refused at once, saying so', async (t) => {
    execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-N', '', '-f', join(dir, 'rsa_key')]);
    const file = knownHosts(`${name} ${publicKeyOf(join(dir, 'rsa_key.pub'))}\n`);
    const started = Date.now();
    await t.rejects(connect(file), { message: `cannot connect to 127.0.0.1:${sshd.port}: host key verification failed: host ${name} offers no key of the types ${file} lists for it: ssh-rsa (line 1)` });
    t.ok(Date.now() - started < 5000, 'not tried again');
  });

  t.test('a key marked @revoked is refused even where it is listed too', async (t) => {
    const file = knownHosts(`${name} ${hostKey}\n@revoked ${name} ${hostKey}\n`);
    await t.rejects(connect(file), { message: `cannot connect to 127.0.0.1:${sshd.port}: host key verification failed: host ${name} presented the ssh-ed25519 key ${keygenFingerprint(sshd.hostKeyFile)}, which ${file}:2 marks @revoked` });
  });

  t.test('a host known only through @cert-authority is refused, saying it is not supported', async (t) => {
    await t.rejects(connect(knownHosts(`@cert-authority ${name} ${otherKey}\n`)), /@cert-authority line is not supported/);
  });
});

t.test('a host with several keys shows the one listed (an RSA key where ssh2 prefers ed25519)', async (t) => {
  const dir = t.testdir();
  const sshd = await startSshd(t, dir, { hostKeyTypes: ['rsa'] });
  const file = join(dir, 'known_hosts');
  writeFileSync(file, `[127.0.0.1]:${sshd.port} ${publicKeyOf(sshd.hostKeyFiles.get('rsa')!)}\n`);
  const c = await SshClient.connect({ host: sshd.host, port: sshd.port, privateKey: sshd.key, knownHosts: file }, { timeout: 5000 });
  t.teardown(() => c.close());
  t.equal(await c.command('true'), 0);
});

t.test('a host named in capitals matches its hashed entry, as OpenSSH looks names up in lower case', async (t) => {
  const dir = t.testdir();
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
  const file = join(dir, 'known_hosts');
  writeFileSync(file, `host.example ${publicKeyOf(join(dir, 'key.pub'))}\n`);
  execFileSync('ssh-keygen', ['-q', '-H', '-f', file], { stdio: 'ignore' });
  const blob = Buffer.from(publicKeyOf(join(dir, 'key.pub')).split(' ')[1]!, 'base64');
  t.equal(hostKeyCheck(file, 'Host.Example', 22).verify(blob), true);
});

t.test('a malformed known_hosts line is an error naming the file and line', async (t) => {
  t.throws(() => parseKnownHosts('host ssh-ed25519\n', 'kh'), { message: /^kh:1: expected "host-patterns key-type base64-key"/, line: 1 });
  t.throws(() => parseKnownHosts('# ok\nhost ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQC7\n', 'kh'), { message: /^kh:2: the key is not a base64 ssh-ed25519 key/, line: 2 });
  t.throws(() => parseKnownHosts('@revoke host ssh-ed25519 AAAA\n', 'kh'), { message: /^kh:1: unknown marker @revoke/ });
  t.equal(parseKnownHosts('# only comments\n\n', 'kh').length, 0);
});
