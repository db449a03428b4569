// Set-Cookie lines from upstream reach the client as the lines they were: RFC 9110 §5.3
// forbids joining them (a cookie's Expires has a comma of its own), on every answer the
// cache passes on without keeping it: passthroughs, fills not kept, errors, PUT answers.
import type http from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

const COOKIES = ['session=abc; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT', 'theme=dark; Path=/'];

async function cookiesOf(url: string, method: 'GET' | 'HEAD' | 'PUT' = 'GET', headers: Record<string, string> = {}): Promise<{ status: number; cookies: unknown }> {
  const res = await request(url, { method, headers, ...(method === 'PUT' ? { body: 'put body' } : {}) });
  await res.body.dump();
  return { status: res.statusCode, cookies: res.headers['set-cookie'] };
}

t.test('several Set-Cookie lines are passed on as several lines, never joined into one', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const large = Buffer.alloc(200_000, 1);
  up.handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const body = req.url!.includes('large') ? large : Buffer.from('small body');
    const status = req.url!.startsWith('/cas/') ? 404 : req.method === 'PUT' ? 201 : 200;
    // private: a name's answer is then passed on, not kept (a mirror never keeps one with Set-Cookie)
    res.writeHead(status, [['content-length', String(body.length)], ['cache-control', 'private'], ...COOKIES.map((c) => ['set-cookie', c])].flat());
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const missingBlob = `/cas/sha256/${'ab'.repeat(32)}`;
  const cases: [string, 'GET' | 'HEAD' | 'PUT', Record<string, string>?][] = [
    ['/mirror/m/small', 'GET'], // a fill not kept, its body gathered whole
    ['/mirror/m/large', 'GET'], // a fill not kept, streamed
    ['/mirror/m/head', 'HEAD'], // a passthrough
    ['/artifacts/r/j/small.txt', 'GET'],
    ['/artifacts/r/j/large.txt', 'GET'],
    ['/artifacts/r/j/head.txt', 'HEAD'],
    [missingBlob, 'GET'], // a blob's fill on the fast path (fast-miss.ts), upstream's 404
    [missingBlob, 'HEAD'],
    ['/artifacts/r/j/put.txt', 'PUT', { authorization: 'Bearer writer' }],
  ];
  for (const [path, method, headers] of cases) {
    const { status, cookies } = await cookiesOf(`${url}${path}`, method, headers);
    t.same(cookies, COOKIES, `${method} ${path} (${status}): two Set-Cookie lines`);
  }
});
