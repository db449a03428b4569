// HEAD wherever GET is (RFC 9110 §9.1), and 405 with Allow for a method a path lacks
// (§15.5.6), where an unknown path stays a 404.
import t from 'tap';
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';
import { uploadRunManifestBase } from '../helpers/run-manifest.js';

async function call(origin: TestOrigin, method: string, path: string, headers: Record<string, string> = {}) {
  const res = await request(`${origin.url}${path}`, { method, headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

async function projectsBytesOut(origin: TestOrigin): Promise<number> {
  const stats = JSON.parse((await call(origin, 'GET', '/-/stats')).body) as { kinds: Record<string, { bytesOut: number } | undefined> };
  return stats.kinds.projects?.bytesOut ?? 0;
}

t.test('HEAD of a run manifest, of the bases list and of /-/ answers like GET without a body', async (t) => {
  const origin = await startOrigin(t);
  const manifest = JSON.stringify(await uploadRunManifestBase(origin.url, 'p', 'r'));
  const put = await request(`${origin.url}/projects/p/runs/r`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}` }, body: manifest });
  await put.body.dump();
  t.equal(put.statusCode, 201);
  const get = await call(origin, 'GET', '/projects/p/runs/r');
  const counted = await projectsBytesOut(origin);
  const head = await call(origin, 'HEAD', '/projects/p/runs/r');
  t.equal(head.status, 200);
  t.equal(head.body, '');
  t.equal(head.headers['content-length'], String(Buffer.byteLength(get.body)));
  t.equal(head.headers.etag, get.headers.etag);
  t.equal(head.headers['content-type'], get.headers['content-type']);
  t.equal(await projectsBytesOut(origin), counted, 'a HEAD sends no bytes and counts none');
  t.equal((await call(origin, 'HEAD', '/projects/p/runs/r', { 'if-none-match': get.headers.etag as string })).status, 304);
  t.equal((await call(origin, 'HEAD', '/projects/p/runs/other')).status, 404);
  for (const path of ['/projects/p/bases/', '/-/healthz', '/-/stats', '/-/metrics']) {
    const res = await call(origin, 'HEAD', path);
    t.equal(res.status, 200, `HEAD ${path}`);
    t.equal(res.body, '');
  }
});

t.test('a method a path does not have is a 405 with Allow; an unknown path a 404', async (t) => {
  const origin = await startOrigin(t);
  const hex = 'a'.repeat(64);
  const cases: Array<[string, string[], string]> = [
    [`/cas/sha256/${hex}`, ['DELETE', 'POST', 'PATCH', 'OPTIONS', 'TRACE'], 'GET, HEAD, PUT'],
    [`/sha256/${hex}`, ['PUT', 'DELETE', 'POST'], 'GET, HEAD'],
    ['/artifacts/run/job/out.txt', ['DELETE', 'POST'], 'GET, HEAD, PUT'],
    ['/projects/p/bases/b1', ['DELETE', 'POST', 'OPTIONS'], 'GET, HEAD, PUT'],
    ['/projects/p/runs/r', ['DELETE', 'POST'], 'GET, HEAD, PUT'],
    ['/projects/p/bases/', ['PUT', 'DELETE'], 'GET, HEAD'],
    ['/-/healthz', ['POST'], 'GET, HEAD'],
    ['/-/prune', ['GET', 'HEAD', 'PUT'], 'POST'],
  ];
  for (const [path, methods, allow] of cases) {
    for (const method of methods) {
      const res = await call(origin, method, path, { authorization: `Bearer ${origin.token}` });
      t.equal(res.status, 405, `${method} ${path}`);
      t.equal(res.headers.allow, allow);
      if (method !== 'HEAD') t.equal((JSON.parse(res.body) as { code: string }).code, 'FC_ERR_METHOD_NOT_ALLOWED');
    }
  }
  t.equal((await call(origin, 'DELETE', '/nothing/here/at/all')).status, 404);
  const unknown = await call(origin, 'GET', '/nothing/here/at/all');
  t.same([unknown.status, unknown.headers['cache-control']], [404, 'no-store'], 'an error, kept by no cache, as every other');
});

t.test('the bases list, the answers to uploads and error answers count in the bytes sent, as they are sent', async (t) => {
  const origin = await startOrigin(t);
  const auth = { authorization: `Bearer ${origin.token}` };
  const sentOut = async (): Promise<number> => (JSON.parse((await call(origin, 'GET', '/-/stats')).body) as { totals: { bytesOut: number } }).totals.bytesOut;
  const before = await sentOut();
  let received = 0;
  const send = async (method: string, path: string, body?: string): Promise<void> => {
    const res = await request(`${origin.url}${path}`, { method, headers: auth, ...(body === undefined ? {} : { body }) });
    const text = await res.body.text();
    t.ok(text.length > 0, `${method} ${path}: ${res.statusCode} with a body`);
    received += Buffer.byteLength(text);
  };
  const blob = 'a delta';
  await send('PUT', `/cas/sha256/${createHash('sha256').update(blob).digest('hex')}`, blob);
  await send('PUT', '/projects/p/bases/b1', 'a base');
  await send('GET', '/projects/p/bases/');
  await send('GET', '/projects/p/runs/none'); // a 404's JSON
  t.equal(await sentOut(), before + received, 'every body byte the client received, and no more');
});
