// artifacts get stopped while a file downloads: a signal (Ctrl-C, SIGTERM) leaves no partial
// file in the user's directory; one a SIGKILL left is removed by the next get into it, so
// repeated kills do not pile them up. Real CLI processes, killed by PID mid-body.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { INDEX_FORMAT } from '../../src/artifacts/names.js';
import { fetchArtifacts } from '../../src/artifacts/download.js';
import { uploadArtifacts } from '../../src/artifacts/upload.js';
import { startOrigin } from '../helpers/origin.js';
import { cliArgs, stopWithTest } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { STALLED_SIZE, stallingOrigin } from '../project-upload/stalling-origin.js';

const index = { format: INDEX_FORMAT, run: 'r', job: 'j', files: [{ path: 'big.bin', size: STALLED_SIZE, digest: `sha256:${'a'.repeat(64)}` }] };
const isPartial = (name: string): boolean => name.endsWith('.fleetcache-partial');

/** Starts `artifacts get r/j` into `out` from a server that stalls mid-body, and waits until its partial file has bytes; the child and its exit. */
async function stalledGet(t: Test, out: string) {
  const url = await stallingOrigin(t, { '/artifacts/r/j/_index.json': index });
  const child = spawn(process.execPath, cliArgs(['artifacts', 'get', 'r/j', '--from', url, '-o', out]), { stdio: 'ignore' });
  stopWithTest(t, child, 'SIGKILL');
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
  const partials = (): string[] => readdirSync(join(out, 'j')).filter(isPartial);
  await eventually('the download wrote part of its file', () => {
    try {
      return partials().some((p) => statSync(join(out, 'j', p)).size > 0);
    } catch {
      return false; // the job's directory not made yet
    }
  }, 30_000);
  return { child, exited, partials };
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  t.test(`${signal} mid-download: no partial file is left in the output directory`, async (t) => {
    const out = t.testdir();
    const { child, exited, partials } = await stalledGet(t, out);
    process.kill(child.pid!, signal);
    t.equal(await exited, signal, `the get ends by ${signal}`);
    t.same(partials(), [], 'no partial file left');
    t.same(readdirSync(join(out, 'j')), [], 'nothing at all under the job\'s directory');
  });
}

t.test('a partial file a SIGKILL left is removed by the next get into the directory once abandoned; a live or young one stays', async (t) => {
  const dir = t.testdir({ task: { 'big.bin': 'the whole artifact\n' } });
  const out = join(dir, 'out');
  const { child, exited, partials } = await stalledGet(t, out);
  process.kill(child.pid!, 'SIGKILL');
  t.equal(await exited, 'SIGKILL');
  const [killed] = partials();
  t.ok(killed?.startsWith(`.${child.pid}-`), 'the killed get left its partial file, named with its PID');

  // an hour unwritten: abandoned. Beside it, the same age but of a live process (this one),
  // and one of the dead process written just now (its PID may be another host's).
  const hourAgo = new Date(Date.now() - 3600_000);
  utimesSync(join(out, 'j', killed!), hourAgo, hourAgo);
  const live = `.${process.pid}-${'b'.repeat(12)}.fleetcache-partial`;
  const young = `.${child.pid}-${'c'.repeat(12)}.fleetcache-partial`;
  writeFileSync(join(out, 'j', live), 'x');
  utimesSync(join(out, 'j', live), hourAgo, hourAgo);
  writeFileSync(join(out, 'j', young), 'x');

  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  await uploadArtifacts({ url: origin.url, token: origin.token, run: 'r', job: 'j', cwd: join(dir, 'task'), paths: ['big.bin'] });
  await fetchArtifacts({ from: origin.url, run: 'r', job: 'j', dest: out, token: origin.token });
  t.same(readdirSync(join(out, 'j')).sort(), [live, young, 'big.bin'].sort(), 'the abandoned partial file is gone; the live and the young one stay');
});
