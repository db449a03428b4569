// Retention: a prune deletes the names older than maxAge (artifacts, run manifests, bases
// beyond the newest keepBases and those no kept run names), then the blobs only they named;
// never a blob a kept name, a tooltool upload alone or an internal upload accounts for.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { BlobReferences } from '../../src/origin/references.js';
import { Retention, type PruneReport } from '../../src/origin/retention.js';
import { DiskBlobStore } from '../../src/store/disk.js';
import { parseDigestString } from '../../src/store/digest.js';
import type { NameRecord } from '../../src/store/names.js';
import { startOrigin, uploadBlob, TEST_TOKEN, type TestOrigin } from '../helpers/origin.js';
import { runManifest } from '../helpers/run-manifest.js';
import { eventually } from '../helpers/wait.js';

const DAY = 86_400_000;
const auth = { authorization: `Bearer ${TEST_TOKEN}` };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function status(url: string): Promise<number> {
  const res = await request(url);
  await res.body.dump();
  return res.statusCode;
}

async function put(url: string, body: Buffer | string, headers: Record<string, string> = {}): Promise<void> {
  const res = await request(url, { method: 'PUT', headers: { ...auth, ...headers }, body });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`PUT ${url}: ${res.statusCode} ${text}`);
}

/** Dates a blob name's record back to `created` (the origin dates it at upload). */
async function backdate(origin: TestOrigin, segments: string[], created: number): Promise<void> {
  const record = await origin.context.names.get<NameRecord>(segments);
  await origin.context.names.put(segments, { ...record, created });
}

/** A project with old and new runs, bases and artifacts; returns what each part's blob is. */
async function fleetHistory(origin: TestOrigin, now: number) {
  const old = now - 40 * DAY;
  const blob = (s: string) => Buffer.from(`${s} `.repeat(50));
  const bases = ['b1', 'b2', 'b3', 'b4'].map((id) => ({ id, bytes: blob(`base ${id}`) }));
  for (const [i, b] of bases.entries()) {
    await put(`${origin.url}/projects/p/bases/${b.id}`, b.bytes);
    await backdate(origin, ['projects', 'p', 'bases', b.id], old - (10 - i) * DAY); // b4 newest, all old
  }
  const deltaOld = blob('delta of the old run');
  const deltaNew = blob('delta of the new run');
  await uploadBlob(origin.url, deltaOld);
  await uploadBlob(origin.url, deltaNew);
  const oldRun = { ...runManifest('p', 'r-old', bases[0]!.bytes, { baseId: 'b1', delta: deltaOld }), created: new Date(old).toISOString() };
  const newRun = { ...runManifest('p', 'r-new', bases[1]!.bytes, { baseId: 'b2', delta: deltaNew }), created: new Date(now).toISOString() };
  for (const m of [oldRun, newRun]) await put(`${origin.url}/projects/p/runs/${m.run}`, JSON.stringify(m), { 'content-type': 'application/json' });

  const logOld = blob('log of the old run');
  const logNew = blob('log of the new run');
  const internal = blob('an internal asset');
  const asset = blob('a tooltool asset');
  await put(`${origin.url}/artifacts/r-old/job/log.txt`, logOld);
  await put(`${origin.url}/artifacts/r-old/job/copy.txt`, logNew); // same bytes as a kept artifact
  await put(`${origin.url}/cas/sha256/${sha(internal)}`, internal, { 'x-fleetcache-visibility': 'internal' });
  await put(`${origin.url}/artifacts/r-old/job/tool.bin`, internal);
  await put(`${origin.url}/artifacts/r-new/job/log.txt`, logNew);
  await uploadBlob(origin.url, asset);
  for (const file of ['log.txt', 'copy.txt', 'tool.bin']) await backdate(origin, ['artifacts', 'r-old', 'job', file], old);
  return { bases, deltaOld, deltaNew, logOld, logNew, internal, asset };
}

