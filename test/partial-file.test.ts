// Downloads stopped while a file comes (`artifacts get`, `assets fetch`): a signal (Ctrl-C,
// SIGTERM) leaves no partial file in the user's directory; one a SIGKILL left is removed by
// the next download into that directory once abandoned, so repeated kills do not pile them
// up. Real CLI processes, killed by PID mid-body.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { INDEX_FORMAT } from '../src/artifacts/names.js';
import { fetchArtifacts } from '../src/artifacts/download.js';
import { uploadArtifacts } from '../src/artifacts/upload.js';
import { fetchAssets } from '../src/assets/fetch.js';
import { formatManifest } from '../src/assets/manifest.js';
import { BlobServer, sha512 } from './assets/helpers.js';
import { startOrigin } from './helpers/origin.js';
import { cliArgs, stopWithTest, treeModule } from './helpers/processes.js';
import { startScript } from './helpers/script-child.js';
import { eventually } from './helpers/wait.js';
import { STALLED_SIZE, stallingOrigin } from './project-upload/stalling-origin.js';

const isPartial = (name: string): boolean => name.endsWith('.fleetcache-part');
const HOUR_AGO = new Date(Date.now() - 3600_000);

interface Download {
  /** The CLI's arguments, downloading from the server at `url` into `dir` (made, as its parent: the test's), where its partial file appears. */
  readonly args: (url: string, dir: string) => string[];
  /** The server's JSON answers by path prefix (the file itself stalls mid-body). */
  readonly json: Record<string, unknown>;
}

const body = Buffer.from('the whole file\n');
const assetRecord = { filename: 'big.bin', size: STALLED_SIZE, algorithm: 'sha512', digest: sha512('not the stalled bytes'), unpack: false, visibility: 'public' } as const;

const DOWNLOADS: Record<'artifacts get' | 'assets fetch', Download> = {
  'artifacts get': {
    args: (url, dir) => ['artifacts', 'get', 'r/j', '--from', url, '-o', join(dir, '..')],
    json: { '/artifacts/r/j/_index.json': { format: INDEX_FORMAT, run: 'r', job: 'j', files: [{ path: 'big.bin', size: STALLED_SIZE, digest: `sha256:${'a'.repeat(64)}` }] } },
  },
  'assets fetch': {
    args: (url, dir) => {
      const manifest = join(dir, '..', 'stalled.tt');
      writeFileSync(manifest, formatManifest([assetRecord]));
      return ['assets', 'fetch', '-m', manifest, '--url', url, '--dest', dir];
    },
    json: {},
  },
};

/** Starts the download into `dir` from a server that stalls mid-body, and waits until its partial file has bytes. */
async function stalled(t: Test, download: Download, dir: string) {
  const url = await stallingOrigin(t, download.json);
  const child = spawn(process.execPath, cliArgs(download.args(url, dir)), { stdio: 'ignore' });
  stopWithTest(t, child, 'SIGKILL');
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
  const partials = (): string[] => readdirSync(dir).filter(isPartial);
  await eventually('the download wrote part of its file', () => {
    try {
      return partials().some((p) => statSync(join(dir, p)).size > 0);
    } catch {
      return false; // its directory not made yet
    }
  }, 30_000);
  return { child, exited, partials };
}

for (const [name, download] of Object.entries(DOWNLOADS)) {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    t.test(`${name}: ${signal} mid-download leaves no partial file in its directory`, async (t) => {
      const dir = join(t.testdir(), 'j');
      const { child, exited } = await stalled(t, download, dir);
      process.kill(child.pid!, signal);
      t.equal(await exited, signal, `it ends by ${signal}`);
      t.same(readdirSync(dir), [], 'nothing left in the directory');
    });
  }
}

t.test('a signal the process handles itself (a runner stops its run) leaves the partial file to the download, which still lands', async (t) => {
  const dir = t.testdir();
  const final = join(dir, 'artifact.txt');
  // the download waits for the signal, then finishes: a runner's fetch still running at its first Ctrl-C
  const { child, exited, stderr } = await startScript(t, `
    import { renameSync, writeFileSync } from 'node:fs';
    import { withPartialFile } from '${treeModule('src/partial-file')}';
    process.on('SIGINT', () => {}); // the process's own handling: it does not end by the signal
    await withPartialFile(${JSON.stringify(dir)}, 'artifact.txt', async (partial) => {
      writeFileSync(partial, 'whole\\n');
      const alive = setInterval(() => {}, 1000); // a signal listener alone keeps no process waiting
      const signalled = new Promise((resolve) => process.once('SIGINT', resolve));
      process.stdout.write('writing\\n');
      await signalled;
      clearInterval(alive);
      renameSync(partial, ${JSON.stringify(final)});
    });
  `);
  process.kill(child.pid!, 'SIGINT');
  t.equal(await exited, 0, `the download finished (${stderr().trim()})`);
  t.same(readdirSync(dir), ['artifact.txt'], 'its file landed, and no partial file is left');
});

/**
 * A runner (its own interrupt handling: run/interrupt.ts) whose download into `dir` never
 * ends, after its first Ctrl-C: the run stopped, the download still running, writing its
 * partial file.
 */
