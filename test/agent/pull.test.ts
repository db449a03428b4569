// The bundled agent's `pull` against real servers: fallback over a dead URL, a 5xx server,
// servers that refuse the request and a server without the run, through a real cache, a
// delta applied by the embedded xdelta3, and the tree unpacked exactly.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { request } from 'undici';
import { casId } from '../../src/cache/disk-store.js';
import { pullWithFallback } from '../../src/agent/pull.js';
import { ERROR_CODES } from '../../src/errors.js';
import { buildOrigin } from '../../src/origin/server.js';
import { pushProject } from '../../src/project-upload/push.js';
import { startCache } from '../cache/harness.js';
import { startOrigin } from '../helpers/origin.js';
import { mountTmpfs } from '../helpers/tmpfs.js';
import { blackHoleUrl } from '../helpers/black-hole.js';
import { pacedProxy, type Pace } from '../helpers/paced-proxy.js';
import { describeTree } from '../helpers/tree.js';
import { eventually } from '../helpers/wait.js';
import { deadUrl, serveOnLoopback } from '../helpers/loopback-server.js';
import { installAgent, runAgent, runAgentHere, statusServer } from './helpers.js';
import { rotInPlace } from '../helpers/bit-rot.js';

t.test('pull falls back in order, uses the cache, applies the delta and unpacks', async (t) => {
  const agent = await installAgent(t);
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const empty = await startOrigin(t, { dataDir: join(dir, 'empty-origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  const failing = await statusServer(t, 503);
  const dead = await deadUrl();
  // caches that refuse the request themselves (another version, a lower header limit)
  const refusing = await statusServer(t, 431, 'FC_ERR_TOO_MANY_HEADERS');
  const malformed = await statusServer(t, 400, 'FC_ERR_BAD_REQUEST');

  const project = join(dir, 'project');
  mkdirSync(join(project, 'src'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(project, 'src', `m${i}.txt`), `module ${i}\n`.repeat(500));
  writeFileSync(join(project, 'blob.bin'), randomBytes(256 * 1024));
  symlinkSync('src/m0.txt', join(project, 'main.txt'));
  const common = { dir: project, project: 'demo', origin: origin.url, token: origin.token, baseCache: join(dir, 'bases') };
  await pushProject({ ...common, run: 'r1' });
  writeFileSync(join(project, 'src', 'm3.txt'), 'changed\n');
  const second = await pushProject({ ...common, run: 'r2' });
  t.ok(second.manifest.delta, 'the second run is a delta against the first');

  const dest = join(dir, 'machine', 'project');
  const urls = [dead, failing, refusing, malformed, empty.url, cache.url, origin.url];
  const res = await runAgent(agent, 'pull', { urls, project: 'demo', run: 'r2', dest, workDir: join(dir, 'machine', 'work'), token: origin.token });
  t.equal(res.code, 0, 'exit status 0', { stderr: res.stderr });
  t.match(res.json, { ok: true, url: cache.url, urlIndex: 5, fromCache: true, resultDigest: second.manifest.result.digest });
  t.ok((res.json.bytesDownloaded as number) > 0, 'bytes were downloaded');
  t.same((res.json.skipped as { url: string; code: string }[]).map((s) => [s.url, s.code]), [
    [dead, 'FC_ERR_UPSTREAM'],
    [failing, 'FC_ERR_UPSTREAM'],
    [refusing, 'FC_ERR_TOO_MANY_HEADERS'],
    [malformed, 'FC_ERR_BAD_REQUEST'],
    [empty.url, 'FC_ERR_NOT_FOUND'],
  ]);
  t.equal(res.stdout.trim().split('\n').length, 1, 'exactly one line on stdout');
  t.match(res.stderr, new RegExp(`${dead} skipped`), 'skips are logged on stderr');
  t.same(describeTree(dest), describeTree(project), 'the tree is rebuilt exactly');
  t.same(readdirSync(join(dir, 'machine', 'work')), [], 'temporary tars are gone');

  const direct = join(dir, 'machine2');
  const res2 = await runAgentHere('pull', { urls: [dead, origin.url], project: 'demo', run: 'r1', dest: direct });
  t.equal(res2.code, 0, 'exit status 0', { stderr: res2.stderr });
  t.match(res2.json, { ok: true, url: origin.url, urlIndex: 1, fromCache: false });
  t.equal(readFileSync(join(direct, 'src', 'm3.txt'), 'utf8'), 'module 3\n'.repeat(500), 'run r1 has the old content');
});

t.test('pull fails with one JSON line when no URL serves the run', async (t) => {
  const agent = await installAgent(t);
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const res = await runAgent(agent, 'pull', { urls: [await deadUrl(), origin.url], project: 'demo', run: 'nope', dest: join(dir, 'dest') });
  t.equal(res.code, 4, 'not-found exit code');
  t.match(res.json, { ok: false, code: 'FC_ERR_NOT_FOUND', error: /every URL failed/ });
  t.equal((res.json.skipped as unknown[]).length, 2, 'the URLs given up on are listed');

  const bad = await runAgentHere('pull', { urls: [], project: 'demo', run: 'x', dest: join(dir, 'd') });
  t.equal(bad.code, 2, 'bad arguments are a usage error');
  t.match(bad.json, { ok: false, code: 'FC_ERR_USAGE', error: /\/urls/ });
});

t.test('a cache copy damaged on disk: the agent asks again with no-cache, the cache fetches it anew', async (t) => {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cacheDir = join(dir, 'cache');
  const cache = await startCache(t, { upstream: origin.url }, cacheDir);
  const project = join(dir, 'project');
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, 'blob.bin'), randomBytes(256 * 1024)); // a base far above what a cache keeps in memory
  const pushed = await pushProject({ dir: project, project: 'demo', origin: origin.url, token: origin.token, baseCache: join(dir, 'bases'), run: 'r1' });
  const pull = (dest: string) => runAgentHere('pull', { urls: [cache.url, origin.url], project: 'demo', run: 'r1', dest: join(dir, dest) });
  t.match((await pull('m1')).json, { ok: true, url: cache.url }, 'the first pull fills the cache');
  await cache.app.cache.fills.drain();

  // Bit rot in the cache's copy of the base: same size, one byte changed.
  const hex = pushed.manifest.base.digest.slice('sha256:'.length);
  const stored = join(cacheDir, casId({ algo: 'sha256', hex }));
  rotInPlace(stored);

  const again = await pull('m2');
  t.equal(again.code, 0, again.stderr);
  t.match(again.json, { ok: true, url: cache.url, skipped: [] }, 'the cache itself served the right bytes on the second ask');
  t.match(again.stderr, /served damaged bytes .*asking again with no-cache/);
  t.equal(createHash('sha256').update(readFileSync(stored)).digest('hex'), hex, 'the cache holds a good copy again');
  t.same(describeTree(join(dir, 'm2')), describeTree(project));
});

t.test('damaged bytes from the origin (the last URL) are not asked for again', async (t) => {
  const dir = t.testdir();
  const originDir = join(dir, 'origin');
  const origin = await startOrigin(t, { dataDir: originDir });
  const project = join(dir, 'project');
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, 'blob.bin'), randomBytes(64 * 1024));
  const pushed = await pushProject({ dir: project, project: 'demo', origin: origin.url, token: origin.token, baseCache: join(dir, 'bases'), run: 'r1' });
  const hex = pushed.manifest.base.digest.slice('sha256:'.length);
  const stored = join(originDir, 'cas.v1', 'sha256', hex.slice(0, 2), hex);
  rotInPlace(stored);
  const res = await runAgentHere('pull', { urls: [origin.url], project: 'demo', run: 'r1', dest: join(dir, 'm') });
  t.not(res.code, 0, 'the pull fails');
  t.notMatch(res.stderr, /asking again with no-cache/, 'without asking the origin twice');
});