t.test('a prune deletes old names and the blobs only they named, and keeps the rest', async (t) => {
  const origin = await startOrigin(t);
  const now = Date.now();
  const h = await fleetHistory(origin, now);
  const retention = new Retention(origin.context, { maxAgeMs: 30 * DAY, keepBases: 2 });
  const cas = (b: Buffer) => `${origin.url}/cas/sha256/${sha(b)}`;

  const expected = { names: { artifacts: 3, runs: 1, bases: 1 }, blobs: 3, bytes: h.logOld.length + h.deltaOld.length + h.bases[0]!.bytes.length };
  const dry = await retention.prune({ dryRun: true, now });
  t.match(dry, { dryRun: true, ...expected }, 'a dry run reports what is due');
  t.equal(await status(`${origin.url}/artifacts/r-old/job/log.txt`), 200, 'and deletes nothing');
  t.equal(await status(cas(h.deltaOld)), 200);

  const report: PruneReport = await retention.prune({ now });
  t.match(report, { dryRun: false, cutoff: new Date(now - 30 * DAY).toISOString(), ...expected });
  for (const gone of ['/artifacts/r-old/job/log.txt', '/artifacts/r-old/job/copy.txt', '/artifacts/r-old/job/tool.bin', '/projects/p/runs/r-old', '/projects/p/bases/b1']) {
    t.equal(await status(`${origin.url}${gone}`), 404, `${gone} is gone`);
  }
  for (const kept of ['/artifacts/r-new/job/log.txt', '/projects/p/runs/r-new', '/projects/p/bases/b2', '/projects/p/bases/b3', '/projects/p/bases/b4']) {
    t.equal(await status(`${origin.url}${kept}`), 200, `${kept} is kept`);
  }
  t.equal(await status(cas(h.logOld)), 404, 'the old log: only an old name named it');
  t.equal(await status(cas(h.deltaOld)), 404, "the old run's delta");
  t.equal(await status(cas(h.bases[0]!.bytes)), 404, "an old base beyond keepBases that no kept run names");
  t.equal(await status(cas(h.logNew)), 200, 'a blob an old name shared with a kept one');
  t.equal(await status(cas(h.deltaNew)), 200, "a kept run's delta");
  t.equal(await status(cas(h.bases[1]!.bytes)), 200, "an old base a kept run names (b2), beyond keepBases");
  t.equal(await status(cas(h.asset)), 200, 'a blob no name ever named (a tooltool asset)');
  const internal = await request(cas(h.internal), { headers: auth });
  await internal.body.dump();
  t.equal(internal.statusCode, 200, 'an internal upload, though only an old name named it');
  t.notOk(existsSync(join(origin.dataDir, 'names.v1', 'artifacts', 'r-old')), "the old run's emptied directories are removed");
  t.ok(existsSync(join(origin.dataDir, 'names.v1', 'artifacts', 'r-new', 'job')));

  const again = await retention.prune({ now });
  t.match(again, { names: { artifacts: 0, runs: 0, bases: 0 }, blobs: 0, bytes: 0 }, 'a second prune finds nothing due');
  const metrics = await (await request(`${origin.url}/-/metrics`)).body.text();
  t.match(metrics, /fleetcache_retention_names_deleted_total\{kind="artifacts",role="origin"\} 3/);
  t.match(metrics, new RegExp(`fleetcache_retention_bytes_deleted_total\\{role="origin"\\} ${expected.bytes}\\b`));
});

t.test('a name written again after the prune read it is kept: deleteIf deletes only a record still as read', async (t) => {
  const origin = await startOrigin(t);
  const { names } = origin.context;
  const segments = ['artifacts', 'r', 'job', 'a.txt'];
  const first = { digest: `sha256:${'1'.repeat(64)}`, size: 1, created: 1 };
  await names.put(segments, first);
  const asRead = JSON.stringify(first);
  await names.put(segments, { ...first, created: 2 }); // a PUT after the prune read it
  t.equal(await names.deleteIf<object>(segments, (current) => JSON.stringify(current) === asRead), false);
  t.match(await names.get(segments), { created: 2 }, 'the new record stays');
  t.equal(await names.deleteIf<NameRecord>(segments, (current) => current.created === 2), true);
  t.equal(await names.find(segments), undefined);
});

