// A name whose record on disk is damaged (cut short by a crash of an older version, edited by
// hand): the server's fault, never the client's. An upload of the name replaces it (not a
// 400, not a 500), says so in the log with the name, and the blob the record named is freed
// by the next prune when its text still names it whole; text that names none leaves it.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { pushProject } from '../../src/project-upload/push.js';
import { RECENT_MS } from '../../src/origin/references.js';
import { Retention } from '../../src/origin/retention.js';
import type { NameRecord } from '../../src/store/names.js';
import { startOrigin, TEST_TOKEN, uploadBlob } from '../helpers/origin.js';
import { startServerProcess } from '../helpers/processes.js';
import { runManifest, uploadRunManifestBase } from '../helpers/run-manifest.js';
import { attachStrace } from '../helpers/strace.js';
import { eventually } from '../helpers/wait.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

async function put(url: string, body: string): Promise<string> {
  const res = await request(url, { method: 'PUT', body, headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  const answer = (await res.body.json()) as { code?: string };
  return `${res.statusCode}${answer.code ? ` ${answer.code}` : ''}`;
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await request(url);
  return { status: res.statusCode, text: await res.body.text() };
}

/**
 * Three artifacts r/j/<name> (ASCII names: the record's file is the name), each uploaded once
 * and its record then damaged: `cut` short after its digest field, `edited` with a digest
 * that is none, `stub` cut before its digest field.
 */
const DAMAGED = {
  cut: (first: string) => `{"digest":"sha256:${sha(first)}","size":${first.length},"crea`,
  edited: (first: string) => `{"digest":"sha256:edited-by-hand","size":${first.length},"created":1}`,
  stub: () => '{"dig',
};

async function uploadAndDamage(url: string, dataDir: string, t: Test): Promise<Record<keyof typeof DAMAGED, string>> {
  const firsts = {} as Record<keyof typeof DAMAGED, string>;
  for (const [name, damage] of Object.entries(DAMAGED) as Array<[keyof typeof DAMAGED, (first: string) => string]>) {
    const first = `the first upload of ${name}\n`;
    t.equal(await put(`${url}/artifacts/r/j/${name}`, first), '201', `${name}: uploaded`);
    writeFileSync(join(dataDir, 'names.v1', 'artifacts', 'r', 'j', `${name}.rec.json`), damage(first));
    firsts[name] = first;
  }
  return firsts;
}

t.test('an upload replaces a damaged record; the blob it named goes with the next prune when its text still names it', async (t) => {
  const origin = await startOrigin(t);
  const firsts = await uploadAndDamage(origin.url, origin.dataDir, t);
  for (const name of Object.keys(DAMAGED)) {
    const url = `${origin.url}/artifacts/r/j/${name}`;
    const damaged = await request(url);
    t.same([damaged.statusCode, ((await damaged.body.json()) as { code: string }).code], [500, 'FC_ERR_INTERNAL'], `${name}: a GET is the server's error`);
    t.equal(await put(url, `the second upload of ${name}\n`), '200', `${name}: the upload replaces it`);
    t.same(await get(url), { status: 200, text: `the second upload of ${name}\n` }, `${name}: the name names the new upload`);
  }
  const retention = new Retention(origin.context, { maxAgeMs: 30 * 86_400_000, keepBases: 3 });
  t.match(await retention.prune({ now: Date.now() + RECENT_MS + 60_000 }), { blobs: 1, bytes: firsts.cut.length, failed: 0 }, 'one blob freed');
  t.equal((await get(`${origin.url}/cas/sha256/${sha(firsts.cut)}`)).status, 404, 'the blob the cut record still named');
  for (const name of ['edited', 'stub'] as const) t.equal((await get(`${origin.url}/cas/sha256/${sha(firsts[name])}`)).status, 200, `${name}: its blob is not known, so stays`);
  for (const name of Object.keys(DAMAGED)) t.equal((await get(`${origin.url}/artifacts/r/j/${name}`)).status, 200, `${name}: the name stays`);
});

t.test('the upload that replaces a damaged record says so in the log, with the name and what becomes of its blob, and reads the record once in its lock', async (t) => {
  const dataDir = t.testdir();
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', dataDir], { FLEETCACHE_TOKEN: TEST_TOKEN, FLEETCACHE_LOG_LEVEL: 'warn' });
  const firsts = await uploadAndDamage(origin.url, dataDir, t);
  // strace, attached by PID, sees each open of the records (-P): the upload's check before its
  // body, and its check in the name's lock, whose text tells the blob it replaces (a sound
  // record's too: the same read)
  const files = Object.keys(DAMAGED).map((name) => join(dataDir, 'names.v1', 'artifacts', 'r', 'j', `${name}.rec.json`));
  const traceDir = mkdtempSync(join(tmpdir(), 'fleetcache-strace-'));
  t.teardown(() => rmSync(traceDir, { recursive: true, force: true }));
  const detach = await attachStrace(t, [origin.child.pid!], join(traceDir, 'trace'), [...files.flatMap((f) => ['-P', f]), '-e', 'trace=openat']);
  for (const name of Object.keys(DAMAGED)) t.equal(await put(`${origin.url}/artifacts/r/j/${name}`, `again ${name}`), '200', `${name}: replaced`);
  await detach();
  const trace = readFileSync(join(traceDir, 'trace'), 'utf8');
  for (const file of files) t.equal(trace.split('\n').filter((l) => l.includes(`openat(AT_FDCWD, "${file}"`)).length, 2, `${file}: opened twice, before the body and once in the lock`);
  const said = (name: string) => origin.stderr().split('\n').filter((l) => l.includes(`"name":"artifacts/r/j/${name}"`)).map((l) => JSON.parse(l) as { level: number; msg: string; digest?: string });
  await eventually('a line for each damaged record', () => Object.keys(DAMAGED).every((name) => said(name).length > 0));
  t.match(said('cut'), [{ level: 40, digest: `sha256:${sha(firsts.cut)}`, msg: /is damaged \(Unterminated string in JSON[^)]*\); this upload replaces it\. The blob it named, sha256:\w+ \(read from its text\), is freed by the next prune/ }]);
  t.match(said('edited'), [{ level: 40, msg: /is damaged \(not a name record[^)]*\)\); this upload replaces it\. It names no blob that can be read: the blob it pointed at, if still stored, is freed by no prune/ }]);
  t.match(said('stub'), [{ level: 40, msg: /names\.v1\/artifacts\/r\/j\/stub\.rec\.json, is damaged .* freed by no prune/ }]);
  for (const name of Object.keys(DAMAGED)) t.equal(said(name).length, 1, `${name}: said once`);
  await origin.stop();
});

