// Name records on disk: a segment that looks like a record's file name, a record a crash
// damaged, and how a named blob is served to a browser.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';

async function putArtifact(origin: TestOrigin, name: string, body: string, contentType = 'application/octet-stream'): Promise<number> {
  const res = await request(`${origin.url}/artifacts/${name}`, { method: 'PUT', body, headers: { authorization: `Bearer ${origin.token}`, 'content-type': contentType } });
  await res.body.dump();
  return res.statusCode;
}

async function getArtifact(origin: TestOrigin, name: string) {
  const res = await request(`${origin.url}/artifacts/${name}`);
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

t.test('a segment ending in the record suffix is a name like any other', async (t) => {
  const origin = await startOrigin(t);
  for (const order of [['r/j/c.rec.json/x', 'r/j/c'], ['r/k/d', 'r/k/d.rec.json/y']]) {
    for (const name of order) t.equal(await putArtifact(origin, name, `body of ${name}`), 201, `PUT ${name}`);
    for (const name of order) t.equal((await getArtifact(origin, name)).text, `body of ${name}`, `GET ${name}`);
  }
  t.equal(await putArtifact(origin, 'r/j/e.rec.json', 'last segment'), 201);
  t.equal((await getArtifact(origin, 'r/j/e.rec.json')).text, 'last segment');
  t.equal(await putArtifact(origin, 'r/j/e.rec.json', 'written over'), 200, 'a name written over: 200, not 201 (RFC 9110 §9.3.4)');
  t.equal((await getArtifact(origin, 'r/j/e.rec.json')).text, 'written over');
});

t.test('a damaged record is the server\'s error (500, logged), not the client\'s', async (t) => {
  const origin = await startOrigin(t);
  t.equal(await putArtifact(origin, 'r/j/report', 'data'), 201);
  writeFileSync(path.join(origin.dataDir, 'names.v1', 'artifacts', 'r', 'j', 'report.rec.json'), '{"digest": "sha2');
  const res = await getArtifact(origin, 'r/j/report');
  t.equal(res.status, 500);
  t.equal(await putArtifact(origin, 'r/j/report', 'data again'), 200, 'a damaged record can be written over');
  t.equal((await getArtifact(origin, 'r/j/report')).text, 'data again');
  // A damaged base record does not hide the project's other bases (a push lists them).
  for (const id of ['b1', 'b2']) {
    const res = await request(`${origin.url}/projects/p/bases/${id}`, { method: 'PUT', body: `tar ${id}`, headers: { authorization: `Bearer ${origin.token}` } });
    await res.body.dump();
  }
  writeFileSync(path.join(origin.dataDir, 'names.v1', 'projects', 'p', 'bases', 'b1.rec.json'), '{"dig');
  const listing = await request(`${origin.url}/projects/p/bases/`);
  t.equal(listing.statusCode, 200);
  t.same(((await listing.body.json()) as { bases: { id: string }[] }).bases.map((b) => b.id), ['b2'], 'the sound one is listed');
  const body = JSON.parse(res.text) as { code: string; message: string };
  t.equal(body.code, 'FC_ERR_INTERNAL');
  t.notMatch(body.message, origin.dataDir, 'no server path in the answer');
});

t.test('a named blob never runs script in the origin\'s origin', async (t) => {
  const origin = await startOrigin(t);
  t.equal(await putArtifact(origin, 'r/j/report.html', '<script>alert(1)</script>', 'text/html'), 201);
  const res = await getArtifact(origin, 'r/j/report.html');
  t.equal(res.headers['content-type'], 'text/html', 'the type it was uploaded with (a report stays viewable)');
  t.equal(res.headers['x-content-type-options'], 'nosniff');
  t.equal(res.headers['content-security-policy'], 'sandbox');
});

t.test('a named blob is served with the Content-Disposition it was uploaded with, as a cache that kept the upload serves it', async (t) => {
  const origin = await startOrigin(t);
  const disposition = 'attachment; filename="build log.txt"';
  const res = await request(`${origin.url}/artifacts/r/j/log.txt`, {
    method: 'PUT',
    body: 'log',
    headers: { authorization: `Bearer ${origin.token}`, 'content-type': 'text/plain', 'content-disposition': disposition },
  });
  await res.body.dump();
  t.equal(res.statusCode, 201);
  t.equal((await getArtifact(origin, 'r/j/log.txt')).headers['content-disposition'], disposition, 'GET');
  const head = await request(`${origin.url}/artifacts/r/j/log.txt`, { method: 'HEAD' });
  await head.body.dump();
  t.equal(head.headers['content-disposition'], disposition, 'HEAD');
  // a new upload of the name without one: none
  t.equal(await putArtifact(origin, 'r/j/log.txt', 'log 2', 'text/plain'), 200);
  t.equal((await getArtifact(origin, 'r/j/log.txt')).headers['content-disposition'], undefined);
});

t.test('an upload in a content coding (Content-Encoding: gzip) is refused unstored: its bytes would be served as the decoded content', async (t) => {
  const origin = await startOrigin(t);
  const body = gzipSync('log text');
  const hex = createHash('sha256').update(body).digest('hex');
  for (const path of ['/artifacts/r/j/log.txt', '/projects/p/bases/b1', `/cas/sha256/${hex}`]) {
    const res = await request(`${origin.url}${path}`, {
      method: 'PUT',
      body,
      headers: { authorization: `Bearer ${origin.token}`, 'content-type': 'text/plain', 'content-encoding': 'gzip' },
    });
    const answer = (await res.body.json()) as { code: string };
    t.same([res.statusCode, answer.code], [415, 'FC_ERR_UNSUPPORTED_ENCODING'], path);
    const after = await request(`${origin.url}${path}`);
    await after.body.dump();
    t.equal(after.statusCode, 404, `${path}: nothing stored`);
  }
  const identity = await request(`${origin.url}/artifacts/r/j/log.txt`, { method: 'PUT', body: 'log text', headers: { authorization: `Bearer ${origin.token}`, 'content-encoding': 'identity' } });
  await identity.body.dump();
  t.equal(identity.statusCode, 201, 'identity is no coding');
});

t.test('a named upload asking X-Fleetcache-Visibility: internal is refused unstored: a name is readable as its blob is', async (t) => {
  const origin = await startOrigin(t);
  for (const path of ['/artifacts/r/j/secret.bin', '/projects/p/bases/b1']) {
    const res = await request(`${origin.url}${path}`, { method: 'PUT', body: 'internal bytes', headers: { authorization: `Bearer ${origin.token}`, 'x-fleetcache-visibility': 'internal' } });
    const answer = (await res.body.json()) as { code: string };
    t.same([res.statusCode, answer.code], [400, 'FC_ERR_BAD_REQUEST'], path);
    const after = await request(`${origin.url}${path}`);
    await after.body.dump();
    t.equal(after.statusCode, 404, `${path}: nothing stored, nothing readable without a token`);
  }
  const hex = createHash('sha256').update('internal bytes').digest('hex');
  const blob = await request(`${origin.url}/cas/sha256/${hex}`);
  await blob.body.dump();
  t.equal(blob.statusCode, 404, 'the blob was not stored either');
  const pub = await request(`${origin.url}/artifacts/r/j/public.bin`, { method: 'PUT', body: 'bytes', headers: { authorization: `Bearer ${origin.token}`, 'x-fleetcache-visibility': 'public' } });
  await pub.body.dump();
  t.equal(pub.statusCode, 201, 'public is what a name is');
});

t.test('a named upload that states its digest (X-Fleetcache-Digest) is refused unstored when the body differs', async (t) => {
  const origin = await startOrigin(t);
  const auth = { authorization: `Bearer ${origin.token}` };
  const body = 'the artifact\n';
  const sha256 = createHash('sha256').update(body).digest('hex');
  const sha512 = createHash('sha512').update(body).digest('hex');
  const put = async (name: string, digest: string | string[], text = body) => {
    const res = await request(`${origin.url}/artifacts/${name}`, { method: 'PUT', body: text, headers: { ...auth, 'x-fleetcache-digest': digest } });
    return { status: res.statusCode, body: (await res.body.json()) as { code?: string; digest?: string } };
  };
  t.match(await put('r/j/a', `sha256:${sha256}`), { status: 201, body: { digest: `sha256:${sha256}` } }, 'the stated sha256 matches');
  // A name records its blob's sha256 (bases are read by it): another algorithm is refused.
  t.match(await put('r/j/b', `sha512:${sha512}`), { status: 400, body: { code: 'FC_ERR_BAD_DIGEST' } }, 'sha512 refused');
  t.equal((await getArtifact(origin, 'r/j/b')).status, 404);

  const damaged = await put('r/j/c', `sha256:${sha256}`, 'the artifacT\n');
  t.match(damaged, { status: 400, body: { code: 'FC_ERR_DIGEST_MISMATCH' } }, 'another body is refused');
  t.equal((await getArtifact(origin, 'r/j/c')).status, 404, 'no name published');
  const stray = createHash('sha256').update('the artifacT\n').digest('hex');
  const blob = await request(`${origin.url}/cas/sha256/${stray}`);
  await blob.body.dump();
  t.equal(blob.statusCode, 404, 'nor the blob stored');

  // Written over with a damaged body: the name keeps what it had.
  t.match(await put('r/j/a', `sha256:${sha256}`, 'something else'), { status: 400, body: { code: 'FC_ERR_DIGEST_MISMATCH' } });
  t.equal((await getArtifact(origin, 'r/j/a')).text, body, 'the name still names the first body');
  t.match(await put('r/j/d', 'md5:abc'), { status: 400, body: { code: 'FC_ERR_BAD_DIGEST' } }, 'a malformed digest');
  t.match(await put('r/j/e', [`sha256:${sha256}`, `sha256:${sha256}`]), { status: 400, body: { code: 'FC_ERR_BAD_DIGEST' } }, 'given twice');
});