t.test('every URL down at once (the origin restarting under its caches): the pull passes over them again, and gets the run; a cache that refuses the request does not stop the passes', async (t) => {
  const dir = t.testdir();
  const dataDir = join(dir, 'origin');
  const first = await startOrigin(t, { dataDir });
  const project = join(dir, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'a.txt'), 'the tree\n');
  await pushProject({ dir: project, project: 'demo', origin: first.url, token: first.token, baseCache: join(dir, 'bases'), run: 'r1' });
  const port = Number(new URL(first.url).port);
  await first.app.close();
  const retries: string[] = [];
  const pulling = pullWithFallback({
    urls: [await deadUrl(), await statusServer(t, 431, 'FC_ERR_TOO_MANY_HEADERS'), first.url],
    project: 'demo',
    run: 'r1',
    dest: join(dir, 'dest'),
    retryDelaysMs: [300, 300, 300, 300, 300],
    onRetry: (ms, err) => retries.push(`${ms} ${err.code}`),
  });
  // back once a pass over the list has failed, not after a fixed time a loaded machine overruns
  await eventually('a pass over every URL failed', () => retries.length >= 1, 10_000);
  const again = await buildOrigin({ dataDir, tokens: [first.token], logLevel: false });
  await again.app.listen({ host: '127.0.0.1', port });
  t.teardown(() => again.app.close());
  const pulled = await pulling;
  t.equal(pulled.url, first.url, 'from the origin, once it was back');
  t.ok(retries.length >= 1 && retries.every((r) => /^300 FC_ERR_UPSTREAM/.test(r)), `passed over the list again: ${retries.join(', ')}`);
  t.equal(readFileSync(join(dir, 'dest', 'a.txt'), 'utf8'), 'the tree\n');
});

