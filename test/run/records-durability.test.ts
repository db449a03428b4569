// A runner's list of its machines (<data>/running/) and a project's reuse file outlive a
// power loss of the runner's host: their content is flushed before the rename that gives it
// the file's name (else the file may come back empty, its machines left running unlisted),
// and their directory is synced after the rename and after a removal. Checked by the
// system calls themselves (strace).
import path from 'node:path';
import t from 'tap';
import { REUSE_FILE, RUNNING_DIR } from '../../src/run/reuse.js';
import { treeModule } from '../helpers/processes.js';
import { straced } from '../helpers/strace.js';

const machine = { backend: 'local', system: 'alpha-1', address: 'local:alpha-1' };

t.test('the running list and the reuse file: flushed before their rename, their directory synced after it and after a removal', async (t) => {
  const scratch = t.testdir();
  const data = path.join(scratch, 'data');
  const project = path.join(scratch, 'project');
  const lines = straced(`
    import { ReusePool, RunningMachines } from '${treeModule('src/run/reuse')}';
    const machine = ${JSON.stringify(machine)};
    const running = new RunningMachines(${JSON.stringify(data)});
    await running.add(machine);
    await running.remove(machine);
    const pool = await ReusePool.load(${JSON.stringify(project)});
    pool.keep(machine);
    await pool.save();
  `, path.join(scratch, 'strace.txt'), ['-e', 'trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat']).split('\n');
  const runningDir = path.join(data, RUNNING_DIR);
  const runningFile = new RegExp(`"(${runningDir}/\\d+(?:-\\d+)?\\.json)"`).exec(lines.join('\n'))?.[1];
  t.ok(runningFile, 'the runner wrote its list');
  /** The first line at or after `from` that is a call of `call` naming `quoted` ("path", or <path> for a descriptor's). */
  const find = (call: RegExp, quoted: string, from = 0): number => lines.findIndex((l, i) => i >= from && call.test(l) && l.includes(quoted));
  const RENAME = /\brename(at2?)?\(/;
  const SYNC = /\bf(data)?sync\(\d+</;
  for (const [what, file] of [['running list', runningFile!], ['reuse file', path.join(project, REUSE_FILE)]] as const) {
    const renamed = find(RENAME, `"${file}"`);
    t.ok(renamed >= 0, `${what}: renamed into place`);
    const flushed = find(SYNC, `<${file}.tmp>`);
    t.ok(flushed >= 0 && flushed < renamed, `${what}: its temp file is flushed before the rename`);
    t.ok(find(SYNC, `<${path.dirname(file)}>`, renamed) > renamed, `${what}: its directory is synced after the rename`);
  }
  const removed = find(/\bunlink(at)?\(/, `"${runningFile}"`);
  t.ok(removed >= 0, 'the running list is removed once its machine is gone');
  t.ok(find(SYNC, `<${runningDir}>`, removed) > removed, 'its directory is synced after the removal');
});
