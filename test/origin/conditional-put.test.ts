// If-Match / If-None-Match on PUT of names and blobs (RFC 9110 §13.1.1, §13.1.2): a false
// condition is a 412 and leaves the name (or the store) as it was.
import { createHash } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import t from 'tap';
import { request } from 'undici';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';
import { uploadRunManifestBase } from '../helpers/run-manifest.js';

async function put(origin: TestOrigin, path: string, body: string, conditions: Record<string, string> = {}) {
  const res = await request(`${origin.url}${path}`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}`, ...conditions }, body });
  const text = await res.body.text();
  return { status: res.statusCode, etag: res.headers.etag as string | undefined, code: res.statusCode >= 400 ? (JSON.parse(text) as { code: string }).code : undefined };
}

async function get(origin: TestOrigin, path: string) {
  const res = await request(`${origin.url}${path}`);
  return { status: res.statusCode, body: await res.body.text(), etag: res.headers.etag as string };
}

t.test('project bases and artifacts: If-None-Match: * and If-Match', async (t) => {
  const origin = await startOrigin(t);
  for (const path of ['/projects/demo/bases/b1', '/artifacts/run/job/out.txt']) {
    t.equal((await put(origin, path, 'first', { 'if-match': '*' })).status, 412, 'If-Match: * with nothing there');
    t.equal((await get(origin, path)).status, 404);
    const first = await put(origin, path, 'first', { 'if-none-match': '*' });
    t.equal(first.status, 201, 'If-None-Match: * creates');

    const again = await put(origin, path, 'overwrite', { 'if-none-match': '*' });
    t.equal(again.status, 412);
    t.equal(again.code, 'FC_ERR_PRECONDITION_FAILED');
    t.equal((await put(origin, path, 'overwrite', { 'if-none-match': `"x", W/${first.etag}` })).status, 412, 'weak match of If-None-Match');
    t.equal((await put(origin, path, 'overwrite', { 'if-match': '"sha256:stale"' })).status, 412);
    t.equal((await put(origin, path, 'overwrite', { 'if-match': `W/${first.etag}` })).status, 412, 'If-Match compares strongly');
    t.equal((await get(origin, path)).body, 'first', 'unchanged by the refused PUTs');

    const current = await get(origin, path);
    t.equal(current.etag, first.etag);
    const second = await put(origin, path, 'second', { 'if-match': `"other", ${current.etag}` });
    t.equal(second.status, 200, 'If-Match with the current ETag (written over: 200)');
    t.equal((await put(origin, path, 'third', { 'if-match': current.etag })).status, 412, 'that ETag is stale now');
    t.equal((await put(origin, path, 'third', { 'if-match': '*' })).status, 200);
    t.equal((await get(origin, path)).body, 'third');
  }
});

t.test('run manifests: the ETag GET answers is the one If-Match compares', async (t) => {
  const origin = await startOrigin(t);
  const path = '/projects/demo/runs/r1';
  const bodies: string[] = [];
  for (const variant of ['1', '2', '3']) bodies.push(JSON.stringify(await uploadRunManifestBase(origin.url, 'demo', 'r1', variant)));
  const [m1, m2, m3] = bodies as [string, string, string];
  t.equal((await put(origin, path, m1, { 'if-none-match': '*' })).status, 201);
  t.equal((await put(origin, path, m2, { 'if-none-match': '*' })).status, 412);
  const current = await get(origin, path);
  t.equal((await put(origin, path, m2, { 'if-match': '"sha256:stale"' })).status, 412);
  t.equal((await put(origin, path, m2, { 'if-match': current.etag })).status, 200, 'a record written over: 200 (RFC 9110 §9.3.4)');
  t.equal((await put(origin, path, m3, { 'if-match': current.etag })).status, 412);
  t.same(JSON.parse((await get(origin, path)).body), JSON.parse(m2));
});

t.test('concurrent If-None-Match: * PUTs of one new name: exactly one creates it', async (t) => {
  const origin = await startOrigin(t);
  const bodies = ['a', 'b', 'c', 'd', 'e', 'f'].map((c) => c.repeat(256 * 1024));
  const results = await Promise.all(bodies.map((body) => put(origin, '/projects/demo/bases/race', body, { 'if-none-match': '*' })));
  t.same(results.map((r) => r.status).sort(), [201, 412, 412, 412, 412, 412]);
  const winner = bodies[results.findIndex((r) => r.status === 201)];
  t.equal((await get(origin, '/projects/demo/bases/race')).body, winner);
});

/**
 * Sends the headers of a PUT of `size` bytes and its first KiB only: resolves to the status
 * of an answer given before the rest of the body (rejects when none comes within 10 s).
 */
async function statusBeforeBody(origin: TestOrigin, path: string, size: number, conditions: Record<string, string>): Promise<number> {
  const req = http.request(`${origin.url}${path}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${origin.token}`, 'content-length': String(size), ...conditions },
    signal: AbortSignal.timeout(10_000),
  });
  const answered = new Promise<http.IncomingMessage>((resolve, reject) => req.once('response', resolve).once('error', reject));
  req.write(Buffer.alloc(1024));
  try {
    const res = await answered;
    res.resume();
    return res.statusCode ?? 0;
  } finally {
    req.destroy();
  }
}

t.test('concurrent If-None-Match: * PUTs of one new blob: exactly one creates it, the others are 412', async (t) => {
  const origin = await startOrigin(t);
  const body = Buffer.alloc(256 * 1024, 'blob');
  const hex = createHash('sha256').update(body).digest('hex');
  // Every body is held back after its first half until all of them are: the uploads end together.
  let started = 0;
  let releaseAll!: () => void;
  const allStarted = new Promise<void>((resolve) => (releaseAll = resolve));
  async function* held() {
    yield body.subarray(0, body.length / 2);
    if (++started === 6) releaseAll();
    await allStarted;
    yield body.subarray(body.length / 2);
  }
  const results = await Promise.all(
    Array.from({ length: 6 }, async () => {
      const res = await request(`${origin.url}/cas/sha256/${hex}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${origin.token}`, 'content-length': String(body.length), 'if-none-match': '*' },
        body: Readable.from(held()),
      });
      await res.body.dump();
      return res.statusCode;
    }),
  );
  t.same(results.sort(), [201, 412, 412, 412, 412, 412]);
});

t.test('/cas PUT: If-None-Match: * of a stored blob and If-Match of a missing one are 412, before the body is read', async (t) => {
  const origin = await startOrigin(t);
  const body = 'blob bytes';
  const hex = createHash('sha256').update(body).digest('hex');
  const path = `/cas/sha256/${hex}`;
  const etag = `"sha256:${hex}"`;
  for (const ifMatch of ['*', etag]) {
    const refused = await put(origin, path, body, { 'if-match': ifMatch });
    t.same([refused.status, refused.code], [412, 'FC_ERR_PRECONDITION_FAILED'], `If-Match: ${ifMatch} of a blob not stored`);
  }
  t.equal((await get(origin, path)).status, 404, 'nothing stored');
  t.equal((await put(origin, path, body, { 'if-none-match': '*' })).status, 201, 'If-None-Match: * stores a new blob');
  const again = await put(origin, path, body, { 'if-none-match': '*' });
  t.same([again.status, again.code], [412, 'FC_ERR_PRECONDITION_FAILED'], 'If-None-Match: * of a stored blob');
  t.equal((await put(origin, path, body, { 'if-none-match': `"x", ${etag}` })).status, 412, 'If-None-Match of its ETag');
  t.equal((await put(origin, path, body, { 'if-none-match': '"sha256:other"' })).status, 200, 'If-None-Match of another ETag');
  t.equal((await put(origin, path, body, { 'if-match': etag })).status, 200, 'If-Match of its ETag');
  t.equal((await put(origin, path, body, { 'if-match': '"sha256:other"' })).status, 412, 'If-Match of another ETag');
  t.equal((await get(origin, path)).body, body);

  t.equal(await statusBeforeBody(origin, path, 1024 * 1024, { 'if-none-match': '*' }), 412, 'If-None-Match: * answered before the body');
  t.equal(await statusBeforeBody(origin, `/cas/sha256/${'ab'.repeat(32)}`, 1024 * 1024, { 'if-match': '*' }), 412, 'If-Match answered before the body');
});
