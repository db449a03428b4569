// If-Match, If-Unmodified-Since, If-Modified-Since and If-Range with a date on the
// origin's blob and name answers (RFC 9110 §13.1.1, §13.1.3-§13.1.5, §13.2.2).
import t from 'tap';
import { createHash } from 'node:crypto';
import { utimes } from 'node:fs/promises';
import { request } from 'undici';
import { DiskBlobStore } from '../../src/store/disk.js';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';
import { uploadRunManifestBase } from '../helpers/run-manifest.js';

const BODY = '0123456789abcdef';
const HEX = createHash('sha256').update(BODY).digest('hex');

async function get(origin: TestOrigin, path: string, headers: Record<string, string>, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(`${origin.url}${path}`, { method, headers });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

async function put(origin: TestOrigin, path: string): Promise<void> {
  const res = await request(`${origin.url}${path}`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}` }, body: BODY });
  await res.body.dump();
  if (res.statusCode !== 201) throw new Error(`PUT ${path}: HTTP ${res.statusCode}`);
}

/** The same instant in the two obsolete HTTP-date forms a server must accept. */
function obsoleteForms(imf: string): string[] {
  const d = new Date(imf);
  const days = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
  const [, dd, mon, yyyy, time] = imf.split(' ') as [string, string, string, string, string];
  const rfc850 = `${days[d.getUTCDay()]}, ${dd}-${mon}-${yyyy.slice(2)} ${time} GMT`;
  const asctime = `${imf.slice(0, 3)} ${mon} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} ${yyyy}`;
  return [rfc850, asctime];
}

t.test('If-Modified-Since on a blob: 304 unless modified since; ignored with If-None-Match or when no date', async (t) => {
  const origin = await startOrigin(t);
  const path = `/cas/sha256/${HEX}`;
  await put(origin, path);
  const lastModified = (await get(origin, path, {})).headers['last-modified'] as string;
  const ms = Date.parse(lastModified);
  for (const since of [lastModified, new Date(ms + 3600_000).toUTCString(), ...obsoleteForms(lastModified)]) {
    const res = await get(origin, path, { 'if-modified-since': since });
    t.equal(res.status, 304, since);
    t.equal(res.body, '');
    t.equal(res.headers.etag, `"sha256:${HEX}"`);
  }
  t.equal((await get(origin, path, { 'if-modified-since': lastModified }, 'HEAD')).status, 304, 'HEAD');
  t.equal((await get(origin, path, { 'if-modified-since': new Date(ms - 1000).toUTCString() })).status, 200, 'modified since');
  for (const invalid of ['yesterday', '1', `${lastModified}, ${lastModified}`, 'Mon, 31 Feb 2026 00:00:00 GMT']) {
    t.equal((await get(origin, path, { 'if-modified-since': invalid })).status, 200, `not a date: ${invalid}`);
  }
  const both = await get(origin, path, { 'if-modified-since': lastModified, 'if-none-match': '"sha256:other"' });
  t.equal(both.status, 200, 'If-None-Match decides when both are sent');
  t.equal(both.body, BODY);
});

t.test('If-Range with the exact Last-Modified date applies the range', async (t) => {
  const origin = await startOrigin(t);
  const path = `/sha256/${HEX}`;
  await put(origin, `/cas${path}`);
  const lastModified = (await get(origin, path, {})).headers['last-modified'] as string;
  const range = { range: 'bytes=4-7' };
  const byDate = await get(origin, path, { ...range, 'if-range': lastModified });
  t.equal(byDate.status, 206);
  t.equal(byDate.body, '4567');
  t.equal((await get(origin, path, { ...range, 'if-range': `"sha256:${HEX}"` })).status, 206, 'the ETag');
  for (const other of [new Date(Date.parse(lastModified) - 1000).toUTCString(), `W/"sha256:${HEX}"`, '"sha256:other"']) {
    const full = await get(origin, path, { ...range, 'if-range': other });
    t.equal(full.status, 200, `If-Range: ${other}`);
    t.equal(full.body, BODY);
  }
});

t.test("a name's Last-Modified is when the name last changed, not its blob's commit time", async (t) => {
  const origin = await startOrigin(t);
  await put(origin, `/cas/sha256/${HEX}`);
  const store = origin.context.store;
  t.ok(store instanceof DiskBlobStore);
  if (!(store instanceof DiskBlobStore)) return;
  const longAgo = new Date('2001-01-01T00:00:00Z');
  await utimes(store.pathOf({ algo: 'sha256', hex: HEX }), longAgo, longAgo);
  const before = Date.now();
  await put(origin, '/projects/demo/bases/b1'); // the same bytes: the old blob
  const path = '/projects/demo/bases/b1';
  const lastModified = (await get(origin, path, {})).headers['last-modified'] as string;
  t.ok(Date.parse(lastModified) >= Math.floor(before / 1000) * 1000, `${lastModified} is the PUT's time`);
  const changed = await get(origin, path, { 'if-modified-since': new Date('2002-01-01T00:00:00Z').toUTCString() });
  t.equal(changed.status, 200, 'the name changed after 2002 though its blob is older');
  t.equal(changed.body, BODY);
  t.equal((await get(origin, path, { 'if-modified-since': lastModified })).status, 304);
});

