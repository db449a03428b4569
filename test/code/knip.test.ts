// The project keeps no dead code: knip (knip.jsonc) finds no unused file, export, type or
// dependency in src/, test/, bench/ and scripts/. A test, not a step of .ci/run, so that a
// finding counts as one failed test in CI's "N passed, N failed" line.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { REPO_ROOT } from '../helpers/processes.js';

const KNIP = fileURLToPath(new URL('../bin/knip.js', import.meta.resolve('knip')));
/** About 6 s of CPU when alone; 15 s on a shared 2-core machine at load 7. */
const KNIP_TIMEOUT_MS = 60_000;

t.test('knip finds no unused files, exports, types or dependencies', async (t) => {
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    // execFile kills knip once the timeout passes.
    execFile(process.execPath, [KNIP, '--no-progress'], { cwd: REPO_ROOT, timeout: KNIP_TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const killed = err?.killed ? `knip killed after ${KNIP_TIMEOUT_MS / 1000} s (a machine too loaded?), its output so far:\n` : '';
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, output: `${killed}${stdout}${stderr}` });
    });
  });
  t.equal(code, 0, `npm run knip reports nothing:\n${output}`);
});
