// A real origin process killed (SIGKILL) after a named upload stored its blob and before it
// wrote the name: the mark the upload wrote before the blob became visible (naming-marks.ts)
// lets a prune after the restart free that blob, unless a name points at it by then. The
// moment is exact: strace, attached to the origin by PID, sends the SIGKILL as the origin
// enters the rename that would put the name's record in place (names.ts), the only rename
// a named upload makes. Likewise for a name uploaded again, killed once its new record is in
// place and before the record that the blob it pointed at is named by nothing: strace kills
// it as it enters the mkdir of that record's directory, chosen by path (-P), which strace
// matches on a mkdir's path but on a rename's first (the temp file's random name) only; a
// count of renames (`when=2`) is no kill point, strace keeps it per thread and libuv's pool
// runs them on any of its four. The mark of that blob, written with the new record, lets the
// prune free it. On the disk store and on S3 (s3rver): the marks live in the data directory
// either way.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { replacedRecord } from '../../src/origin/context.js';
import { RECENT_MS } from '../../src/origin/references.js';
import { Retention } from '../../src/origin/retention.js';
import type { BlobStore } from '../../src/store/blob-store.js';
import { DiskBlobStore } from '../../src/store/disk.js';
import { NameStore } from '../../src/store/names.js';
import { S3BlobStore } from '../../src/store/s3.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { startServerProcess } from '../helpers/processes.js';
import { attachStrace } from '../helpers/strace.js';
import { startS3rver, s3StorageYaml, S3RVER_CREDENTIALS } from '../helpers/s3rver.js';

const DAY = 86_400_000;
const AUTH = { authorization: `Bearer ${TEST_TOKEN}` };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function put(url: string, body: Buffer): Promise<number> {
  const res = await request(url, { method: 'PUT', headers: AUTH, body });
  await res.body.dump();
  return res.statusCode;
}

async function body(url: string): Promise<string> {
  const res = await request(url, { headers: AUTH });
  return res.body.text();
}

async function status(url: string): Promise<number> {
  const res = await request(url, { headers: AUTH });
  await res.body.dump();
  return res.statusCode;
}

/** How an origin process is started on the store under test: its CLI arguments and environment. */
interface Setup {
  readonly args: string[];
  /** Its data directory (the marks, the names). */
  readonly dataDir: string;
  readonly env: NodeJS.ProcessEnv;
  /** The store a restarted (in-process) origin on the same data directory reads. */
  readonly store: () => BlobStore;
}

/**
 * Where strace kills the origin: as it enters its first rename from then on, the one that
 * would put `name`'s record in place (`name`); or, `name` pointing at other bytes before, as
 * it enters the mkdir of the directory of the record that those bytes are named by nothing
 * any more (`replaced`, context.ts replacedRecord), the first system call of that record's
 * write (names.ts put) once the name's is done.
 */
type KillAt = { readonly at: 'name' } | { readonly at: 'replaced'; readonly digest: string };

/** strace's options to kill at `kill` an origin whose data directory is `dataDir`. */
function killOptions(dataDir: string, kill: KillAt): string[] {
  if (kill.at === 'name') return ['-e', 'trace=rename,link,openat', '-e', 'inject=rename:signal=KILL'];
  // -P matches the path a call is given (a rename's first, the temp file, only: hence mkdir);
  // no count of calls is needed, which strace keeps per thread (libuv's pool has four)
  const dir = dirname(new NameStore(dataDir).fileOf(replacedRecord(kill.digest)));
  return ['-P', dir, '-e', 'trace=mkdir,mkdirat', '-e', 'inject=mkdir,mkdirat:signal=KILL'];
}

/**
 * Starts an origin process, PUTs `kept.body` under `kept.path` (written whole), then PUTs
 * `body` under `name` with strace, attached by PID, killing the process at `kill`.
 */
async function killedBeforeName(t: Test, setup: Setup, kept: { path: string; body: Buffer } | undefined, name: string, body: Buffer, kill: KillAt = { at: 'name' }): Promise<string> {
  const origin = await startServerProcess(t, setup.args, setup.env);
  if (kept) t.equal(await put(origin.url + kept.path, kept.body), 201, 'a name written before the kill');
  const exited = new Promise<NodeJS.Signals | null>((resolve) => origin.child.once('exit', (_code, signal) => resolve(signal)));
  // not in t.testdir(), which a second call empties (the data directory may be there)
  const traceDir = mkdtempSync(join(tmpdir(), 'fleetcache-strace-'));
  t.teardown(() => rmSync(traceDir, { recursive: true, force: true }));
  const trace = join(traceDir, 'trace');
  await attachStrace(t, [origin.child.pid!], trace, killOptions(setup.dataDir, kill));
  await t.rejects(put(origin.url + name, body), 'the upload gets no answer: the origin is killed');
  t.equal(await exited, 'SIGKILL', kill.at === 'name' ? 'killed as it was about to record the name' : 'killed as it was about to record the blob the name pointed at before');
  return readFileSync(trace, 'utf8');
}

