// Artifacts round trip: the bundled agent uploads through a real cache, then
// `fleetcache artifacts get` fetches them back into DIR/<job name>/; escaping paths are
// refused on both sides. The agent's other uploads run its command in this process.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { cacheLimits, httpHead, httpPut } from '../../src/client/http.js';
import { downloadArtifacts, resolveArtifactRef } from '../../src/artifacts/download.js';
import { indexUrl, INDEX_FORMAT, INDEX_NAME } from '../../src/artifacts/names.js';
import { runToken } from '../../src/client/run-token.js';
import { fetchArtifacts } from '../../src/artifacts/download.js';
import { startCache } from '../cache/harness.js';
import { startOrigin } from '../helpers/origin.js';
import { pacedProxy } from '../helpers/paced-proxy.js';
import { pacedUploadProxy } from '../helpers/paced-upload-proxy.js';
import { cliArgs, REPO_ROOT } from '../helpers/processes.js';
import { runHere } from '../helpers/cli.js';
import { installAgent, runAgent, runAgentHere } from './helpers.js';

const JOB = 'local:ubuntu-22.04:tests/main/foo:v1';

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, cliArgs(args), { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** An origin, and a task directory holding big.bin of `size` random bytes. */
async function machineWithBigFile(t: Test, size: number): Promise<{ dir: string; origin: Awaited<ReturnType<typeof startOrigin>>; task: string }> {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const task = join(dir, 'machine');
  mkdirSync(task, { recursive: true });
  writeFileSync(join(task, 'big.bin'), randomBytes(size));
  return { dir, origin, task };
}

t.test('agent artifacts uploads through the cache; artifacts get fetches them back', async (t) => {
  const agent = await installAgent(t);
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));

  const task = join(dir, 'machine', 'tests', 'main', 'foo');
  mkdirSync(join(task, 'out', 'sub'), { recursive: true });
  const big = randomBytes(300 * 1024);
  writeFileSync(join(task, 'out', 'log.txt'), 'log line\n');
  writeFileSync(join(task, 'out', 'sub', 'big.bin'), big);
  writeFileSync(join(task, 'out', 'sp ace%.txt'), 'odd name\n');
  writeFileSync(join(task, 'report.json'), '{}\n');
  symlinkSync('report.json', join(task, 'out', 'link'));

  const res = await runAgent(agent, 'artifacts', {
    url: cache.url, token: origin.token, run: 'run-1', job: JOB, cwd: task, paths: ['out', 'report.json', 'missing.txt'],
  });
  t.equal(res.code, 0, 'exit status 0', { stderr: res.stderr });
  // bytes: the files' and the job's index's, as it is stored at the origin
  const storedIndex = await fetch(indexUrl(origin.url, 'run-1', JOB), { headers: { authorization: `Bearer ${origin.token}` } }).then((r) => (t.equal(r.status, 200, 'the index is stored'), r.arrayBuffer()));
  t.match(res.json, { ok: true, files: 4, bytes: big.length + 9 + 9 + 3 + storedIndex.byteLength, missing: ['missing.txt'], skipped: ['out/link'] });

  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, origin.token);
  const all = join(dir, 'all');
  const got = await runHere(['artifacts', 'get', `run-1/${JOB}`, '--from', cache.url, '-o', all, '--token-file', tokenFile], dir);
  t.equal(got.code, 0, 'get exits 0', { stderr: got.stderr });
  t.equal(got.stdout.trim().split('\n').length, 4, 'one line per file');
  const jobDir = join(all, 'local:ubuntu-22.04:tests', 'main', 'foo:v1');
  t.ok(readFileSync(join(jobDir, 'out', 'sub', 'big.bin')).equals(big), 'binary artifact intact');
  t.equal(readFileSync(join(jobDir, 'out', 'sp ace%.txt'), 'utf8'), 'odd name\n');
  t.equal(readFileSync(join(jobDir, 'report.json'), 'utf8'), '{}\n');
  t.same(readdirSync(join(jobDir, 'out')).sort(), ['log.txt', 'sp ace%.txt', 'sub'], 'no temp files, no symlink');

  // One path of a job, from the origin this time; the job/path split is found from the index.
  const http = { token: origin.token };
  const ref = await resolveArtifactRef(origin.url, `run-1/${JOB}/out/sub/big.bin`, http);
  t.match(ref, { run: 'run-1', job: JOB, path: 'out/sub/big.bin' });
  const one = join(dir, 'one');
  t.same((await downloadArtifacts(origin.url, ref, one, http)).map((f) => f.path), ['out/sub/big.bin']);
  t.same(readdirSync(join(one, 'local:ubuntu-22.04:tests', 'main', 'foo:v1')), ['out']);
  t.ok(readFileSync(join(one, 'local:ubuntu-22.04:tests', 'main', 'foo:v1', 'out', 'sub', 'big.bin')).equals(big));
  const nothing = await resolveArtifactRef(origin.url, `run-1/${JOB}/nothing`, http);
  await t.rejects(downloadArtifacts(origin.url, nothing, join(dir, 'none'), http), { code: 'FC_ERR_NOT_FOUND' }, 'an unknown path is not found');
  await t.rejects(resolveArtifactRef(origin.url, 'run-2/other', http), { code: 'FC_ERR_NOT_FOUND' }, 'an unknown job is not found');

  // The runner's entry point (exact job name, no prefix guessing).
  const { files: viaRunner } = await fetchArtifacts({ from: cache.url, run: 'run-1', job: JOB, path: 'out', dest: join(dir, 'runner') });
  t.same(viaRunner.map((f) => f.path).sort(), ['out/log.txt', 'out/sp ace%.txt', 'out/sub/big.bin']);
});