/** A failed pull's message read back: per URL, each reason and how many times it was met; undefined when it does not read so. */
function readAttempts(message: string): Array<[url: string, reasons: Array<[reason: string, times: number]>]> | undefined {
  const list = /^pull: every URL failed \((.*)\)$/s.exec(message)?.[1];
  if (list === undefined) return undefined;
  const reason = String.raw`("(?:[^"\\]|\\.)*")(?: \((\d+) times\))?`;
  const entry = new RegExp(String.raw`(\S+?): (${reason}(?: / ${reason})*)(?:; |$)`, 'y');
  const entries: Array<[string, Array<[string, number]>]> = [];
  while (entry.lastIndex < list.length) {
    const m = entry.exec(list);
    if (!m) return undefined;
    const reasons = [...m[2]!.matchAll(new RegExp(reason, 'g'))].map((r): [string, number] => [JSON.parse(r[1]!) as string, Number(r[2] ?? 1)]);
    entries.push([m[1]!, reasons]);
  }
  return entries;
}

t.test('a pull that fails on every pass names each URL once, with each distinct reason, quoted, and how often it was met', async (t) => {
  const dir = t.testdir();
  // a cache answering 503 on the first pass and 502 after it: two reasons for one URL, each
  // holding what separates the URLs' entries and a URL's reasons
  let answered = 0;
  const flaky = createServer((_req, res) => {
    res.statusCode = answered++ === 0 ? 503 : 502;
    res.end(JSON.stringify({ code: 'FC_ERR_UNAVAILABLE', message: `answer ${res.statusCode}; http://127.0.0.1:9: "refused" / again` }));
  });
  const flakyUrl = await serveOnLoopback(t, flaky);
  const [deadCache, deadOrigin] = [await deadUrl(), await deadUrl()];
  const retryDelaysMs = [10, 10, 10];
  const passes = retryDelaysMs.length + 1;
  const err = await pullWithFallback({ urls: [deadCache, flakyUrl, deadOrigin], project: 'demo', run: 'r1', dest: join(dir, 'dest'), retryDelaysMs }).catch((e: unknown) => e as Error);
  t.ok(err instanceof Error, 'the pull failed');
  const message = (err as Error).message;
  t.equal(((err as { details?: { skipped?: unknown[] } }).details?.skipped ?? []).length, 3 * passes, 'every attempt is still in the details');
  const attempts = readAttempts(message);
  t.same(attempts?.map(([url]) => url), [deadCache, flakyUrl, deadOrigin], 'one entry per URL, in order', { message });
  const [dead, flakyReasons, origin] = (attempts ?? []).map(([, reasons]) => reasons);
  t.match(dead, [[new RegExp(`^GET ${deadCache}/.*ECONNREFUSED`), passes]], "the dead cache's reason with its count");
  t.match(flakyReasons, [[/answer 503; http:\/\/127\.0\.0\.1:9: "refused" \/ again$/, 1], [/answer 502; http:\/\/127\.0\.0\.1:9: "refused" \/ again$/, passes - 1]], "the flaky cache's two reasons, whole, the later one counted");
  t.match(origin, [[/ECONNREFUSED/, passes]], "the dead origin's reason with its count");
});

