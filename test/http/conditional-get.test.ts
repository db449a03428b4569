// If-Modified-Since and If-Range with a date on the origin's blob and name answers
// (RFC 9110 §13.1.3, §13.1.5, §13.2.2).
import t from 'tap';
import { createHash } from 'node:crypto';
import { utimes } from 'node:fs/promises';
import { request } from 'undici';
import { DiskBlobStore } from '../../src/store/disk.js';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';

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
