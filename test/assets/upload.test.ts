// `assets upload` against a real origin: what it already has is skipped, unless the
// manifest asks another visibility than the one it keeps, either way (tooltool refuses a
// visibility other than the first upload's; so does this client, before sending anything).
import t, { type Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { request } from 'undici';
import { formatManifest, type ManifestRecord } from '../../src/assets/manifest.js';
import { uploadAssets } from '../../src/assets/upload.js';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';
import { sha512 } from './helpers.js';
import { createHash } from 'node:crypto';
import { Retention } from '../../src/origin/retention.js';
import { RECENT_MS } from '../../src/origin/references.js';
import type { NameRecord } from '../../src/store/names.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

const DAY = 86_400_000;

function record(filename: string, data: string, visibility: 'public' | 'internal'): ManifestRecord {
  return { filename, size: data.length, algorithm: 'sha512', digest: sha512(data), unpack: false, visibility };
}

/** The status of an anonymous tooltool download: 200 public, 401 internal, 404 absent. */
async function anonymousGet(origin: TestOrigin, data: string): Promise<number> {
  const res = await request(`${origin.url}/sha512/${sha512(data)}`);
  await res.body.dump();
  return res.statusCode;
}

/** An origin, `files` written beside a manifest, and `upload`: uploads the manifest made of `records`. */
async function uploadSetup<F extends Record<string, string>>(t: Test, files: F) {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'data') });
  for (const [name, data] of Object.entries(files)) await writeFile(join(dir, name), data);
  const upload = async (records: ManifestRecord[]) => {
    const manifestPath = join(dir, 'manifest.tt');
    await writeFile(manifestPath, formatManifest(records));
    return uploadAssets({ manifestPath, origin: origin.url, token: origin.token, dir });
  };
  return { origin, upload };
}

t.test('internal asked for an asset the origin already serves to anyone is refused, and nothing is sent', async (t) => {
  const files = { 'shared.bin': 'first uploaded public', 'secret.bin': 'first uploaded internal', 'new.bin': 'not at the origin yet' };
  const { origin, upload } = await uploadSetup(t, files);
  await upload([record('shared.bin', files['shared.bin'], 'public'), record('secret.bin', files['secret.bin'], 'internal')]);

  await t.rejects(
    upload([record('new.bin', files['new.bin'], 'internal'), record('shared.bin', files['shared.bin'], 'internal')]),
    { code: 'FC_ERR_USAGE', message: /shared\.bin: the manifest asks visibility internal, but the origin already has it as public: anyone can download it without a token/ },
  );
  t.equal(await anonymousGet(origin, files['new.bin']), 404, 'nothing was uploaded');
  t.equal(await anonymousGet(origin, files['shared.bin']), 200, 'the asset is still public');

  const same = await upload([record('secret.bin', files['secret.bin'], 'internal'), record('shared.bin', files['shared.bin'], 'public')]);
  t.same(same.map((r) => [r.filename, r.uploaded]), [['secret.bin', false], ['shared.bin', false]], 'the visibility it was stored with: skipped');
});

t.test('public asked for an asset the origin keeps internal is refused, and nothing is sent', async (t) => {
  const files = { 'secret.bin': 'first uploaded internal', 'new.bin': 'not at the origin yet' };
  const { origin, upload } = await uploadSetup(t, files);
  await upload([record('secret.bin', files['secret.bin'], 'internal')]);

  await t.rejects(
    upload([record('new.bin', files['new.bin'], 'public'), record('secret.bin', files['secret.bin'], 'public')]),
    { code: 'FC_ERR_USAGE', message: /secret\.bin: the manifest asks visibility public, but the origin already has it as internal: it cannot be downloaded without a token\. Visibility is fixed at the first upload .*nothing was uploaded/ },
  );
  t.equal(await anonymousGet(origin, files['new.bin']), 404, 'nothing was uploaded');
  t.equal(await anonymousGet(origin, files['secret.bin']), 401, 'the asset is still internal');
});

t.test('mismatches both ways are named together', async (t) => {
  const files = { 'shared.bin': 'uploaded public', 'secret.bin': 'uploaded internal' };
  const { upload } = await uploadSetup(t, files);
  await upload([record('shared.bin', files['shared.bin'], 'public'), record('secret.bin', files['secret.bin'], 'internal')]);
  const err = await upload([record('shared.bin', files['shared.bin'], 'internal'), record('secret.bin', files['secret.bin'], 'public')]).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(err, { code: 'FC_ERR_USAGE' });
  t.match(err?.message, /shared\.bin: the manifest asks visibility internal, but the origin already has it as public/);
  t.match(err?.message, /secret\.bin: the manifest asks visibility public, but the origin already has it as internal/);
});