t.test('If-Match and If-Unmodified-Since on GET and HEAD: 412 when false, evaluated before If-None-Match', async (t) => {
  const origin = await startOrigin(t);
  await put(origin, `/cas/sha256/${HEX}`);
  await put(origin, '/projects/demo/bases/b1');
  for (const path of [`/cas/sha256/${HEX}`, `/sha256/${HEX}`, '/projects/demo/bases/b1']) {
    const { headers } = await get(origin, path, {});
    const etag = headers.etag as string;
    const lastModified = headers['last-modified'] as string;
    const earlier = new Date(Date.parse(lastModified) - 1000).toUTCString();
    const failing: Array<[Record<string, string>, string]> = [
      [{ 'if-match': '"sha256:other"' }, 'If-Match of another ETag'],
      [{ 'if-match': `W/${etag}` }, 'If-Match compares strongly'],
      [{ 'if-unmodified-since': earlier }, 'If-Unmodified-Since before the last change'],
      [{ 'if-unmodified-since': obsoleteForms(earlier)[0]! }, 'If-Unmodified-Since, RFC 850 form'],
      [{ 'if-match': '"sha256:other"', 'if-none-match': etag }, 'If-Match before If-None-Match'],
      [{ 'if-unmodified-since': earlier, 'if-modified-since': lastModified }, 'If-Unmodified-Since before If-Modified-Since'],
    ];
    const holding: Array<[Record<string, string>, string]> = [
      [{ 'if-match': etag }, 'If-Match of its ETag'],
      [{ 'if-match': `"x", ${etag}` }, 'If-Match of a list with its ETag'],
      [{ 'if-match': '*' }, 'If-Match: *'],
      [{ 'if-unmodified-since': lastModified }, 'If-Unmodified-Since its last change'],
      [{ 'if-unmodified-since': 'yesterday' }, 'If-Unmodified-Since that is no date (ignored)'],
      [{ 'if-match': etag, 'if-unmodified-since': earlier }, 'If-Unmodified-Since ignored with If-Match'],
    ];
    for (const method of ['GET', 'HEAD'] as const) {
      for (const [conditions, why] of failing) {
        const res = await get(origin, path, conditions, method);
        t.equal(res.status, 412, `${method} ${path}: ${why}`);
        if (method === 'GET') t.match(res.body, /"code":"FC_ERR_PRECONDITION_FAILED"/);
      }
      for (const [conditions, why] of holding) {
        const res = await get(origin, path, conditions, method);
        t.same([res.status, res.body], [200, method === 'GET' ? BODY : ''], `${method} ${path}: ${why}`);
      }
      t.equal((await get(origin, path, { 'if-match': etag, 'if-none-match': etag }, method)).status, 304, `${method} ${path}: If-Match holds, If-None-Match matches`);
    }
  }
  t.equal((await get(origin, `/cas/sha256/${'0'.repeat(64)}`, { 'if-match': '*' })).status, 404, 'a missing object is a 404 whatever the conditions');

  const run = '/projects/demo/runs/r1';
  const manifest = JSON.stringify(await uploadRunManifestBase(origin.url, 'demo', 'r1'));
  const res = await request(`${origin.url}${run}`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}` }, body: manifest });
  await res.body.dump();
  t.equal(res.statusCode, 201, 'run manifest stored');
  const etag = (await get(origin, run, {})).headers.etag as string;
  t.equal((await get(origin, run, { 'if-match': '"sha256:other"' })).status, 412, 'run manifest: If-Match of another ETag');
  t.equal((await get(origin, run, { 'if-match': etag })).status, 200, 'run manifest: If-Match of its ETag');
  t.equal((await get(origin, run, { 'if-unmodified-since': 'Mon, 01 Jan 2001 00:00:00 GMT' })).status, 200, 'run manifest: no Last-Modified, If-Unmodified-Since ignored');
});
