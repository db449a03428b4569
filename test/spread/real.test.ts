// The two real spread trees: snapd must expand to 147,191 jobs quickly, mir must load;
// and `fleetcache list` prints like `spread -list` and fails like it (exit 1, "error:").
import t from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { Writable } from 'node:stream';
import path from 'node:path';
import { expandJobs, loadProject } from '../../src/spread/index.js';
import { listJobs } from '../../src/cli/list.js';
import { runHere } from '../helpers/cli.js';
import { cpuMsOf } from '../helpers/cpu.js';
import { cliArgs, REPO_ROOT } from '../helpers/processes.js';

// shared/ sits beside the repository (in CI too); /work/shared is the development machine's copy.
const BESIDE = path.resolve(REPO_ROOT, '../shared/spread-real');
const REAL = existsSync(BESIDE) ? BESIDE : '/work/shared/spread-real';

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

t.test('snapd: 147,191 jobs in well under 10 s', async (t) => {
  const dir = t.testdir();
  execFileSync('tar', ['-xJf', path.join(REAL, 'snapd-yaml.tar.xz'), '-C', dir]);
  const root = path.join(dir, 'snapd');
  const started = performance.now();
  const out = new Collect();
  const { ms: cpuMs } = await cpuMsOf(() => listJobs(root, [], false, out));
  const wallMs = performance.now() - started;
  const lines = out.text.split('\n').filter(Boolean);
  t.equal(lines.length, 147191);
  t.ok(cpuMs < 10_000, `load + expand + print: ${Math.round(cpuMs)} ms CPU, ${Math.round(wallMs)} ms wall`);
  // One pass, not t.same of two 147k arrays (which costs more CPU than the listing): the
  // first line not strictly after the one before it, sorted and unique both (-1: none).
  t.equal(lines.findIndex((line, i) => i > 0 && !(lines[i - 1]! < line)), -1, 'output is sorted by name, names unique');
});

t.test('mir loads; glob variants appear literally', async (t) => {
  const project = await loadProject(path.join(REAL, 'mir'));
  const names = expandJobs(project).map((j) => j.name);
  t.equal(names.length, 31);
  for (const v of ['*ld', 'fedora_*', 'ubuntu*']) t.ok(names.some((n) => n.endsWith(`:${v}`)), v);
  const out = new Collect();
  await listJobs(path.join(REAL, 'mir'), ['lxd:fedora-44:spread/fedora:fedora_44'], true, out);
  const [job] = JSON.parse(out.text) as Array<Record<string, unknown>>;
  t.match(job, { name: 'lxd:fedora-44:spread/fedora:fedora_44', priority: 0, workers: 1, region: null, variant: 'fedora_44' });
  t.match(job!.environment, { SPREAD_VARIANT: 'fedora_44', RELEASE: '44', DEB_BUILD_EXTRA: '', CCACHE_DIR: '/root/.ccache' });
});

t.test('fleetcache list exits like spread -list', async (t) => {
  // what it prints, in this process; the exit status as a shell sees it, from the real binary
  const good = await runHere(['list', 'alpine-edge:...:amd64'], path.join(REAL, 'mir'));
  t.equal(good.code, 0);
  t.equal(good.stdout, 'lxd:alpine-edge:spread/alpine:amd64\n');
  const bad = spawnSync(process.execPath, cliArgs(['list', 'nothing-like-this']), { cwd: path.join(REAL, 'mir'), encoding: 'utf8' });
  t.equal(bad.status, 1);
  t.equal(bad.stdout, '');
  t.equal(bad.stderr, 'error: nothing matches provider filter\n');
});

t.test('fleetcache list whose reader stops early (`| head`) ends as spread -list does: silently, as killed by SIGPIPE', async (t) => {
  // enough jobs that the list outgrows a pipe's buffer
  const root = t.testdir({
    'spread.yaml': 'project: p\npath: /p\nbackends:\n    lxd:\n        systems: [ubuntu-1]\nsuites:\n    s/:\n        summary: s\n',
    s: { t: { 'task.yaml': 'summary: t\nexecute: echo ok\nsamples: 20000\n' } },
  });
  const child = spawn(process.execPath, cliArgs(['list']), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [first] = (await once(child.stdout, 'data')) as [Buffer];
  t.match(first.toString(), /^lxd:ubuntu-1:s\/t#1\n/);
  child.stdout.destroy();
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(stderr, '', 'no error about the closed pipe');
  t.equal(code, 141, '128 + SIGPIPE, the status a shell gives spread -list then');
});
