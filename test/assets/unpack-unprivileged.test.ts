// `fleetcache assets fetch` unpacking as an unprivileged user, as on most machines: root
// writes, chmods and removes whatever the modes say, so the other unpack tests, run as root
// in CI, cannot tell whether a member's mode (0200, 0111, a 0555 directory) or a directory
// of another user's stops the unpack, or the next fetch's removal of the earlier unpack.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { nobody } from '../helpers/nobody.js';
import { cliArgs } from '../helpers/processes.js';
import { formatManifest } from '../../src/assets/manifest.js';
import { makeTar, sha512, type TarEntry } from './helpers.js';


const user = nobody();
t.test('unprivileged: members the owner cannot read, read-only directories and a directory of another user unpack, and unpack again', { skip: typeof user === 'string' ? user : false }, async (t) => {
  if (typeof user === 'string') return;
  // In the temp directory, not the test's own (which an unprivileged user may not reach).
  const work = mkdtempSync(path.join(tmpdir(), 'fleetcache-unpack-unprivileged-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  chmodSync(work, 0o755);
  const at = new Date('2020-02-02T02:02:02Z');
  const archives: Record<string, TarEntry[]> = {
    'modes.tar': [
      { name: 'modes/', type: 'directory', mode: 0o755, mtime: at },
      { name: 'modes/write-only', body: 'w', mode: 0o200, mtime: at },
      { name: 'modes/exec-only', body: 'x', mode: 0o111, mtime: at },
      { name: 'modes/ro/', type: 'directory', mode: 0o555, mtime: at },
      { name: 'modes/ro/data', body: 'r', mode: 0o444, mtime: at },
    ],
    // `shared/` is there already, root's (a directory several archives fill): its mode and time stay root's
    'fill-shared.tar': [
      { name: 'shared/', type: 'directory', mode: 0o700, mtime: at },
      { name: 'shared/tool', body: 't', mode: 0o755, mtime: at },
      { name: 'setgid/', type: 'directory', mode: 0o2755, mtime: at },
    ],
  };
  const records = [];
  for (const [name, entries] of Object.entries(archives)) {
    const tar = await makeTar(entries);
    writeFileSync(path.join(work, name), tar);
    records.push({ filename: name, size: tar.length, algorithm: 'sha512', digest: sha512(tar), unpack: true });
  }
  writeFileSync(path.join(work, 'manifest.tt'), formatManifest(records));
  mkdirSync(path.join(work, 'shared'));
  chmodSync(path.join(work, 'shared'), 0o777);
  chownSync(work, user.uid, user.gid);

  // Without tap's hooks (NODE_OPTIONS), which write where this user may not. The CLI as the
  // other tests run it: the build if current, else the source (never a stale dist/).
  const fetch = () => spawnSync(process.execPath, cliArgs(['assets', 'fetch', '-m', 'manifest.tt']), { cwd: work, uid: user.uid, gid: user.gid, env: { PATH: process.env.PATH, HOME: work }, encoding: 'utf8', timeout: 60_000 });
  for (const round of ['first fetch', 'second fetch (the earlier unpack removed first, as tooltool does)']) {
    const run = fetch();
    t.equal(run.status, 0, `${round}: ${run.stderr}`);
    const mode = (name: string): string => (statSync(path.join(work, name)).mode & 0o7777).toString(8);
    t.same(['modes/write-only', 'modes/exec-only', 'modes/ro', 'modes/ro/data'].map(mode), ['200', '111', '555', '444'], `${round}: the members' modes`);
    t.equal(statSync(path.join(work, 'modes/write-only')).mtime.toISOString(), at.toISOString(), `${round}: a write-only file got its time`);
    t.equal(statSync(path.join(work, 'modes/ro')).mtime.toISOString(), at.toISOString(), `${round}: a read-only directory got its time`);
    t.equal(mode('shared'), '777', `${round}: root's directory keeps its mode`);
    t.equal(statSync(path.join(work, 'shared/tool')).uid, user.uid, `${round}: and is filled`);
    t.equal(mode('setgid'), '755', `${round}: a setgid directory is unpacked, without the bit`);
  }
});
