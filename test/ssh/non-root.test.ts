// A system whose `username` is not root (spread's `username: ubuntu`): commands run through
// `sudo -i`, as spread runs them, and files are written as root too (spread sends its
// project through `sudo -i tar x`), so that a directory made for them by root can be
// written: the agent lands under the project's path, which only root may write. A user of
// this test's own, allowed sudo without a password, logs in to a real sshd; the user and
// its sudoers file are removed afterwards.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { SshClient } from '../../src/ssh/client.js';
import { startSshd } from './sshd.js';
import { sudoUser, sudoUserMissing } from '../helpers/sudo-user.js';

const skip = sudoUserMissing();
for (const sftp of [true, false]) {
  t.test(`a user that is not root writes files where only root may (${sftp ? 'SFTP' : 'no SFTP: through a shell'})`, { skip }, async (t) => {
    const user = sudoUser(t);
    // sshd reads the authorized keys as the user: in a directory it may enter.
    const dir = mkdtempSync(join(tmpdir(), 'fleetcache-non-root-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755);
    const sshd = await startSshd(t, dir, { sftp });
    chmodSync(join(dir, 'sshd'), 0o755);
    chmodSync(join(dir, 'sshd', 'authorized_keys'), 0o644);
    // made by root, as a run's project path is; a name sudo -i would expand ($) or split
    const base = join(dir, `project $HOME 'q'`);
    mkdirSync(base);
    const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: user, privateKey: sshd.key }, { timeout: 5000 }, base);
    t.teardown(() => c.close());
    t.equal((await c.exec('id -un', { trace: false })).output, 'root\n', 'commands run as root (sudo -i)');
    await c.upload(Readable.from([Buffer.from('agent code')]), '.fleetcache/agent.mjs', 0o644);
    const r = await c.exec('cat .fleetcache/agent.mjs; echo; stat -c "%a %U" .fleetcache/agent.mjs; ls .fleetcache', { trace: false });
    t.equal(r.output, 'agent code\n644 root\nagent.mjs\n', 'the bytes, the mode, owned by root, no part file left');
  });
}
