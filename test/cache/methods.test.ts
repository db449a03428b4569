// A method a known path of the cache does not have is a 405 with Allow, as at the origin
// (src/http/allowed-methods.ts); an unknown path stays a 404. HEAD is wherever GET is.
import t from 'tap';
import { request } from 'undici';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

/** `method` on `url`; the write methods send a small body, as clients do (a 405 all the same). */
async function call(url: string, method: string) {
  const res = await request(url, { method, ...(['PUT', 'POST', 'PATCH'].includes(method) ? { body: 'a body' } : {}) });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

t.test('a method a path does not have is a 405 with Allow; an unknown path a 404', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const hex = 'a'.repeat(64);
  const cases: Array<[string, string[], string]> = [
    [`/cas/sha256/${hex}`, ['DELETE', 'POST', 'PATCH', 'OPTIONS', 'TRACE'], 'GET, HEAD, PUT'],
    [`/sha256/${hex}`, ['PUT', 'DELETE', 'POST'], 'GET, HEAD'], // read-only, as on the origin
    ['/artifacts/run/job/out.txt', ['DELETE', 'POST'], 'GET, HEAD, PUT'],
    ['/projects/p/runs/r', ['DELETE', 'PATCH'], 'GET, HEAD, PUT'],
    ['/mirror/m/pkg.tar', ['PUT', 'DELETE', 'POST'], 'GET, HEAD'],
    ['/-/metrics', ['POST', 'PUT'], 'GET, HEAD'],
    ['/-/healthz', ['POST'], 'GET, HEAD'],
    ['/-/stats', ['DELETE'], 'GET, HEAD'],
  ];
  for (const [path, methods, allow] of cases) {
    for (const method of methods) {
      const res = await call(url + path, method);
      t.equal(res.status, 405, `${method} ${path}`);
      t.equal(res.headers.allow, allow, `${method} ${path}: Allow`);
      t.equal(res.headers['cache-control'], 'no-store', `${method} ${path}: no-store`);
      t.match(res.body, /"code":"FC_ERR_METHOD_NOT_ALLOWED"/);
    }
  }
  t.equal(up.requests.length, 0, 'nothing went upstream');
  t.equal((await call(`${url}/nothing/here/at/all`, 'DELETE')).status, 404, 'an unknown path: 404');
  t.equal((await call(`${url}/nothing/here/at/all`, 'GET')).status, 404);
});

t.test('HEAD of /-/healthz, /-/metrics, /-/stats and the dashboard answers like GET without a body', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  for (const path of ['/-/healthz', '/-/metrics', '/-/stats', '/-/ui', '/-/ui/assets/uPlot.min.css']) {
    const get = await call(url + path, 'GET');
    const head = await call(url + path, 'HEAD');
    t.equal(head.status, 200, `HEAD ${path}`);
    t.equal(head.body, '', `HEAD ${path}: no body`);
    t.equal(head.headers['content-type'], get.headers['content-type'], `HEAD ${path}: Content-Type`);
    // /-/metrics and /-/stats change between two calls (the GET is counted): the length is the body's, not GET's.
    if (!path.includes('/assets/')) t.ok(Number(head.headers['content-length']) > 0, `HEAD ${path}: Content-Length`); // an asset is streamed
    if (!/metrics|stats/.test(path)) t.equal(head.headers['content-length'], get.headers['content-length'], `HEAD ${path}: the same length`);
  }
  t.equal(up.requests.length, 0, 'nothing went upstream');
});