/** An origin with run r1 of project demo, whose tree is the one file `name` holding `content`. */
async function originWithRun(t: Test, name: string, content: string | Buffer) {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const project = join(dir, 'project');
  mkdirSync(project);
  writeFileSync(join(project, name), content);
  await pushProject({ dir: project, project: 'demo', origin: origin.url, token: origin.token, baseCache: join(dir, 'bases'), run: 'r1' });
  return { dir, origin };
}

t.test('a cache that stops in the middle of a body costs cacheTimeoutMs, then the next URL serves the pull', async (t) => {
  const { dir, origin } = await originWithRun(t, 'a.txt', 'the tree\n');
  // Passes the run manifest on from the origin; of a blob, the headers and the first half of its bytes, then nothing.
  const frozen = createServer((req, res) => {
    if (!req.url?.startsWith('/cas/')) {
      void request(`${origin.url}${req.url}`).then(async (up) => res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type']) }).end(Buffer.from(await up.body.arrayBuffer())));
      return;
    }
    void request(`${origin.url}${req.url}`).then(async (up) => {
      const body = Buffer.from(await up.body.arrayBuffer());
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, body.length >> 1));
    });
  });
  const frozenUrl = await serveOnLoopback(t, frozen);
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const pulled = await Promise.race([
    pullWithFallback({ urls: [frozenUrl, origin.url], project: 'demo', run: 'r1', dest: join(dir, 'dest'), cacheTimeoutMs: 500 }),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('still pulling after 15 s')), 15_000))),
  ]).finally(() => clearTimeout(timer)); // a pending timer would keep the file's process alive 15 s
  t.equal(pulled.url, origin.url, 'from the origin');
  t.match(pulled.skipped, [{ url: frozenUrl, code: 'FC_ERR_UPSTREAM' }], 'the cache was given up on');
  t.ok(Date.now() - started < 5000, `within seconds (${Date.now() - started} ms)`);
  t.equal(readFileSync(join(dir, 'dest', 'a.txt'), 'utf8'), 'the tree\n');
});

t.test('a black-holed cache (its host drops the SYNs) costs cacheTimeoutMs to connect, not the client 10 s, then the next URL serves the pull', async (t) => {
  const { dir, origin } = await originWithRun(t, 'a.txt', 'the tree\n');
  const blackHole = await blackHoleUrl(t);
  const started = Date.now();
  const pulled = await pullWithFallback({ urls: [blackHole, origin.url], project: 'demo', run: 'r1', dest: join(dir, 'dest'), cacheTimeoutMs: 1000 });
  const took = Date.now() - started;
  t.equal(pulled.url, origin.url, 'from the origin');
  t.match(pulled.skipped, [{ url: blackHole, code: 'FC_ERR_UPSTREAM_TIMEOUT', error: /connect/i }], 'the cache was given up on, connecting');
  t.ok(took >= 1000 && took < 5000, `after the cacheTimeoutMs of 1 s (${took} ms)`);
  t.equal(readFileSync(join(dir, 'dest', 'a.txt'), 'utf8'), 'the tree\n');
});

