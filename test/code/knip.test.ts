// The project keeps no dead code: knip (knip.jsonc) finds no unused file, export, type or
// dependency in src/, test/, bench/ and scripts/. A test, not a step of .ci/run, so that a
// finding counts as one failed test in CI's "N passed, N failed" line.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { REPO_ROOT } from '../helpers/processes.js';

const KNIP = fileURLToPath(new URL('../bin/knip.js', import.meta.resolve('knip')));

t.test('knip finds no unused files, exports, types or dependencies', async (t) => {
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    // execFile kills knip once the timeout passes (about 6 s of CPU when alone).
    execFile(process.execPath, [KNIP, '--no-progress'], { cwd: REPO_ROOT, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, output: `${stdout}${stderr}` });
    });
  });
  t.equal(code, 0, `npm run knip reports nothing:\n${output}`);
});
