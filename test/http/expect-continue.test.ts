// `Expect: 100-continue`: the 100 goes only to an upload that may send its body (a credential,
// a length within the limit); any other gets its refusal without having been told to send.
import { createHash } from 'node:crypto';
import t from 'tap';
import { startOrigin } from '../helpers/origin.js';
import { startCache } from '../cache/harness.js';
import { exchange } from '../helpers/raw-http.js';

/** Sends the head of a PUT with Expect: 100-continue and no body; resolves to the first status line answered. */
async function firstAnswer(url: string, path: string, headers: Record<string, string>): Promise<string> {
  const head = (host: string) => [`PUT ${path} HTTP/1.1`, `Host: ${host}`, 'Expect: 100-continue', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  const answer = await exchange(url, (host) => `${head(host)}\r\n\r\n`, (raw) => raw.includes('\r\n'));
  return answer.slice(0, answer.indexOf('\r\n'));
}

t.test('origin and cache: 100 Continue only to an upload with a token and a length within the limit', async (t) => {
  const origin = await startOrigin(t, { maxBlobSize: 1 << 20 });
  const cache = await startCache(t, { upstream: origin.url }, t.testdir());
  const path = `/cas/sha256/${createHash('sha256').update('x').digest('hex')}`;
  const token = { authorization: `Bearer ${origin.token}` };
  t.match(await firstAnswer(origin.url, path, { 'content-length': '1000' }), /^HTTP\/1\.1 401 /, 'no token: refused at once');
  t.match(await firstAnswer(origin.url, path, { ...token, 'content-length': String(2 << 20) }), /^HTTP\/1\.1 413 /, 'over the limit: refused at once');
  t.match(await firstAnswer(origin.url, path, { ...token, 'content-length': '1000' }), /^HTTP\/1\.1 100 Continue/, 'a token, within the limit: told to send');
  t.match(await firstAnswer(cache.url, path, { 'content-length': '1000' }), /^HTTP\/1\.1 401 /, 'through a cache: no token, refused at once');
  t.match(await firstAnswer(cache.url, path, { ...token, 'content-length': '1000' }), /^HTTP\/1\.1 100 Continue/, 'through a cache: a token, told to send');
});

t.test('origin: a run manifest is told to send only within the record limit, not the blob limit', async (t) => {
  const maxRecordSize = 1 << 10;
  const origin = await startOrigin(t, { maxBlobSize: 1 << 20, maxRecordSize });
  const token = { authorization: `Bearer ${origin.token}` };
  const run = '/projects/p/runs/r1';
  t.match(await firstAnswer(origin.url, run, { ...token, 'content-length': String(maxRecordSize + 1) }), /^HTTP\/1\.1 413 /, 'over the record limit: refused at once');
  t.match(await firstAnswer(origin.url, run, { ...token, 'content-length': String(maxRecordSize) }), /^HTTP\/1\.1 100 Continue/, 'within it: told to send');
  const base = '/projects/p/bases/b1';
  t.match(await firstAnswer(origin.url, base, { ...token, 'content-length': String(maxRecordSize + 1) }), /^HTTP\/1\.1 100 Continue/, 'a base is a blob: the blob limit');
});