/** An origin with run r1 of a project holding `bytes` random bytes, and a stand-in cache before it that sends its blobs at `pace`. */
async function pacedCacheBefore(t: Test, bytes: number, pace: Pace) {
  const { dir, origin } = await originWithRun(t, 'blob.bin', randomBytes(bytes));
  const cache = await pacedProxy(t, origin.url, (path) => path.startsWith('/cas/'), pace);
  const pull = (cacheTimeoutMs: number) => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      pullWithFallback({ urls: [cache, origin.url], project: 'demo', run: 'r1', dest: join(dir, 'dest'), cacheTimeoutMs }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('still pulling after 15 s')), 15_000))),
    ]).finally(() => clearTimeout(timer)); // a pending timer would keep the file's process alive 15 s
  };
  return { origin, cache, pull };
}

t.test('a cache that trickles bytes, each within cacheTimeoutMs, is given up on once its rate over 2 x cacheTimeoutMs is below the floor, and the next URL serves the pull', async (t) => {
  // a byte every 100 ms: never silent for cacheTimeoutMs (500 ms), 10 bytes/s
  const { origin, cache, pull } = await pacedCacheBefore(t, 64 * 1024, { bytes: 1, everyMs: 100 });
  const started = Date.now();
  const pulled = await pull(500);
  t.equal(pulled.url, origin.url, 'from the origin');
  t.match(pulled.skipped, [{ url: cache, code: 'FC_ERR_UPSTREAM_TIMEOUT', error: /slower than 16 KiB\/s over 1 s/ }], 'the cache was given up on for its rate');
  t.ok(Date.now() - started < 8000, `within seconds (${Date.now() - started} ms)`);
});

t.test('a cache on a healthy slow link (4 x the floor, for longer than the window) is not given up on', async (t) => {
  // 8 KiB every 125 ms: 64 KiB/s for about 2.5 s, the floor's window 1 s
  const { cache, pull } = await pacedCacheBefore(t, 160 * 1024, { bytes: 8 * 1024, everyMs: 125 });
  const pulled = await pull(500);
  t.equal(pulled.url, cache, 'from the cache');
  t.same(pulled.skipped, []);
});

/** An origin, and an empty project beside it with the options its pushes share. */
async function originProject(t: Test) {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const project = join(dir, 'project');
  mkdirSync(project);
  return { dir, origin, project, common: { dir: project, project: 'demo', origin: origin.url, token: origin.token, baseCache: join(dir, 'bases') } };
}