/** On the disk store, from a trace of the killed upload: its mark was made before its blob was linked into place. */
function markBeforeLink(t: Test, trace: string, body: Buffer): void {
  const lines = trace.split('\n');
  const mark = lines.findIndex((l) => l.includes('/naming/') && l.includes(`.sha256-${sha(body)}"`) && l.includes('O_CREAT'));
  const linked = lines.findIndex((l) => l.includes('link(') && l.includes(`/cas.v1/sha256/${sha(body).slice(0, 2)}/${sha(body)}"`));
  t.ok(mark >= 0 && linked > mark, `the mark is made (line ${mark}) before the blob is linked into place (line ${linked})`);
}

function checks(setup: (t: Test) => Promise<Setup & { disk?: boolean }>) {
  return async (t: Test) => {
    const s = await setup(t);
    const kept = Buffer.from('named before the kill\n');
    const orphan = Buffer.from('stored, never named\n');
    const again = Buffer.from('stored, never named, then uploaded again and named\n');
    const trace = await killedBeforeName(t, s, { path: '/artifacts/r/j/kept.bin', body: kept }, '/artifacts/r/j/orphan.bin', orphan);
    if (s.disk) markBeforeLink(t, trace, orphan);
    await killedBeforeName(t, s, undefined, '/artifacts/r/j/again.bin', again);
    const before = Buffer.from('what a name pointed at before it was uploaded again\n');
    const after = Buffer.from('what it points at since\n');
    const replacing = await killedBeforeName(t, s, { path: '/projects/p/bases/b1', body: before }, '/projects/p/bases/b1', after, { at: 'replaced', digest: `sha256:${sha(before)}` });
    // Two of libuv's threads may enter that mkdir at once: their lines interleave, so the
    // trace is read as "entered, none returned, killed" rather than as two adjacent lines.
    t.match(replacing, /mkdir\(.*\/_retention\/replaced\/sha256"/, 'the mkdir of the record that the blob went unnamed is entered');
    // (-P: every mkdir traced is of that path, a resumed one too)
    t.notMatch(replacing, /mkdir(at)?(\(| resumed>).*\) += -?\d/, 'and returns in no thread');
    t.match(replacing, /\+\+\+ killed by SIGKILL \+\+\+/, 'killed in that mkdir');
    t.equal(readdirSync(join(s.dataDir, 'naming')).length, 3, 'each killed upload left its mark');

    const origin = await startOrigin(t, { dataDir: s.dataDir }, s.store());
    t.equal(await status(`${origin.url}/cas/sha256/${sha(orphan)}`), 200, 'the blob of the upload killed is stored');
    t.equal(await status(`${origin.url}/artifacts/r/j/orphan.bin`), 404, 'and its name is not');
    t.equal(await body(`${origin.url}/projects/p/bases/b1`), after.toString(), 'the base uploaded again was named before the kill');
    t.equal(await origin.context.names.find(replacedRecord(`sha256:${sha(before)}`)), undefined, 'and what it pointed at before not recorded as named by nothing');
    t.equal(await put(`${origin.url}/artifacts/r/j/again.bin`, again), 201, 'the same bytes uploaded again and named after the restart');
    const marks = origin.context.marks;
    t.same(await marks.leftovers(Date.now()), [], 'a mark is not taken for a leftover until it went unmodified for a while');
    const later = Date.now() + RECENT_MS + 60_000; // past the protection of uploads after a crash (references.ts) and the idle rule
    t.same((await marks.leftovers(later)).map((m) => m.digest).sort(), [orphan, again, before].map((b) => `sha256:${sha(b)}`).sort(), 'later they all are');

    const report = await new Retention(origin.context, { maxAgeMs: 30 * DAY, keepBases: 3 }).prune({ now: later });
    t.match(report, { blobs: 2, bytes: orphan.length + before.length, failed: 0 }, 'the prune deletes two blobs');
    t.equal(await status(`${origin.url}/cas/sha256/${sha(orphan)}`), 404, 'the blob no name points at is gone');
    t.equal(await status(`${origin.url}/cas/sha256/${sha(before)}`), 404, 'so is the one the base pointed at before');
    t.equal(await status(`${origin.url}/projects/p/bases/b1`), 200, 'the base, uploaded again, stays');
    t.equal(await status(`${origin.url}/artifacts/r/j/again.bin`), 200, 'the blob named since is kept');
    t.equal(await status(`${origin.url}/artifacts/r/j/kept.bin`), 200, 'the blob named before is kept');
    t.same(readdirSync(join(s.dataDir, 'naming')), [], 'the marks are gone with the prune');
    t.equal(await put(`${origin.url}/projects/p/bases/b1`, before), 200, 'the base uploaded again, not killed');
    t.same(readdirSync(join(s.dataDir, 'naming')), [], 'leaves no mark: what it pointed at before is recorded as named by nothing');
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
