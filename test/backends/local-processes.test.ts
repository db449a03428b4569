// Ending the processes of many local machines at once (a run's end discards them together):
// they share one scan of /proc, read with a bounded number of descriptors, and a scan that
// cannot read a process fails rather than report it gone.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { REPO_ROOT, SOURCE_LOADER, treeModule } from '../helpers/processes.js';

t.test('40 machines ended at once under a limit of 256 descriptors: none of their processes survives', async (t) => {
  const script = fileURLToPath(treeModule('test/backends/fixtures/end-many'));
  const res = spawnSync('bash', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, ...SOURCE_LOADER, script], { encoding: 'utf8', timeout: 60_000, cwd: REPO_ROOT });
  t.equal(res.status, 0, res.stderr);
  const out = JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as { survivors: number; failed: string[] };
  t.same(out.failed, [], 'no discard failed');
  t.equal(out.survivors, 0, 'no process survived');
});
