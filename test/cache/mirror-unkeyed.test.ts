// Web cache poisoning through a mirror: a request field the cache does not key on must not
// choose the answer the cache keeps for every client of its region. Real cache, real upstream.
import type http from 'node:http';
import { gunzipSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { request } from 'undici';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers });
  return { headers: res.headers, body: await res.body.text() };
}

function reply(res: http.ServerResponse, status: number, headers: Record<string, string>, body: string | Buffer = ''): true {
  res.writeHead(status, headers).end(body);
  return true;
}

t.test('mirror: a field the cache does not key on neither reaches the kept answer nor refreshes it', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const fresh = { 'cache-control': 'max-age=600' };
  // An upstream that writes its answers from request fields, naming none of them in Vary
  // (as many do: absolute links from X-Forwarded-Host, a greeting from a Cookie).
  up.handler = (req, res) => {
    const h = req.headers;
    switch (req.url) {
      case '/page':
        return reply(res, 200, fresh, `see http://${String(h['x-forwarded-host'] ?? 'mirror.example')}/next`);
      case '/custom':
        return reply(res, 200, fresh, `page ${String(h['x-original-url'] ?? '/custom')}`);
      case '/cookie':
        return reply(res, 200, fresh, `hello ${h.cookie ?? 'guest'}`);
      case '/plain':
        return reply(res, 200, fresh, 'the same for all');
      case '/gz':
        // nginx's gzip without gzip_vary: compressed for whoever asks, no Vary
        return String(h['accept-encoding']).includes('gzip') ? reply(res, 200, { ...fresh, 'content-encoding': 'gzip' }, gzipSync('zipped')) : reply(res, 200, fresh, 'plain text');
      case '/reval':
        // stale at once, revalidated by each request; a 304 adds what the request asked for
        if (h['if-none-match'] === '"r"') return reply(res, 304, { etag: '"r"', ...(h['x-custom'] ? { link: `<http://${String(h['x-custom'])}/>` } : {}) });
        return reply(res, 200, { 'cache-control': 'max-age=0', etag: '"r"' }, 'reval');
      default:
        return false;
    }
  };
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const m = `${url}/mirror/m`;

  const hop = { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http', forwarded: 'host=evil.example', 'x-real-ip': '192.0.2.1' };
  t.equal((await get(`${m}/page`, hop)).body, 'see http://mirror.example/next', 'the fields of the hop to the cache are not the mirror\'s business');
  const seen = up.requests.find((r) => r.url === '/page')!.headers;
  t.same(Object.keys(hop).filter((field) => field in seen), [], 'none of them reaches upstream');
  t.same((await get(`${m}/page`)).body, 'see http://mirror.example/next');

  for (const [path, fields, mine, everyones] of [
    ['/custom', { 'x-original-url': '/admin' }, 'page /admin', 'page /custom'],
    ['/cookie', { cookie: 'session=alice' }, 'hello session=alice', 'hello guest'],
    ['/gz', { 'accept-encoding': 'gzip' }, 'zipped', 'plain text'],
  ] as const) {
    const first = await request(`${m}${path}`, { headers: fields });
    const body = first.headers['content-encoding'] === 'gzip' ? gunzipSync(Buffer.from(await first.body.arrayBuffer())).toString() : await first.body.text();
    t.equal(body, mine, `${path}: upstream's answer to the fields sent`);
    const next = await get(`${m}${path}`);
    t.same([next.body, next.headers['content-encoding'], next.headers['x-cache']], [everyones, undefined, 'MISS'], `${path}: not kept for the next client, who gets its own`);
    t.equal(up.count(path), 2, `${path}: asked upstream for each`);
  }

  // Fields every client sends, which choose no other content, keep the answer as before.
  const usual = { 'user-agent': 'Debian APT-HTTP/1.3', accept: '*/*', 'accept-language': 'en' };
  await get(`${m}/plain`, usual);
  t.equal((await get(`${m}/plain`)).headers['x-cache'], 'HIT', 'an answer to the usual fields is kept');

  await get(`${m}/reval`);
  await get(`${m}/reval`, { 'x-custom': 'evil.example' });
  const after = await get(`${m}/reval`);
  t.same([after.body, after.headers.link], ['reval', undefined], 'a request with an unkeyed field did not refresh the kept answer with its 304\'s fields');
});

t.test('mirror: a request does not share the upstream request of one whose unkeyed fields differ (a Cookie): it would be given the answer chosen for them', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const held: Array<() => void> = [];
  let arrived: () => void = () => {};
  const second = new Promise<void>((resolve) => (arrived = resolve));
  up.handler = (req, res) => {
    if (req.url !== '/greeting') return false;
    const body = `hello ${req.headers.cookie ?? 'guest'}`;
    // the answer starts at once and ends only when let go: the first request's fill is under way
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(body.length) });
    res.write(body.slice(0, 1));
    held.push(() => res.end(body.slice(1)));
    if (held.length === 2) arrived();
    return true;
  };
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  const withCookie = get(`${url}/mirror/m/greeting`, { cookie: 'session=alice' });
  while (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  const plain = request(`${url}/mirror/m/greeting`, { signal: AbortSignal.timeout(5000) }).then(async (res) => ({ body: await res.body.text() }), (err: Error) => ({ body: err.message }));
  // the plain request asks upstream itself; joined to the first fill, it never would (1 s is plenty on loopback)
  await Promise.race([second, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
  for (const release of held) release();
  t.equal((await withCookie).body, 'hello session=alice');
  t.equal((await plain).body, 'hello guest', "the plain request is given its own answer, not the cookie's");
  t.equal(up.count('/greeting'), 2, 'each asked upstream');
});

t.test('mirror: an answer to npm, or through a load balancer that traces each request, is kept: their fields new in each request choose no content', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (req, res) => (req.url === '/pkg' ? reply(res, 200, { 'cache-control': 'max-age=600' }, 'metadata') : false);
  const { url } = await startCache(t, { upstream: upUrl, mirrors: { m: { url: upUrl } } }, t.testdir());
  // what npm (npm-registry-fetch) sends, a session new in each run, and an AWS, Google Cloud or Envoy front adds, new in each request
  const sent = (run: number) => ({
    'user-agent': 'npm/10.8.2 node/v20.18.1 linux x64 workspaces/false', accept: 'application/json',
    'npm-session': `${run}a1b2c3d4e5f6a7`, 'npm-command': 'ci', 'npm-auth-type': 'web', 'npm-scope': '@fleet', 'npm-in-ci': 'true',
    'x-amzn-trace-id': `Root=1-67891233-${run}bcdef012345678912345678`, 'x-cloud-trace-context': `${run}05f6c2bd4e97a2d2a6f1f2e7b5e1c3d/1;o=1`,
    b3: `${run}e457b5a2e4d86bd-${run}05a5e1c3d9b2f1e-1`, 'x-b3-traceid': `${run}e457b5a2e4d86bd`, 'x-b3-spanid': `${run}05a5e1c3d9b2f1e`, 'x-b3-parentspanid': `${run}a2fb4a1d1a96d31`, 'x-b3-sampled': '1',
  });
  const runs = 3;
  for (let run = 1; run <= runs; run++) t.equal((await get(`${url}/mirror/m/pkg`, sent(run))).body, 'metadata');
  const seen = up.requests.find((r) => r.url === '/pkg')!.headers;
  t.same(Object.keys(sent(1)).filter((field) => !(field in seen)), [], 'all reach upstream');
  t.equal(up.count('/pkg'), 1, `kept at the first, served from the cache to the ${runs - 1} others`);
});