t.test("the runner's artifact fetch from a cache that trickles gives up at the cache floor (cacheLimits), for the next URL", async (t) => {
  const { dir, origin, task } = await machineWithBigFile(t, 64 * 1024);
  const res = await runAgentHere('artifacts', { url: origin.url, token: origin.token, run: 'run-1', job: JOB, cwd: task, paths: ['big.bin'] });
  t.equal(res.code, 0, 'uploaded', { stderr: res.stderr });
  // a byte every 100 ms of each file: never silent for the 500 ms cacheTimeout, 10 bytes/s
  const cache = await pacedProxy(t, origin.url, (path) => !path.endsWith('/_index.json'), { bytes: 1, everyMs: 100 });
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const err = await Promise.race([
    fetchArtifacts({ from: cache, run: 'run-1', job: JOB, dest: join(dir, 'runner'), limits: cacheLimits(500) }).then(() => undefined, (e: unknown) => e as { code?: string; message?: string }),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('still fetching after 15 s')), 15_000))),
  ]).finally(() => clearTimeout(timer)); // a pending timer would keep the file's process alive 15 s
  t.equal(err?.code, 'FC_ERR_UPSTREAM_TIMEOUT');
  t.match(err?.message, /slower than 16 KiB\/s over 1 s/, 'the floor named');
  t.ok(Date.now() - started < 8000, `within seconds (${Date.now() - started} ms)`);
});

t.test('an upload to a cache that takes it a trickle at a time, or stops taking it, gives up at the cache limits (cacheTimeoutMs)', async (t) => {
  // larger than what the sockets' buffers take in before the cache's pace holds the upload back
  const { origin, task } = await machineWithBigFile(t, 16 * 2 ** 20);
  const cases: Array<[string, { bytes: number; everyMs: number }, RegExp]> = [
    // 1 KiB every 100 ms: never silent for the 500 ms cacheTimeout, 10 KiB/s
    // the file's chunks (64 KiB) then wait on the cache longer than it may keep silent, or its floor cuts it
    ['trickles', { bytes: 1024, everyMs: 100 }, /big\.bin: (Headers Timeout Error|the server took the upload slower than 16 KiB\/s over 1 s)/],
    ['stops reading', { bytes: 0, everyMs: 100 }, /big\.bin: (Headers Timeout Error|the server took the upload slower than 16 KiB\/s over 1 s)/],
  ];
  for (const [what, pace, message] of cases) {
    const cache = await pacedUploadProxy(t, origin.url, (path) => path.endsWith('/big.bin'), pace);
    const started = Date.now();
    const res = await runAgentHere('artifacts', { url: cache, token: origin.token, run: `run-${what.replace(' ', '-')}`, job: JOB, cwd: task, paths: ['big.bin'], cacheTimeoutMs: 500 });
    t.not(res.code, 0, `${what}: the upload failed`);
    t.match(res.json, { ok: false, code: 'FC_ERR_UPSTREAM_TIMEOUT', error: message }, what, { stderr: res.stderr });
    t.ok(Date.now() - started < 10_000, `${what}: within seconds (${Date.now() - started} ms), not the client's minutes`);
  }
  // without cacheTimeoutMs (the origin, the last URL) the same file goes through a cache at its own pace
  const healthy = await pacedUploadProxy(t, origin.url, () => false, { bytes: 0, everyMs: 100 });
  const res = await runAgentHere('artifacts', { url: healthy, token: origin.token, run: 'run-healthy', job: JOB, cwd: task, paths: ['big.bin'], cacheTimeoutMs: 500 });
  t.match(res.json, { ok: true, files: 1 }, 'a cache that takes the upload passes it on', { stderr: res.stderr });
});