async function runnerStoppedMidDownload(t: Test, dir: string) {
  const running = await startScript(t, `
    import { writeFileSync } from 'node:fs';
    import { withPartialFile } from '${treeModule('src/partial-file')}';
    import { RunInterrupt } from '${treeModule('src/run/interrupt')}';
    RunInterrupt.install({ line: (text) => process.stderr.write(text + '\\n'), release: () => {} }, 'fleetcache run --discard');
    await withPartialFile(${JSON.stringify(dir)}, 'artifact.txt', async (partial) => {
      writeFileSync(partial, 'part of it\\n');
      process.stdout.write('writing\\n');
      await new Promise(() => setInterval(() => {}, 1000)); // a download that never ends
    });
  `);
  t.equal(readdirSync(dir).filter(isPartial).length, 1, 'the download is writing its partial file');
  process.kill(running.child.pid!, 'SIGINT');
  await eventually('the runner took the first Ctrl-C', () => running.stderr().includes('Received SIGINT, stopping'), 10_000);
  t.equal(readdirSync(dir).filter(isPartial).length, 1, 'the first Ctrl-C leaves the download running');
  return running;
}

t.test("a runner's second Ctrl-C, which exits at once, leaves no partial file of a download still running", async (t) => {
  const dir = t.testdir();
  const { child, exited, stderr } = await runnerStoppedMidDownload(t, dir);
  process.kill(child.pid!, 'SIGINT');
  t.equal(await exited, 128 + constants.signals.SIGINT, `it exits at the second (${stderr().trim()})`);
  t.same(readdirSync(dir), [], 'no partial file is left');
});

t.test('a SIGHUP that ends a runner after its first Ctrl-C (the terminal closed) leaves no partial file of a download still running', async (t) => {
  const dir = t.testdir();
  // the runner takes SIGINT and SIGTERM, not SIGHUP: it ends the process as the signal does
  const { child, exited, stderr } = await runnerStoppedMidDownload(t, dir);
  process.kill(child.pid!, 'SIGHUP');
  t.equal(await exited, null, `it ends by a signal (${stderr().trim()})`);
  t.equal(child.signalCode, 'SIGHUP', 'by the SIGHUP');
  t.same(readdirSync(dir), [], 'no partial file is left');
});

/**
 * In `dir`, beside what a SIGKILLed process `pid` left: the partial files that must stay, an
 * hour old but of a live process (this one), and one of the dead process written just now
 * (its PID may be another host's). The one it left is made an hour old: abandoned.
 */
function besideAbandoned(dir: string, left: string, pid: number): string[] {
  utimesSync(join(dir, left), HOUR_AGO, HOUR_AGO);
  const live = `.big.bin.${process.pid}-${'b'.repeat(12)}.fleetcache-part`;
  const young = `.big.bin.${pid}-${'c'.repeat(12)}.fleetcache-part`;
  writeFileSync(join(dir, live), 'x');
  utimesSync(join(dir, live), HOUR_AGO, HOUR_AGO);
  writeFileSync(join(dir, young), 'x');
  return [live, young];
}

/** Kills the stalled download with SIGKILL; the partial file it left, named with its PID. */
async function killed(t: Test, download: Download, dir: string): Promise<{ left: string; pid: number }> {
  const { child, exited, partials } = await stalled(t, download, dir);
  process.kill(child.pid!, 'SIGKILL');
  t.equal(await exited, 'SIGKILL');
  const [left] = partials();
  t.match(left, `.big.bin.${child.pid}-`, 'the killed download left its partial file, named with its PID');
  return { left: left!, pid: child.pid! };
}

t.test('artifacts get: a partial file a SIGKILL left is removed by the next get into the directory once abandoned; a live or young one stays', async (t) => {
  const root = t.testdir({ task: { 'big.bin': body.toString() } });
  const dir = join(root, 'out', 'j');
  const { left, pid } = await killed(t, DOWNLOADS['artifacts get'], dir);
  const kept = besideAbandoned(dir, left, pid);
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  await uploadArtifacts({ url: origin.url, token: origin.token, run: 'r', job: 'j', cwd: join(root, 'task'), paths: ['big.bin'] });
  await fetchArtifacts({ from: origin.url, run: 'r', job: 'j', dest: join(root, 'out'), token: origin.token });
  t.same(readdirSync(dir).sort(), [...kept, 'big.bin'].sort(), 'the abandoned partial file is gone; the live and the young one stay');
});

t.test('assets fetch: partial files a SIGKILL left, in the destination and in the cache folder, are removed by the next fetch once abandoned; a live or young one stays', async (t) => {
  const root = t.testdir();
  const dir = join(root, 'dest');
  const cacheFolder = join(root, 'cache');
  const { left, pid } = await killed(t, DOWNLOADS['assets fetch'], dir);
  const kept = besideAbandoned(dir, left, pid);
  // a copy into the cache folder is cut the same way (a SIGKILL mid-copy)
  mkdirSync(cacheFolder);
  const leftInCache = `.${'d'.repeat(32)}.${pid}-${'e'.repeat(12)}.fleetcache-part`;
  writeFileSync(join(cacheFolder, leftInCache), 'x');
  const keptInCache = besideAbandoned(cacheFolder, leftInCache, pid);

  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  server.blobs.set(sha512(body), body);
  const manifest = join(root, 'manifest.tt');
  writeFileSync(manifest, formatManifest([{ ...assetRecord, size: body.length, digest: sha512(body) }]));
  const fetched = await fetchAssets({ manifestPath: manifest, urls: [url], dest: dir, cacheFolder });
  t.equal(fetched.failed, 0);
  t.same(readdirSync(dir).sort(), [...kept, 'big.bin'].sort(), 'destination: the abandoned partial file is gone; the live and the young one stay');
  t.same(readdirSync(cacheFolder).sort(), [...keptInCache, sha512(body)].sort(), 'cache folder: the same');
});
