// A pull stopped by SIGTERM or SIGINT while the base downloads leaves nothing in TMPDIR.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { MANIFEST_FORMAT } from '../../src/project-upload/manifest.js';
import { cliArgs, stopWithTest } from '../helpers/processes.js';
import { STALLED_SIZE, stallingOrigin } from './stalling-origin.js';
import { eventually } from '../helpers/wait.js';

const hex = 'a'.repeat(64);

const manifest = {
  format: MANIFEST_FORMAT,
  project: 'p',
  run: 'r',
  created: new Date().toISOString(),
  base: { id: 'b', digest: `sha256:${hex}`, size: STALLED_SIZE },
  delta: null,
  result: { digest: `sha256:${hex}`, size: 4 << 20 }, // with no delta the base is the result: its plain size
};

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} during the base download`, async (t) => {
    const url = await stallingOrigin(t, { '/projects/p/runs/r': manifest });
    const dir = t.testdir();
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    const child = spawn(process.execPath, cliArgs(['pull', '--project', 'p', '--run', 'r', '--from', url, join(dir, 'out')]), {
      env: { ...process.env, TMPDIR: tmp },
      stdio: 'ignore',
    });
    stopWithTest(t, child, 'SIGKILL');
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    const ours = (): string[] => readdirSync(tmp).filter((d) => d.startsWith('fleetcache-'));
    const partial = (): boolean => ours().some((d) => readdirSync(join(tmp, d)).some((f) => f.endsWith('.partial')));
    await eventually('the pull started writing its download', partial, 30_000);
    child.kill(signal);
    t.equal(await exited, signal, `the pull ends by ${signal}`);
    t.same(ours(), [], 'nothing left in TMPDIR'); // (tsx keeps its cache there too)
  });
}
