// tooltool's visibility rule on the origin: fixed at first upload; another visibility for a
// stored blob is a 400 and changes nothing; only "public" and "internal" are values.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { eventually } from '../helpers/wait.js';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';

const sha512 = (s: string) => createHash('sha512').update(s).digest('hex');

async function put(origin: TestOrigin, body: string, visibility?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${origin.token}` };
  if (visibility !== undefined) headers['x-fleetcache-visibility'] = visibility;
  const res = await request(`${origin.url}/cas/sha512/${sha512(body)}`, { method: 'PUT', headers, body });
  return { status: res.statusCode, body: (await res.body.json()) as { code?: string; message?: string; visibility?: string } };
}

/** The status of an anonymous tooltool download: 200 public, 401 internal (no token). */
async function anonymousGet(origin: TestOrigin, body: string): Promise<number> {
  const res = await request(`${origin.url}/sha512/${sha512(body)}`);
  await res.body.dump();
  return res.statusCode;
}

/** An upload that sends its first KB, then waits: `finish` sends the rest, `abort` cuts it. */
function heldUpload(origin: TestOrigin, body: string, visibility: string) {
  let more!: () => void;
  const rest = new Promise<void>((resolve) => (more = resolve));
  const stream = Readable.from((async function* () {
    yield Buffer.from(body.slice(0, 1000));
    await rest;
    yield Buffer.from(body.slice(1000));
  })());
  const abort = new AbortController();
  const headers = { authorization: `Bearer ${origin.token}`, 'x-fleetcache-visibility': visibility };
  const answer = request(`${origin.url}/cas/sha512/${sha512(body)}`, { method: 'PUT', body: stream, headers, signal: abort.signal })
    .then(async (res) => ({ status: res.statusCode, body: (await res.body.json()) as { code?: string; visibility?: string } }));
  void answer.catch(() => undefined);
  return { answer, finish: more, abort: () => abort.abort() };
}

t.test('a public blob cannot be made internal, nor an internal one public', async (t) => {
  const origin = await startOrigin(t);
  t.equal((await put(origin, 'public asset')).status, 201);
  const toInternal = await put(origin, 'public asset', 'internal');
  t.equal(toInternal.status, 400);
  t.equal(toInternal.body.code, 'FC_ERR_BAD_REQUEST');
  t.equal(toInternal.body.visibility, 'public');
  t.equal(await anonymousGet(origin, 'public asset'), 200, 'still public');
  t.equal((await put(origin, 'public asset', 'public')).status, 200);
  t.equal((await put(origin, 'public asset')).status, 200, 'absent means public');

  t.equal((await put(origin, 'internal asset', 'internal')).status, 201);
  for (const other of [undefined, 'public']) {
    const res = await put(origin, 'internal asset', other);
    t.equal(res.status, 400, `re-PUT with ${other ?? 'no header'}`);
    t.equal(res.body.visibility, 'internal');
  }
  t.equal(await anonymousGet(origin, 'internal asset'), 401, 'still internal');
  t.equal((await put(origin, 'internal asset', 'internal')).status, 200);
});

t.test('unknown visibility values are a 400 and store nothing', async (t) => {
  const origin = await startOrigin(t);
  for (const value of ['secret', 'Internal', 'PUBLIC', '', 'internal, public']) {
    const res = await put(origin, `asset ${value}`, value);
    t.equal(res.status, 400, JSON.stringify(value));
    t.equal(res.body.code, 'FC_ERR_BAD_REQUEST');
    t.match(res.body.message, /"public" or "internal"/);
    t.equal(await anonymousGet(origin, `asset ${value}`), 404, 'not stored');
  }
});

t.test('a new internal asset needs a token from its first byte; a failed upload leaves no mark', async (t) => {
  const origin = await startOrigin(t);
  const body = 'x'.repeat(200_000);
  const upload = heldUpload(origin, body, 'internal');
  await eventually('the upload started', async () => (await anonymousGet(origin, body)) === 401);
  upload.finish();
  const done = await upload.answer;
  t.equal(done.status, 201);
  t.equal(await anonymousGet(origin, body), 401, 'internal once stored');

  const claimed = 'claimed content';
  const wrong = await request(`${origin.url}/cas/sha512/${sha512(claimed)}`, { method: 'PUT', body: 'other content', headers: { authorization: `Bearer ${origin.token}`, 'x-fleetcache-visibility': 'internal' } });
  await wrong.body.dump();
  t.equal(wrong.statusCode, 400, 'a digest mismatch is refused');
  t.equal(await anonymousGet(origin, claimed), 404, 'and leaves no internal mark');
  t.equal((await put(origin, claimed, 'public')).status, 201, 'the content can then be uploaded public');
  t.equal(await anonymousGet(origin, claimed), 200);
});

t.test('GET and HEAD say the visibility an asset is stored with, on /cas and the tooltool alias', async (t) => {
  const origin = await startOrigin(t);
  t.equal((await put(origin, 'a public asset')).status, 201);
  t.equal((await put(origin, 'an internal asset', 'internal')).status, 201);
  const auth = { authorization: `Bearer ${origin.token}` };
  for (const [body, visibility] of [['a public asset', 'public'], ['an internal asset', 'internal']] as const) {
    for (const path of [`/cas/sha512/${sha512(body)}`, `/sha512/${sha512(body)}`]) {
      for (const method of ['HEAD', 'GET'] as const) {
        const res = await request(`${origin.url}${path}`, { method, headers: auth });
        await res.body.dump();
        t.equal(res.statusCode, 200, `${method} ${path}`);
        t.equal(res.headers['x-fleetcache-visibility'], visibility, `${method} ${path}: ${visibility}`);
      }
    }
  }
  const unchanged = await request(`${origin.url}/cas/sha512/${sha512('an internal asset')}`, { method: 'HEAD', headers: { ...auth, 'if-none-match': `"sha512:${sha512('an internal asset')}"` } });
  await unchanged.body.dump();
  t.equal(unchanged.statusCode, 304);
  t.equal(unchanged.headers['x-fleetcache-visibility'], 'internal', 'a 304 too');
});

t.test('uploads of one new blob at once: one visibility, and a failed one does not unmark the others', async (t) => {
  const origin = await startOrigin(t);
  const body = 'y'.repeat(300_000);
  const a = heldUpload(origin, body, 'internal');
  await eventually('the first upload marked it', async () => (await anonymousGet(origin, body)) === 401);
  const b = heldUpload(origin, body, 'internal');
  // B's first bytes are in: it runs beside A (the mark was there before it).
  // Uploads in progress are files in the store's tmp/ (disk.ts); name records pass there as rec-*.
  const uploadsInProgress = (): number => readdirSync(path.join(origin.dataDir, 'tmp')).filter((f) => !f.startsWith('rec-')).length;
  await eventually('the second upload started', () => uploadsInProgress() === 2);
  const publicTry = await put(origin, body, 'public');
  t.equal(publicTry.status, 400, 'a public upload while internal ones run is refused');
  t.equal(publicTry.body.visibility, 'internal', 'and says which');
  a.abort();
  await t.rejects(a.answer, 'the first upload is cut');
  t.equal(await anonymousGet(origin, body), 401, 'still marked: another internal upload runs');
  b.finish();
  t.equal((await b.answer).status, 201, 'the second one stores it');
  t.equal(await anonymousGet(origin, body), 401, 'internal, as both asked');
});

t.test('a mark an unfinished upload left (a crash) does not make a later public upload internal', async (t) => {
  const dataDir = t.testdir();
  const body = 'left behind';
  const first = await startOrigin(t, { dataDir });
  // As a crash mid-upload leaves it: the mark on disk, no blob.
  await first.context.names.put(['_visibility', 'sha512', sha512(body)], { visibility: 'internal' });
  await first.app.close();
  const origin = await startOrigin(t, { dataDir });
  t.equal((await put(origin, body, 'public')).status, 201);
  t.equal(await anonymousGet(origin, body), 200, 'public, as uploaded');
});

t.test('a damaged mark still marks its blob internal', async (t) => {
  const dataDir = t.testdir();
  const first = await startOrigin(t, { dataDir });
  t.equal((await put(first, 'secret tool', 'internal')).status, 201);
  await first.app.close();
  const mark = path.join(dataDir, 'names.v1', '_visibility', 'sha512', `${sha512('secret tool')}.rec.json`);
  t.ok(existsSync(mark), 'the mark is a file of its own');
  writeFileSync(mark, ''); // a power loss before the record reached the disk
  const origin = await startOrigin(t, { dataDir });
  t.equal(await anonymousGet(origin, 'secret tool'), 401, 'internal still (fail closed)');
});

t.test('marks that cannot be listed stop the start: the internal blobs are not served as public', async (t) => {
  const dataDir = t.testdir();
  const first = await startOrigin(t, { dataDir });
  t.equal((await put(first, 'secret tool', 'internal')).status, 201);
  await first.app.close();
  // A directory that cannot be read (EACCES after a restore under another owner, EIO;
  // root reads any mode, so here a symbolic link to itself: ELOOP).
  const marks = path.join(dataDir, 'names.v1', '_visibility', 'sha512');
  renameSync(marks, `${marks}.kept`);
  symlinkSync('sha512', marks);
  await t.rejects(startOrigin(t, { dataDir }), { code: 'ELOOP' });
  rmSync(marks);
  renameSync(`${marks}.kept`, marks);
  const origin = await startOrigin(t, { dataDir });
  t.equal(await anonymousGet(origin, 'secret tool'), 401, 'internal once the marks can be read');
});

t.test('a name of an internal blob reads as the blob: a token needed, private to caches', async (t) => {
  const origin = await startOrigin(t);
  const body = 'internal toolchain';
  const hex = createHash('sha256').update(body).digest('hex');
  const auth = { authorization: `Bearer ${origin.token}` };
  const stored = await request(`${origin.url}/cas/sha256/${hex}`, { method: 'PUT', headers: { ...auth, 'x-fleetcache-visibility': 'internal' }, body });
  t.equal(stored.statusCode, 201);
  await stored.body.dump();
  const named = await request(`${origin.url}/artifacts/run1/job1/internal.bin`, { method: 'PUT', headers: auth, body });
  t.equal(named.statusCode, 201);
  t.match(named.headers['cache-control'], /^private/, 'the PUT\'s answer tells a cache in between not to share it');
  t.equal(((await named.body.json()) as { digest: string }).digest, `sha256:${hex}`);
  for (const method of ['GET', 'HEAD'] as const) {
    const anonymous = await request(`${origin.url}/artifacts/run1/job1/internal.bin`, { method });
    await anonymous.body.dump();
    t.equal(anonymous.statusCode, 401, `${method} without a token`);
  }
  const withToken = await request(`${origin.url}/artifacts/run1/job1/internal.bin`, { headers: auth });
  t.equal(withToken.statusCode, 200);
  t.match(withToken.headers['cache-control'], /^private, no-cache/);
  t.equal(await withToken.body.text(), body);

  const plain = await request(`${origin.url}/artifacts/run1/job1/public.bin`, { method: 'PUT', headers: auth, body: 'public toolchain' });
  await plain.body.dump();
  const anonymous = await request(`${origin.url}/artifacts/run1/job1/public.bin`);
  t.equal(anonymous.statusCode, 200, 'a name of a public blob needs none');
  t.match(anonymous.headers['cache-control'], /^public, no-cache/);
  await anonymous.body.dump();
});
