// Working directories of pushes and pulls killed outright (SIGKILL, OOM: no cleanup runs)
// are removed by the next push or pull: those whose process is gone and that nothing
// touched for an hour; a live process's, or a recent one's, are left alone.
import { mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { isAlive } from '../../src/pid-alive.js';
import { withTempDir } from '../../src/project-upload/temp-dir.js';

t.test('abandoned working directories are removed, others kept', async (t) => {
  const tmp = t.testdir();
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  t.teardown(() => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
  });
  let gone = 4_000_000;
  while (isAlive(gone)) gone--;
  const hoursAgo = new Date(Date.now() - 2 * 3600_000);
  const make = (name: string, old: boolean) => {
    mkdirSync(join(tmp, name));
    writeFileSync(join(tmp, name, 'base.tar'), 'x');
    if (old) utimesSync(join(tmp, name), hoursAgo, hoursAgo);
  };
  make(`fleetcache-pull-${gone}-abc123`, true); // killed outright two hours ago
  make(`fleetcache-pull-${gone}-def456`, false); // its process gone, but touched just now
  make(`fleetcache-pull-${process.pid}-ghi789`, true); // a live process's
  make(`fleetcache-push-${gone}-jkl012`, true); // another kind: its own command sweeps it
  make('fleetcache-pull-notapid', true);
  let inside = '';
  await withTempDir('fleetcache-pull-', async (dir) => {
    inside = dir;
  });
  t.match(inside, new RegExp(`fleetcache-pull-${process.pid}-`), 'its own directory names its PID');
  t.same(readdirSync(tmp).sort(), [`fleetcache-pull-${gone}-def456`, `fleetcache-pull-${process.pid}-ghi789`, 'fleetcache-pull-notapid', `fleetcache-push-${gone}-jkl012`].sort());
});