t.test('an origin that does not say the visibility: internal asked for an asset it serves to anyone is still refused', async (t) => {
  const dir = t.testdir();
  const data = 'stored public by an older origin';
  // An origin from before X-Fleetcache-Visibility: HEAD answers 200 with a token or without.
  const methods: string[] = [];
  const older = createServer((req, res) => {
    methods.push(req.method!);
    res.writeHead(req.method === 'HEAD' ? 200 : 500).end();
  });
  const olderUrl = await serveOnLoopback(t, older);
  await writeFile(join(dir, 'a.bin'), data);
  const manifestPath = join(dir, 'manifest.tt');
  await writeFile(manifestPath, formatManifest([record('a.bin', data, 'internal')]));
  await t.rejects(uploadAssets({ manifestPath, origin: olderUrl, token: 'token', dir }), {
    code: 'FC_ERR_USAGE',
    message: /a\.bin: the manifest asks visibility internal, but the origin already has it as public/,
  });
  t.same(methods, ['HEAD', 'HEAD'], 'asked with a token, then without; nothing sent');
});

t.test('a token the origin refuses fails with its catalogued error, and nothing is sent', async (t) => {
  const dir = t.testdir();
  // Reads need a token: the HEAD that looks for the asset is refused, not answered 404.
  const origin = await startOrigin(t, { dataDir: join(dir, 'data'), readAccess: 'token' });
  const data = 'never uploaded';
  await writeFile(join(dir, 'a.bin'), data);
  const manifestPath = join(dir, 'manifest.tt');
  await writeFile(manifestPath, formatManifest([record('a.bin', data, 'public')]));
  // httpHead read the body of that refusal after dumping it: an uncaught TypeError in undici.
  await t.rejects(uploadAssets({ manifestPath, origin: origin.url, token: 'wrong-token', dir }), { code: 'FC_ERR_FORBIDDEN', message: /^HEAD .*: HTTP 403$/ });
  const res = await request(`${origin.url}/sha512/${sha512(data)}`, { method: 'HEAD', headers: { authorization: `Bearer ${origin.token}` } });
  await res.body.dump();
  t.equal(res.statusCode, 404, 'nothing was uploaded');
});

t.test('one digest under two filenames with different visibilities is refused, and nothing is sent', async (t) => {
  // The origin keeps one visibility per digest: the second record would be reported
  // "present" as public while the origin keeps it internal (401 to anyone without a token).
  const files = { 'a.bin': 'same bytes', 'b.bin': 'same bytes' };
  const { origin, upload } = await uploadSetup(t, files);
  await t.rejects(upload([record('a.bin', files['a.bin'], 'internal'), record('b.bin', files['b.bin'], 'public')]), {
    code: 'FC_ERR_USAGE',
    message: /b\.bin: the manifest asks visibility public, but record "a\.bin" asks internal for the same content/,
  });
  t.equal(await anonymousGet(origin, files['a.bin']), 404, 'nothing was uploaded');
});

t.test('a local file that does not match its record is named in the error', async (t) => {
  const files = { 'good.bin': 'good', 'stale.bin': 'changed since the manifest was written' };
  const { upload } = await uploadSetup(t, files);
  await t.rejects(upload([record('good.bin', files['good.bin'], 'public'), { ...record('stale.bin', 'old', 'public'), size: files['stale.bin'].length }]), {
    code: 'FC_ERR_DIGEST_MISMATCH',
    message: /stale\.bin: digest mismatch/,
  });
  await t.rejects(upload([record('stale.bin', 'old', 'public')]), { code: 'FC_ERR_SIZE_MISMATCH', message: /stale\.bin: size mismatch/ });
});

t.test('a sha256 asset whose bytes the origin has as an artifact is sent again: a prune of the expired artifact keeps it', async (t) => {
  const data = 'a tool that was also a job\'s artifact';
  const { origin, upload } = await uploadSetup(t, { 'tool.bin': data, 'same-tool.bin': data });
  const hex = createHash('sha256').update(data).digest('hex');
  const res = await request(`${origin.url}/artifacts/r/job/tool.bin`, { method: 'PUT', body: data, headers: { authorization: `Bearer ${origin.token}` } });
  t.equal(res.statusCode, 201, await res.body.text());
  const artifact = ['artifacts', 'r', 'job', 'tool.bin'];
  await origin.context.names.put(artifact, { ...(await origin.context.names.get<NameRecord>(artifact)), created: Date.now() - 40 * DAY });
  // tooltool fetches any hashlib name; the origin stores sha256 blobs, which artifacts are too
  const sha256Record: ManifestRecord = { filename: 'tool.bin', size: data.length, algorithm: 'sha256', digest: hex, unpack: false, visibility: 'public' };
  t.match(await upload([sha256Record, { ...sha256Record, filename: 'same-tool.bin' }]), [{ filename: 'tool.bin', uploaded: true }, { filename: 'same-tool.bin', uploaded: false }], 'sent, though the origin had the bytes; once');
  const prune = await new Retention(origin.context, { maxAgeMs: 30 * DAY, keepBases: 3 }).prune({ now: Date.now() + RECENT_MS + 60_000 });
  t.match(prune, { names: { artifacts: 1 }, blobs: 0 }, 'the artifact goes, the asset stays');
  const get = await request(`${origin.url}/sha256/${hex}`);
  t.equal(get.statusCode, 200);
  t.equal(await get.body.text(), data);
  t.match(await upload([record('tool.bin', data, 'public')]), [{ uploaded: true }], 'sha512: no name points at such a blob');
  t.match(await upload([record('tool.bin', data, 'public')]), [{ uploaded: false }], 'sha512 present: skipped');
});