t.test('a failed upload lists the files it stored; the next try sends only the others, and a stored file whose content changed', async (t) => {
  const dir = t.testdir();
  // room for two files of the run: the third is refused
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin'), runArtifacts: { maxBytes: 1024 * 1024, maxFiles: 2 } });
  /** The artifact PUTs the origin was sent, by file name. */
  const puts: string[] = [];
  origin.app.server.on('request', (req: IncomingMessage) => {
    if (req.method === 'PUT' && req.url?.startsWith('/artifacts/')) puts.push(req.url.split('/').at(-1)!);
  });
  const task = join(dir, 'task');
  mkdirSync(task, { recursive: true });
  const names = ['a.txt', 'b.txt', 'c.txt'];
  for (const name of names) writeFileSync(join(task, name), `${name}\n`);
  const args = { url: origin.url, run: 'run-1', job: JOB, cwd: task, paths: names };
  const failed = await runAgentHere('artifacts', { ...args, token: runToken(origin.token, 'run-1') });
  t.match(failed.json, { ok: false, code: 'FC_ERR_QUOTA' }, "the run's budget refused one file");
  const stored = failed.json.stored as Array<{ path: string; size: number; digest: string }>;
  t.equal(stored.length, 2, 'the answer lists the two files stored');
  const [kept, changed] = stored.map((f) => f.path);
  const refused = names.find((n) => !stored.some((f) => f.path === n))!;
  writeFileSync(join(task, changed!), 'changed since\n');
  puts.length = 0;
  // the next try (with a write token, which has no budget)
  const res = await runAgentHere('artifacts', { ...args, token: origin.token, stored });
  t.match(res.json, { ok: true, files: 3 });
  t.same(puts.sort(), [INDEX_NAME, changed, refused].sort(), `${kept} not sent again`);
  const { files } = await fetchArtifacts({ from: origin.url, run: 'run-1', job: JOB, dest: join(dir, 'back'), token: origin.token });
  t.same(files.map((f) => f.path).sort(), names, 'the index lists all three');
  t.equal(readFileSync(join(dir, 'back', 'local:ubuntu-22.04:tests', 'main', 'foo:v1', changed!), 'utf8'), 'changed since\n', 'the changed file is stored as it is now');
});

t.test('escaping artifact paths are refused before anything is uploaded', async (t) => {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const task = join(dir, 'task');
  mkdirSync(task);
  writeFileSync(join(task, 'ok.txt'), 'fine\n');
  writeFileSync(join(dir, 'secret.txt'), 'secret\n');
  symlinkSync('../secret.txt', join(task, 'sneaky'));
  const base = { url: origin.url, token: origin.token, run: 'r', job: 'j', cwd: task };

  for (const [path, why] of [['../secret.txt', /escapes the task directory/], ['/etc/hostname', /must be relative/], ['sneaky', /through a symlink/], ['a/../../secret.txt', /escapes/]] as const) {
    const res = await runAgentHere('artifacts', { ...base, paths: ['ok.txt', path] });
    t.equal(res.code, 2, `${path}: refused with a usage exit code`);
    t.match(res.json, { ok: false, code: 'FC_ERR_BAD_NAME', error: why }, path);
  }
  t.equal(await httpHead(indexUrl(origin.url, 'r', 'j'), { token: origin.token }), undefined, 'no index was written');
  t.equal(await httpHead(`${origin.url}/artifacts/r/j/ok.txt`, { token: origin.token }), undefined, 'no file was uploaded');
});

t.test('artifacts get refuses an index whose paths escape the target directory', async (t) => {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const digest = `sha256:${'0'.repeat(64)}`;
  const cases = [['evil', '../../escaped.txt'], ['evil2', 'a//b'], ['evil3', '/abs']] as const;
  for (const [job, path] of cases) {
    const index = { format: INDEX_FORMAT, run: 'r', job, files: [{ path, size: 1, digest }] };
    await httpPut(indexUrl(origin.url, 'r', job), JSON.stringify(index), { token: origin.token });
  }
  // The CLI once (exit status and message), the library for the other shapes.
  const out = join(dir, 'out-evil');
  const res = await cli(['artifacts', 'get', 'r/evil', '--from', origin.url, '-o', out], { FLEETCACHE_TOKEN: origin.token });
  t.equal(res.code, 2, 'refused with a usage exit code');
  t.match(res.stderr, /artifact path/, 'the message names the artifact path');
  t.notOk(existsSync(out), 'nothing written');
  for (const [job, path] of cases) {
    const dest = join(dir, `lib-${job}`);
    await t.rejects(fetchArtifacts({ from: origin.url, run: 'r', job, dest, token: origin.token }), { code: 'FC_ERR_BAD_NAME' }, `${path}: refused`);
    t.notOk(existsSync(dest), `${path}: nothing written`);
  }
  t.notOk(existsSync(join(dir, 'escaped.txt')));
});
