// A real origin process killed (SIGKILL) after a named upload stored its blob and before it
// wrote the name: the mark the upload wrote before the blob became visible (naming-marks.ts)
// lets a prune after the restart free that blob, unless a name points at it by then. The
// moment is exact: strace, attached to the origin by PID, sends the SIGKILL as the origin
// enters the rename that would put the name's record in place (names.ts), the only rename
// a named upload makes. On the disk store and on S3 (s3rver): the marks live in the data
// directory either way.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { RECENT_MS } from '../../src/origin/references.js';
import { Retention } from '../../src/origin/retention.js';
import type { BlobStore } from '../../src/store/blob-store.js';
import { DiskBlobStore } from '../../src/store/disk.js';
import { S3BlobStore } from '../../src/store/s3.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { startServerProcess, stopWithTest } from '../helpers/processes.js';
import { startS3rver, s3StorageYaml, S3RVER_CREDENTIALS } from '../helpers/s3rver.js';

const DAY = 86_400_000;
const AUTH = { authorization: `Bearer ${TEST_TOKEN}` };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function put(url: string, body: Buffer): Promise<number> {
  const res = await request(url, { method: 'PUT', headers: AUTH, body });
  await res.body.dump();
  return res.statusCode;
}

async function status(url: string): Promise<number> {
  const res = await request(url, { headers: AUTH });
  await res.body.dump();
  return res.statusCode;
}

/** How an origin process is started on the store under test: its CLI arguments and environment. */
interface Setup {
  readonly args: string[];
  readonly env: NodeJS.ProcessEnv;
  /** The store a restarted (in-process) origin on the same data directory reads. */
  readonly store: () => BlobStore;
}

/**
 * Starts an origin process, PUTs `named` under `${kept}` (written whole), then PUTs `body`
 * under `name` with strace killing the process as it enters its first rename from then on:
 * the one that would record `name`.
 */
async function killedBeforeName(t: Test, setup: Setup, kept: { path: string; body: Buffer } | undefined, name: string, body: Buffer): Promise<string> {
  const origin = await startServerProcess(t, setup.args, setup.env);
  if (kept) t.equal(await put(origin.url + kept.path, kept.body), 201, 'a name written before the kill');
  const exited = new Promise<NodeJS.Signals | null>((resolve) => origin.child.once('exit', (_code, signal) => resolve(signal)));
  // not in t.testdir(), which a second call empties (the data directory may be there)
  const traceDir = mkdtempSync(join(tmpdir(), 'fleetcache-strace-'));
  t.teardown(() => rmSync(traceDir, { recursive: true, force: true }));
  const trace = join(traceDir, 'trace');
  const tracer = spawn('strace', ['-f', '-p', String(origin.child.pid), '-o', trace, '-e', 'trace=rename,link,openat', '-e', 'inject=rename:signal=KILL'], { stdio: ['ignore', 'ignore', 'pipe'] });
  stopWithTest(t, tracer);
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`strace did not attach within 20 s: ${err}`)), 20_000);
    tracer.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      if (/attached/.test(err)) { clearTimeout(timer); resolve(); }
    });
  });
  await t.rejects(put(origin.url + name, body), 'the upload gets no answer: the origin is killed');
  t.equal(await exited, 'SIGKILL', 'killed as it was about to record the name');
  return readFileSync(trace, 'utf8');
}

/** On the disk store, from a trace of the killed upload: its mark was made before its blob was linked into place. */
function markBeforeLink(t: Test, trace: string, body: Buffer): void {
  const lines = trace.split('\n');
  const mark = lines.findIndex((l) => l.includes('/naming/') && l.includes(`.sha256-${sha(body)}"`) && l.includes('O_CREAT'));
  const linked = lines.findIndex((l) => l.includes('link(') && l.includes(`/cas.v1/sha256/${sha(body).slice(0, 2)}/${sha(body)}"`));
  t.ok(mark >= 0 && linked > mark, `the mark is made (line ${mark}) before the blob is linked into place (line ${linked})`);
}

function checks(setup: (t: Test) => Promise<Setup & { dataDir: string; disk?: boolean }>) {
  return async (t: Test) => {
    const s = await setup(t);
    const kept = Buffer.from('named before the kill\n');
    const orphan = Buffer.from('stored, never named\n');
    const again = Buffer.from('stored, never named, then uploaded again and named\n');
    const trace = await killedBeforeName(t, s, { path: '/artifacts/r/j/kept.bin', body: kept }, '/artifacts/r/j/orphan.bin', orphan);
    if (s.disk) markBeforeLink(t, trace, orphan);
    await killedBeforeName(t, s, undefined, '/artifacts/r/j/again.bin', again);
    t.equal(readdirSync(join(s.dataDir, 'naming')).length, 2, 'each killed upload left its mark');

    const origin = await startOrigin(t, { dataDir: s.dataDir }, s.store());
    t.equal(await status(`${origin.url}/cas/sha256/${sha(orphan)}`), 200, 'the blob of the upload killed is stored');
    t.equal(await status(`${origin.url}/artifacts/r/j/orphan.bin`), 404, 'and its name is not');
    t.equal(await put(`${origin.url}/artifacts/r/j/again.bin`, again), 201, 'the same bytes uploaded again and named after the restart');
    const marks = origin.context.marks;
    t.same(await marks.leftovers(Date.now()), [], 'a mark is not taken for a leftover until it went unmodified for a while');
    const later = Date.now() + RECENT_MS + 60_000; // past the protection of uploads after a crash (references.ts) and the idle rule
    t.same((await marks.leftovers(later)).map((m) => m.digest).sort(), [`sha256:${sha(orphan)}`, `sha256:${sha(again)}`].sort(), 'later both are');

    const report = await new Retention(origin.context, { maxAgeMs: 30 * DAY, keepBases: 3 }).prune({ now: later });
    t.match(report, { blobs: 1, bytes: orphan.length, failed: 0 }, 'the prune deletes one blob');
    t.equal(await status(`${origin.url}/cas/sha256/${sha(orphan)}`), 404, 'the blob no name points at is gone');
    t.equal(await status(`${origin.url}/artifacts/r/j/again.bin`), 200, 'the blob named since is kept');
    t.equal(await status(`${origin.url}/artifacts/r/j/kept.bin`), 200, 'the blob named before is kept');
    t.same(readdirSync(join(s.dataDir, 'naming')), [], 'the marks are gone with the prune');
  };
}

t.test('on the disk store: a blob stored for a name by an origin killed before it wrote the name is freed by a prune after the restart', checks(async (t) => {
  const dataDir = t.testdir();
  return {
    dataDir,
    disk: true,
    args: ['origin', '--listen', '127.0.0.1:0', '--data', dataDir],
    env: { FLEETCACHE_TOKEN: TEST_TOKEN, FLEETCACHE_LOG_LEVEL: 'warn' },
    store: () => new DiskBlobStore(dataDir),
  };
}));

t.test('on S3: the same', checks(async (t) => {
  const s3 = await startS3rver(t);
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const config = join(dir, 'origin.yaml');
  writeFileSync(config, ['listen: 127.0.0.1:0', `data: ${dataDir}`, 'logLevel: warn', ...s3StorageYaml(s3.endpoint, s3.bucket), ''].join('\n'));
  return {
    dataDir,
    args: ['origin', '--config', config],
    env: { FLEETCACHE_TOKEN: TEST_TOKEN, TEST_S3_KEY: S3RVER_CREDENTIALS.accessKeyId, TEST_S3_SECRET: S3RVER_CREDENTIALS.secretAccessKey },
    store: () => new S3BlobStore({ bucket: s3.bucket, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS }),
  };
}));