/** A PUT of `body` with `conditions`: its status, code and message. */
async function conditionalPut(url: string, body: string, conditions: Record<string, string>): Promise<{ status: number; code?: string; message?: string }> {
  const res = await request(url, { method: 'PUT', body, headers: { authorization: `Bearer ${TEST_TOKEN}`, ...conditions } });
  const answer = (await res.body.json()) as { code?: string; message?: string };
  return { status: res.statusCode, ...(answer.code ? { code: answer.code, message: answer.message } : {}) };
}

t.test('a conditional PUT of a name whose record is damaged: no ETag, so If-Match of one and If-None-Match: * are 412, If-Match: * and If-None-Match of a tag replace it', async (t) => {
  const origin = await startOrigin(t);
  const firsts = await uploadAndDamage(origin.url, origin.dataDir, t);
  const runPath = '/projects/p/runs/r1';
  t.equal(await put(`${origin.url}${runPath}`, JSON.stringify(await uploadRunManifestBase(origin.url, 'p', 'r1'))), '201', 'a run manifest uploaded');
  const runFile = join(origin.dataDir, 'names.v1', 'projects', 'p', 'runs', 'r1.rec.json');
  writeFileSync(runFile, readFileSync(runFile, 'utf8').slice(0, 40));
  const refused = { status: 412, code: 'FC_ERR_PRECONDITION_FAILED', message: /the name's record is damaged .*so it has no ETag; a PUT without If-Match and If-None-Match, or with If-Match: \*, replaces it/ };
  const runBody = JSON.stringify(await uploadRunManifestBase(origin.url, 'p', 'r1', 'again'));
  const names = [
    ...Object.keys(DAMAGED).map((name) => ({ path: `/artifacts/r/j/${name}`, file: join(origin.dataDir, 'names.v1', 'artifacts', 'r', 'j', `${name}.rec.json`), body: `${name}, replaced` })),
    { path: runPath, file: runFile, body: runBody },
  ];
  for (const { path, file, body } of names) {
    const text = readFileSync(file, 'utf8');
    t.match(await conditionalPut(`${origin.url}${path}`, body, { 'if-match': `"sha256:${sha(firsts.cut)}"` }), { ...refused, message: new RegExp(`^If-Match: .*${refused.message.source}`) }, `${path}: If-Match of a tag`);
    // a run pushed once more with its id: push's If-None-Match: * says it exists
    t.match(await conditionalPut(`${origin.url}${path}`, body, { 'if-none-match': '*' }), { ...refused, message: new RegExp(`^If-None-Match: \\*: .*${refused.message.source}`) }, `${path}: If-None-Match: *`);
    t.equal(readFileSync(file, 'utf8'), text, `${path}: the refused PUTs left it as it was`);
    t.equal((await get(`${origin.url}${path}`)).status, 500, `${path}: a GET still fails`);
  }
  const [cut, edited, stub, run] = names as [typeof names[0], typeof names[0], typeof names[0], typeof names[0]];
  t.match(await conditionalPut(`${origin.url}${cut.path}`, cut.body, { 'if-match': '*' }), { status: 200 }, 'If-Match: * holds: the record exists');
  t.match(await conditionalPut(`${origin.url}${edited.path}`, edited.body, { 'if-none-match': `"sha256:${sha(firsts.edited)}"` }), { status: 200 }, 'If-None-Match of a tag holds: the record has none');
  t.match(await conditionalPut(`${origin.url}${stub.path}`, stub.body, { 'if-none-match': '"x"' }), { status: 200 }, 'If-None-Match of another tag too');
  t.match(await conditionalPut(`${origin.url}${run.path}`, run.body, { 'if-match': '*' }), { status: 200 }, 'the run manifest replaced');
  for (const { path, body } of names) t.same(await get(`${origin.url}${path}`), { status: 200, text: body }, `${path}: the name names what replaced it`);
});

t.test('a prune skips a record with a digest edited by hand, says so, and frees the other blobs as it would', async (t) => {
  const origin = await startOrigin(t);
  const { names } = origin.context;
  const old = Date.now() - 40 * 86_400_000;
  const bodies = ['the first old log\n', 'the second old log\n', 'the edited one\n'];
  for (const [i, body] of bodies.entries()) {
    t.equal(await put(`${origin.url}/artifacts/r/j/f${i}`, body), '201');
    const record = await names.get<NameRecord>(['artifacts', 'r', 'j', `f${i}`]);
    await names.put(['artifacts', 'r', 'j', `f${i}`], { ...record, created: old, ...(i === 2 ? { digest: 'sha256:edited-by-hand' } : {}) });
  }
  const edited = join(origin.dataDir, 'names.v1', 'artifacts', 'r', 'j', 'f2.rec.json');
  const text = readFileSync(edited, 'utf8');
  const warnings: string[] = [];
  const retention = new Retention(origin.context, { maxAgeMs: 30 * 86_400_000, keepBases: 3 }, pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) }));
  // uploaded minutes ago: their blobs wait in the list of the freed for the next prune
  t.match(await retention.prune(), { names: { artifacts: 2 }, blobs: 0, heldBack: 2, failed: 0 }, 'the sound names go, their blobs held back');
  t.match(await retention.prune({ now: Date.now() + RECENT_MS + 60_000 }), { blobs: 2, failed: 0 }, 'the next prune frees them');
  for (const body of bodies.slice(0, 2)) t.equal((await get(`${origin.url}/cas/sha256/${sha(body)}`)).status, 404, `${body.trim()}: deleted`);
  t.equal((await get(`${origin.url}/cas/sha256/${sha(bodies[2]!)}`)).status, 200, 'the blob the edited record named is not known: kept');
  t.equal(readFileSync(edited, 'utf8'), text, 'the edited record is left as it is');
  const said = warnings.map((w) => JSON.parse(w) as { name?: string; file?: string; msg: string }).filter((w) => w.name === 'artifacts/r/j/f2');
  t.equal(said.length, 2, 'said by each prune');
  t.match(said[0], { file: edited, msg: /does not name a blob as a record does .*skipped/ });
  t.notOk(warnings.some((w) => w.includes('is damaged')), 'the list of the freed is not damaged by it');
});