t.test("a cache that serves a wrong object larger than the blob: cut at the blob's size, and the next URL serves the pull (the machine's disk is not filled first)", { skip: process.getuid?.() === 0 ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, origin, project, common } = await originProject(t);
  writeFileSync(join(project, 'blob.bin'), randomBytes(256 * 1024));
  await pushProject({ ...common, run: 'r1' });
  writeFileSync(join(project, 'new.bin'), randomBytes(1024));
  const pushed = await pushProject({ ...common, run: 'r2' });
  const deltaPath = `/cas/sha256/${pushed.manifest.delta!.digest.slice('sha256:'.length)}`;
  // Passes everything on from the origin but the delta, for which it sends 64 MiB of other bytes.
  const HUGE = 64 << 20;
  const sent: number[] = [];
  const wrong = createServer((req, res) => {
    if (req.url !== deltaPath) {
      void request(`${origin.url}${req.url}`).then(async (up) => res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type']) }).end(Buffer.from(await up.body.arrayBuffer())));
      return;
    }
    res.writeHead(200, { 'content-length': String(HUGE) });
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const n = sent.push(0) - 1;
    const more = (): void => {
      while (sent[n]! < HUGE && !res.destroyed) {
        sent[n]! += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  const wrongUrl = await serveOnLoopback(t, wrong);
  // the machine's temporary files on a disk smaller than the wrong object
  const disk = mountTmpfs('16m', 'pull-wrong');
  t.teardown(() => disk.unmount());
  const res = await runAgentHere('pull', { urls: [wrongUrl, origin.url], project: 'demo', run: 'r2', dest: join(dir, 'dest'), workDir: disk.dir });
  t.equal(res.code, 0, 'exit status 0', { stderr: res.stderr, answer: res.json });
  t.match(res.json, { ok: true, url: origin.url, skipped: [{ url: wrongUrl, code: 'FC_ERR_SIZE_MISMATCH' }] });
  t.equal(sent.length, 2, 'asked twice: once more with no-cache');
  t.ok(sent.every((bytes) => bytes < 16 << 20), `each download was cut before it could fill the disk (${sent.join(', ')} bytes sent, counting what the sockets buffered)`);
  t.same(describeTree(join(dir, 'dest')), describeTree(project));
});

t.test("a cache that answers with another run's manifest is passed over: the pull does not rebuild that run's tree", async (t) => {
  const { dir, origin, project, common } = await originProject(t);
  writeFileSync(join(project, 'a.txt'), 'run 1\n');
  await pushProject({ ...common, run: 'r1' });
  writeFileSync(join(project, 'a.txt'), 'run 2\n');
  await pushProject({ ...common, run: 'r2' });
  // Passes everything on from the origin, but answers for run r2 with run r1's manifest.
  const wrong = createServer((req, res) => {
    const path = req.url === '/projects/demo/runs/r2' ? '/projects/demo/runs/r1' : req.url;
    void request(`${origin.url}${path}`).then(async (up) => res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type']) }).end(Buffer.from(await up.body.arrayBuffer())));
  });
  const wrongUrl = await serveOnLoopback(t, wrong);
  const res = await runAgentHere('pull', { urls: [wrongUrl, origin.url], project: 'demo', run: 'r2', dest: join(dir, 'dest') });
  t.equal(res.code, 0, 'exit status 0', { stderr: res.stderr });
  t.match(res.json, { ok: true, url: origin.url, skipped: [{ url: wrongUrl, code: 'FC_ERR_BAD_REQUEST', error: /not the run manifest asked for \(it names project "demo", run "r1"\)/ }] });
  t.equal(readFileSync(join(dir, 'dest', 'a.txt'), 'utf8'), 'run 2\n', "run r2's tree");
});

t.test('a full disk ends the pull with FC_ERR_INSUFFICIENT_STORAGE naming the disk: the working directory of the tars, or the project path (left empty)', { skip: process.getuid?.() === 0 ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, origin, project, common } = await originProject(t);
  writeFileSync(join(project, 'blob.bin'), randomBytes(1 << 20));
  await pushProject({ ...common, run: 'r1' });
  writeFileSync(join(project, 'new.bin'), randomBytes(64 * 1024));
  await pushProject({ ...common, run: 'r2' });
  // both disks smaller than the tar
  const disk = mountTmpfs('512k', 'pull-full');
  t.teardown(() => disk.unmount());
  const exit = ERROR_CODES.FC_ERR_INSUFFICIENT_STORAGE.exit;

  const work = await runAgentHere('pull', { urls: [origin.url], project: 'demo', run: 'r2', dest: join(dir, 'dest'), workDir: disk.dir });
  t.equal(work.code, exit, `exit status ${exit}`, { stderr: work.stderr });
  t.match(work.json, { ok: false, code: 'FC_ERR_INSUFFICIENT_STORAGE', error: `no room left in ${disk.dir} for the pull's base, delta and tar (its working directory: TMPDIR, or the agent's workDir) (full, or over a quota or file size limit)` });
  t.same(readdirSync(disk.dir), [], 'no partial file left in the working directory');
  t.same(readdirSync(join(dir, 'dest')), [], 'nothing unpacked');

  const dest = join(disk.dir, 'dest');
  const tree = await runAgentHere('pull', { urls: [origin.url], project: 'demo', run: 'r2', dest, workDir: join(dir, 'work') });
  t.equal(tree.code, exit, `exit status ${exit}`, { stderr: tree.stderr });
  t.match(tree.json, { ok: false, code: 'FC_ERR_INSUFFICIENT_STORAGE', error: `no room left in ${dest} to unpack the project into (full, or over a quota or file size limit)` });
  t.same(readdirSync(dest), [], 'the part unpacked is removed: the project path is empty again');
  t.same(readdirSync(join(dir, 'work')), [], 'the tars are removed');
});
