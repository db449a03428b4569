// Temporary files and working directories (atomic-file.ts, temp-dir.ts) across a runner's
// Ctrl-C (run/interrupt.ts): the first one stops the run but not the process, so what is
// being written (the run's report, a base copied into the base cache) still lands; the
// second exits at once (process.exit, no finally runs) and leaves none of them behind.
import t, { type Test } from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { treeModule } from '../helpers/processes.js';
import { startScript } from '../helpers/script-child.js';
import { eventually } from '../helpers/wait.js';

interface Writer {
  /** Script lines that write `content` to `final` (in `dir`) through a temporary file or directory in `dir`, awaiting `pause` (an expression) once it is written. */
  readonly write: (dir: string, final: string, pause: string) => string;
}

const WRITERS: Record<'writeAtomically' | 'withTempDir', Writer> = {
  writeAtomically: {
    write: (_dir, final, pause) => `
      const { writeAtomically } = await import('${treeModule('src/project-upload/atomic-file')}');
      await writeAtomically(${JSON.stringify(final)}, async (tmp) => {
        writeFileSync(tmp, content);
        await ${pause};
      });`,
  },
  withTempDir: {
    write: (dir, final, pause) => `
      process.env.TMPDIR = ${JSON.stringify(dir)};
      const { withTempDir } = await import('${treeModule('src/project-upload/temp-dir')}');
      await withTempDir('fleetcache-push-', async (work) => {
        writeFileSync(join(work, 'base.tar'), content);
        await ${pause};
        copyFileSync(join(work, 'base.tar'), ${JSON.stringify(final)});
      });`,
  },
};

const CONTENT = 'the whole report\n';

/** A runner (its own Ctrl-C handling) writing with `writer` into `dir`, paused once written at `pause`; its temporary file or directory is there. */
async function runnerWriting(t: Test, writer: Writer, dir: string, final: string, pause: string) {
  const running = await startScript(t, `
    import { copyFileSync, writeFileSync } from 'node:fs';
    import { join } from 'node:path';
    import { RunInterrupt } from '${treeModule('src/run/interrupt')}';
    const interrupt = RunInterrupt.install({ line: (text) => process.stderr.write(text + '\\n'), release: () => {} }, 'fleetcache run --discard');
    const content = ${JSON.stringify(CONTENT)};
    const alive = setInterval(() => {}, 1000); // a signal listener alone keeps no process waiting
    const stopped = new Promise((resolve) => interrupt.signal.addEventListener('abort', resolve));
    const written = () => process.stdout.write('written\\n');
    ${writer.write(dir, final, `(written(), ${pause})`)}
    clearInterval(alive);
    interrupt.dispose();
  `);
  t.equal(readdirSync(dir).length, 1, 'its temporary file or directory is there');
  process.kill(running.child.pid!, 'SIGINT');
  await eventually('the runner took the first Ctrl-C', () => running.stderr().includes('Received SIGINT, stopping'), 10_000);
  return running;
}

for (const [name, writer] of Object.entries(WRITERS)) {
  t.test(`${name}: a runner's first Ctrl-C leaves the write in progress to finish, and it lands`, async (t) => {
    const dir = t.testdir();
    const { exited, stderr } = await runnerWriting(t, writer, dir, join(dir, 'landed'), 'stopped');
    t.equal(await exited, 0, `the write finished (${stderr().trim()})`);
    t.same(readdirSync(dir), ['landed'], 'its file landed, and no temporary file or directory is left');
    t.equal(readFileSync(join(dir, 'landed'), 'utf8'), CONTENT, 'whole');
  });

  t.test(`${name}: a runner's second Ctrl-C, which exits at once, leaves no temporary file or directory of a write in progress`, async (t) => {
    const dir = t.testdir();
    const { child, exited, stderr } = await runnerWriting(t, writer, dir, join(dir, 'never'), 'new Promise(() => {})');
    t.equal(readdirSync(dir).length, 1, 'the first Ctrl-C left it to the write');
    process.kill(child.pid!, 'SIGINT');
    t.equal(await exited, 128 + constants.signals.SIGINT, `it exits at the second (${stderr().trim()})`);
    t.same(readdirSync(dir), [], 'nothing is left');
  });
}