t.test('a prune skips a run manifest whose base digest was edited by hand, says so, and keeps the blob it still names whole', async (t) => {
  const origin = await startOrigin(t);
  const { names } = origin.context;
  const base = Buffer.from('the base tar\n');
  const [delta, otherDelta] = [Buffer.from('the delta of r1\n'), Buffer.from('the delta of r2\n')];
  await uploadBlob(origin.url, base);
  // the deltas stored as artifacts that expire with the runs: their only other names
  for (const [i, d] of [delta, otherDelta].entries()) t.equal(await put(`${origin.url}/artifacts/r/j/d${i}`, d.toString()), '201');
  for (const [run, d] of [['r1', delta], ['r2', otherDelta]] as const) t.equal(await put(`${origin.url}/projects/p/runs/${run}`, JSON.stringify(runManifest('p', run, base, { delta: d }))), '201', `${run}: uploaded`);
  const edited = ['projects', 'p', 'runs', 'r1'];
  const manifest = await names.get<{ base: object }>(edited);
  await names.put(edited, { ...manifest, base: { ...manifest.base, digest: 'sha256:edited-by-hand' } });
  const file = names.fileOf(edited);
  const text = readFileSync(file, 'utf8');
  const warnings: string[] = [];
  const retention = new Retention(origin.context, { maxAgeMs: 30 * 86_400_000, keepBases: 3 }, pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) }));
  // 40 days on: every name is due, and no blob held back as just uploaded
  const report = await retention.prune({ now: Date.now() + 40 * 86_400_000 });
  t.match(report, { names: { artifacts: 2, runs: 1 }, blobs: 2, bytes: base.length + otherDelta.length, failed: 0 }, 'the artifacts and the sound run go, with the base and the delta of r2');
  for (const [what, bytes, status] of [['the base', base, 404], ['the delta of r2', otherDelta, 404], ['the delta the edited run names whole', delta, 200]] as const) {
    t.equal((await get(`${origin.url}/cas/sha256/${sha(bytes.toString())}`)).status, status, `${what}: ${status === 200 ? 'kept' : 'deleted'}`);
  }
  t.equal(readFileSync(file, 'utf8'), text, 'the edited run manifest is left as it is');
  const said = warnings.map((w) => JSON.parse(w) as { name?: string; file?: string; msg: string }).filter((w) => w.name === 'projects/p/runs/r1');
  t.match(said, [{ file, msg: /does not name a blob as a record does .*skipped/ }], 'said once, with its name and file');
});