t.test('BlobReferences: a held or newly named digest is not deleted; a write that found a deleted blob is told to retry', async (t) => {
  const store = new DiskBlobStore(t.testdir());
  await store.open();
  const put = async (s: string) => `sha256:${(await store.put(Readable.from([Buffer.from(s)]))).digest.hex}`;
  const refs = new BlobReferences();
  const [a, b, c] = [await put('a'), await put('b'), await put('c')];
  const remove = (d: string) => () => store.delete(parseDigestString(d));
  const releaseA = refs.hold([a]);
  refs.beginPrune();
  refs.hold([b])(); // named during the prune, released at once: still kept for this prune
  t.equal(await refs.deleteUnlessNamed(a, remove(a)), false, 'held by a write in flight');
  t.equal(await refs.deleteUnlessNamed(b, remove(b)), false, 'named since the prune began');
  t.equal(await refs.deleteUnlessNamed(c, remove(c)), true, 'named by nothing');
  refs.endPrune();
  releaseA();
  await t.rejects(refs.confirm(store, [c]), { code: 'FC_ERR_UNAVAILABLE', message: /deleted by the retention prune/ }, 'a write that deduplicated against c');
  await refs.confirm(store, [a, b]);
  t.ok(await store.has(parseDigestString(a)));
  t.ok(await store.has(parseDigestString(b)));
});

t.test('POST /-/prune: a writer runs one now, or a dry run; refused without a token or a retention', async (t) => {
  const origin = await startOrigin(t, { retention: { maxAgeMs: 30 * DAY, keepBases: 3, intervalMs: 0 } });
  await put(`${origin.url}/artifacts/r/job/a.txt`, Buffer.from('a'));
  await backdate(origin, ['artifacts', 'r', 'job', 'a.txt'], Date.now() - 40 * DAY);
  const post = async (o: TestOrigin, query: string, headers: Record<string, string> = auth) => {
    const res = await request(`${o.url}/-/prune${query}`, { method: 'POST', headers });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };
  t.equal((await post(origin, '', {})).status, 401, 'no token');
  t.match(await post(origin, '?dry-run=1'), { status: 200, body: { dryRun: true, names: { artifacts: 1 }, blobs: 1, bytes: 1 } });
  t.equal(await status(`${origin.url}/artifacts/r/job/a.txt`), 200, 'a dry run deletes nothing');
  t.match(await post(origin, ''), { status: 200, body: { dryRun: false, names: { artifacts: 1 }, blobs: 1 } });
  t.equal(await status(`${origin.url}/artifacts/r/job/a.txt`), 404);
  const without = await startOrigin(t, { dataDir: join(origin.dataDir, 'other') });
  t.match(await post(without, ''), { status: 404, body: { code: 'FC_ERR_NOT_FOUND', message: /no retention is configured/ } });
});

t.test('with an interval, the origin prunes on its own and stops with the server', async (t) => {
  const origin = await startOrigin(t, { retention: { maxAgeMs: 30 * DAY, keepBases: 3, intervalMs: 100 } });
  await put(`${origin.url}/artifacts/r/job/a.txt`, Buffer.from('a'));
  await backdate(origin, ['artifacts', 'r', 'job', 'a.txt'], Date.now() - 40 * DAY);
  await eventually('the old artifact is pruned', async () => (await status(`${origin.url}/artifacts/r/job/a.txt`)) === 404, 10_000);
  await origin.app.close(); // the prune timer does not keep it (or the test) alive
});
