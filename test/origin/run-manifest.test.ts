// PUT /projects/{project}/runs/{run} stores only what machines can pull: a run manifest that
// names the run of its URL and whose base (and delta) the origin stores, with the sizes it
// gives. Anything else is a 400 naming what is wrong, and nothing is stored; a valid manifest
// is stored and replaced under the same conditions as before.
import t from 'tap';
import { request } from 'undici';
import { startOrigin, uploadBlob, type TestOrigin } from '../helpers/origin.js';
import { runManifest, uploadRunManifestBase } from '../helpers/run-manifest.js';

const PATH = '/projects/demo/runs/r1';

async function put(origin: TestOrigin, body: unknown, conditions: Record<string, string> = {}) {
  const headers = { authorization: `Bearer ${origin.token}`, 'content-type': 'application/json', ...conditions };
  const res = await request(`${origin.url}${PATH}`, { method: 'PUT', headers, body: JSON.stringify(body) });
  const answer = (await res.body.json()) as { code?: string; message?: string };
  return { status: res.statusCode, etag: res.headers.etag, ...answer };
}

async function stored(origin: TestOrigin): Promise<{ status: number; body: unknown; etag: string | undefined }> {
  const res = await request(`${origin.url}${PATH}`);
  const text = await res.body.text();
  return { status: res.statusCode, body: res.statusCode === 200 ? JSON.parse(text) : undefined, etag: res.headers.etag as string | undefined };
}

t.test('refused with a 400 naming the field, nothing stored: not a manifest, another run, a blob not stored', async (t) => {
  const origin = await startOrigin(t);
  const valid = await uploadRunManifestBase(origin.url, 'demo', 'r1');
  const notStored = runManifest('demo', 'r1', Buffer.from('a base never uploaded'));
  const base = Buffer.from('an uploaded base');
  await uploadBlob(origin.url, base);
  const deltaNotStored = runManifest('demo', 'r1', base, { delta: Buffer.from('a delta never uploaded') });
  const cases: Array<[what: string, body: unknown, message: RegExp]> = [
    ['any JSON object', { a: 1 }, /not a run manifest \(\/format: /],
    ['a manifest without its base', { ...valid, base: undefined }, /not a run manifest \(\/base: /],
    ['a base digest that is no sha256 digest', { ...valid, base: { ...valid.base, digest: 'sha256:abc' } }, /not a run manifest \(\/base\/digest: /],
    ['a manifest of another project', { ...valid, project: 'other' }, /\/project is "other" but the URL names "demo"/],
    ['a manifest of another run', { ...valid, run: 'r2' }, /\/run is "r2" but the URL names "r1"/],
    ['a base not stored', notStored, new RegExp(`/base/digest ${notStored.base.digest} is not stored`)],
    ['a delta not stored', deltaNotStored, new RegExp(`/delta/digest ${deltaNotStored.delta?.digest ?? 'none'} is not stored`)],
    ['a base size other than the stored blob', { ...valid, base: { ...valid.base, size: valid.base.size + 1 } }, /\/base\/size is \d+ but sha256:\w+ is stored with \d+ bytes/],
  ];
  for (const [what, body, message] of cases) {
    const refused = await put(origin, body);
    t.same([refused.status, refused.code], [400, 'FC_ERR_BAD_REQUEST'], what);
    t.match(refused.message, message, `${what}: the message says what is wrong`);
    t.equal((await stored(origin)).status, 404, `${what}: nothing stored`);
  }
  t.equal((await put(origin, valid, { 'if-none-match': '*' })).status, 201, 'the name was never created: If-None-Match: * creates it');
});

t.test('a valid manifest is stored (201) and replaced by a valid one (200), under the same conditions', async (t) => {
  const origin = await startOrigin(t);
  const first = await uploadRunManifestBase(origin.url, 'demo', 'r1');
  const created = await put(origin, first, { 'if-none-match': '*' });
  t.equal(created.status, 201);
  const current = await stored(origin);
  t.same(current.body, first);

  const base = Buffer.from('a newer base');
  const delta = Buffer.from('its delta');
  await uploadBlob(origin.url, base);
  await uploadBlob(origin.url, delta);
  const second = runManifest('demo', 'r1', base, { delta, baseId: 'b2' });
  t.equal((await put(origin, second, { 'if-none-match': '*' })).status, 412, 'If-None-Match: * of a stored run');
  t.equal((await put(origin, second, { 'if-match': '"sha256:stale"' })).status, 412, 'If-Match of another ETag');
  const refused = await put(origin, { ...second, delta: { ...second.delta, digest: `sha256:${'0'.repeat(64)}` } }, { 'if-match': current.etag ?? '' });
  t.equal(refused.status, 400, 'a replacement whose delta is not stored');
  t.same((await stored(origin)).body, first, 'the refused replacement left the run as it was');
  t.equal((await put(origin, second, { 'if-match': current.etag ?? '' })).status, 200, 'replaced with the current ETag: 200');
  t.same((await stored(origin)).body, second);
  t.equal((await put(origin, first)).status, 200, 'and again without conditions');
  t.same((await stored(origin)).body, first);
});

t.test("only the manifest's own fields are stored: others are dropped unread, however deep", async (t) => {
  const origin = await startOrigin(t);
  const valid = await uploadRunManifestBase(origin.url, 'demo', 'r1');
  // about 40,000 levels in 80 KB of text: JSON.stringify of it overflows the stack
  const text = JSON.stringify({ ...valid, note: 'kept?', base: { ...valid.base, more: 1 } }).replace(/}$/, `,"extra":${'['.repeat(40_000)}${']'.repeat(40_000)}}`);
  const res = await request(`${origin.url}${PATH}`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}`, 'content-type': 'application/json' }, body: text });
  t.equal(res.statusCode, 201, await res.body.text());
  const got = await stored(origin);
  t.same(got.body, valid, 'served back without the extra fields');
});