t.test('the bases listing leaves out a base whose digest was edited by hand, says so, and a push goes on', async (t) => {
  const dataDir = t.testdir();
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', join(dataDir, 'origin')], { FLEETCACHE_TOKEN: TEST_TOKEN, FLEETCACHE_LOG_LEVEL: 'warn' });
  for (const id of ['b1', 'b2']) t.equal(await put(`${origin.url}/projects/p/bases/${id}`, `tar ${id}`), '201', `${id}: uploaded`);
  const file = join(dataDir, 'origin', 'names.v1', 'projects', 'p', 'bases', 'b1.rec.json');
  writeFileSync(file, readFileSync(file, 'utf8').replace(/"sha256:[0-9a-f]+"/, '"sha256:edited-by-hand"'));
  const listing = await get(`${origin.url}/projects/p/bases/`);
  t.equal(listing.status, 200);
  t.same((JSON.parse(listing.text) as { bases: Array<{ id: string }> }).bases.map((b) => b.id), ['b2'], 'the sound base alone');
  await eventually('the log names it', () => origin.stderr().includes('"name":"projects/p/bases/b1"'));
  t.match(origin.stderr(), `left out of the listing`);
  t.match(origin.stderr(), file);

  const project = join(dataDir, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'a.txt'), 'a project\n');
  const pushed = await pushProject({ dir: project, project: 'p', origin: origin.url, token: TEST_TOKEN, baseCache: join(dataDir, 'bases'), run: 'r1' });
  t.ok(pushed.rebased, 'the push stores a base of its own');
  await origin.stop();
});
