import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import { cacheLimits, httpGet, httpGetJson, httpHead, httpPut, joinUrl, MAX_JSON_BYTES } from '../../src/client/http.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

/** The catalogued error each answer becomes (src/client/http.ts), and the server's error body. */
const ANSWERS = [
  { status: 401, code: 'FC_ERR_UNAUTHORIZED', server: { code: 'FC_ERR_UNAUTHORIZED', message: 'a bearer token is required' } },
  { status: 403, code: 'FC_ERR_FORBIDDEN', server: { code: 'FC_ERR_FORBIDDEN', message: 'the token is not accepted' } },
  { status: 500, code: 'FC_ERR_UPSTREAM', server: { code: 'FC_ERR_INTERNAL', message: 'internal error (request 7)' } },
  { status: 502, code: 'FC_ERR_UPSTREAM', server: { code: 'FC_ERR_UPSTREAM', message: 'the upstream broke the connection' } },
] as const;

/** A server on 127.0.0.1 answering `/<status>` with that status and a fleetcache error body (none to HEAD). */
function answering(t: Test): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const status = Number(req.url!.slice(1));
      const answer = ANSWERS.find((a) => a.status === status);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer ? answer.server : { ok: true }));
    });
  });
  return serveOnLoopback(t, server);
}

t.test('httpHead: the headers of a 2xx, undefined for a 404, any other answer its catalogued error, never a crash', async (t) => {
  const url = await answering(t);
  t.type(await httpHead(`${url}/200`), 'object');
  t.equal(await httpHead(`${url}/404`), undefined);
  for (const { status, code } of ANSWERS) {
    // HEAD answers carry no body: the status makes the error.
    await t.rejects(httpHead(`${url}/${status}`), { code, message: `HEAD ${url}/${status}: HTTP ${status}` }, `HEAD ${status}`);
  }
});

t.test('GET and PUT error answers: the catalogued error with the server message', async (t) => {
  const url = await answering(t);
  for (const { status, code, server } of ANSWERS) {
    const message = `${url}/${status}: HTTP ${status}: ${server.message}`;
    await t.rejects(httpGet(`${url}/${status}`), { code, message: `GET ${message}` }, `GET ${status}`);
    await t.rejects(httpGetJson(`${url}/${status}`), { code, message: `GET ${message}` }, `GET JSON ${status}`);
    await t.rejects(httpPut(`${url}/${status}`, 'body'), { code, message: `PUT ${message}` }, `PUT ${status}`);
  }
  t.same(await httpGetJson(`${url}/200`), { ok: true });
});

t.test("a server's code for what is wrong with the request is the client's (its exit status too); its own failures are upstream errors", async (t) => {
  const answers: Array<[status: number, server: string, client: string]> = [
    [400, 'FC_ERR_BAD_NAME', 'FC_ERR_BAD_NAME'],
    [400, 'FC_ERR_BAD_DIGEST', 'FC_ERR_BAD_DIGEST'],
    [400, 'FC_ERR_SIZE_MISMATCH', 'FC_ERR_SIZE_MISMATCH'],
    [400, 'FC_ERR_ABORTED', 'FC_ERR_ABORTED'],
    [405, 'FC_ERR_METHOD_NOT_ALLOWED', 'FC_ERR_METHOD_NOT_ALLOWED'],
    [501, 'FC_ERR_NOT_IMPLEMENTED', 'FC_ERR_NOT_IMPLEMENTED'],
    [505, 'FC_ERR_HTTP_VERSION', 'FC_ERR_HTTP_VERSION'],
    [507, 'FC_ERR_INSUFFICIENT_STORAGE', 'FC_ERR_INSUFFICIENT_STORAGE'],
    [500, 'FC_ERR_CONFIG', 'FC_ERR_UPSTREAM'],
    [500, 'FC_ERR_DIR_IN_USE', 'FC_ERR_UPSTREAM'],
    [503, 'FC_ERR_UNAVAILABLE', 'FC_ERR_UPSTREAM'],
    [422, 'FC_ERR_NOT_A_CODE', 'FC_ERR_UPSTREAM'],
  ];
  const server = createServer((req, res) => {
    req.resume();
    const [status, code] = answers[Number(req.url!.slice(1))]!;
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ code, message: 'as the server says' }));
  });
  const url = await serveOnLoopback(t, server);
  for (const [i, [status, code, client]] of answers.entries()) {
    await t.rejects(httpPut(`${url}/${i}`, 'body'), { code: client, message: `PUT ${url}/${i}: HTTP ${status}: as the server says` }, `${status} ${code}`);
  }
});

t.test('credentials in a URL never appear in an error message', async (t) => {
  const url = await answering(t);
  const withSecret = url.replace('http://', 'http://user:s3cret@');
  await t.rejects(httpGet(`${withSecret}/502`), { message: `GET ${url.replace('http://', 'http://***:***@')}/502: HTTP 502: the upstream broke the connection` }, 'an error answer');
  await t.rejects(httpGet('http://user:s3cret@127.0.0.1:1/x'), { message: /^GET http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:1\/x: / }, 'a connection that failed');
});

t.test('joinUrl refuses a base URL with a query or fragment, naming neither: every path joined would land inside it', async (t) => {
  const url = await answering(t);
  t.same(await httpGetJson(joinUrl(`${url}/`, '/200')), { ok: true }, 'a base URL, with or without its trailing slash, gets the path');
  for (const [base, secret] of [[`${url}/prefix?token=s3cret`, 's3cret'], [`${url}/prefix#s3cret`, 's3cret'], [`${url}?a=b#frag`, 'a=b']] as const) {
    t.throws(() => joinUrl(base, '/200'), { code: 'FC_ERR_USAGE', message: /has a query or fragment/ }, base);
    t.notMatch(t.throws(() => joinUrl(base, '/200')), { message: secret }, `${base}: not named`);
  }
});

t.test('an https:// URL for a plain HTTP server says so, not only in OpenSSL\'s words', async (t) => {
  const url = await answering(t);
  await t.rejects(httpGet(`${url.replace('http://', 'https://')}/200`), {
    code: 'FC_ERR_UPSTREAM',
    message: /^GET https:\/\/127\.0\.0\.1:\d+\/200: the server does not answer in TLS \(an https:\/\/ URL for a plain HTTP server\? try http:\/\/\): .*wrong version number/,
  });
});

t.test('a server cannot fill the client\'s memory: an error body is read 4 KiB far, a JSON answer 64 MiB far', async (t) => {
  let sent = 0;
  const server = createServer((req, res) => {
    const [status, chunked] = [req.url === '/error' ? 500 : 200, req.url === '/chunked'];
    res.writeHead(status, chunked ? { 'content-type': 'application/json' } : { 'content-type': 'application/json', 'content-length': String(MAX_JSON_BYTES + 1) });
    if (req.method === 'HEAD') return void res.end();
    // an endless answer, written as the client reads it: what it sends is what the client took
    const chunk = Buffer.alloc(1 << 20, 0x20);
    const more = (): void => {
      while (!res.destroyed && sent < 2 * MAX_JSON_BYTES) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    res.on('error', () => undefined);
    more();
  });
  const url = await serveOnLoopback(t, server);
  await t.rejects(httpGet(`${url}/error`), { code: 'FC_ERR_UPSTREAM', message: /^GET .*\/error: HTTP 500: / });
  t.ok(sent < 16 << 20, `the error answer was read no further than needed (${sent >> 20} MiB sent, socket buffers included)`);
  sent = 0;
  await t.rejects(httpGetJson(`${url}/declared`), { code: 'FC_ERR_UPSTREAM', message: /a JSON answer of 67108865 bytes, more than the 67108864 read/ });
  t.ok(sent < 16 << 20, `a declared length too large is refused before the body is read (${sent >> 20} MiB sent)`);
  sent = 0;
  await t.rejects(httpGetJson(`${url}/chunked`), { code: 'FC_ERR_UPSTREAM', message: /a JSON answer of more than the 67108864 bytes read/ });
  t.ok(sent < MAX_JSON_BYTES + (16 << 20), `a chunked one is read to the limit (${sent >> 20} MiB sent)`);
});

t.test('an answer that is not JSON is FC_ERR_UPSTREAM, not a raw SyntaxError', async (t) => {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"cut'));
  const url = await serveOnLoopback(t, server);
  await t.rejects(httpGetJson(`${url}/x`), { code: 'FC_ERR_UPSTREAM', message: /^GET .*\/x: the answer is not JSON/ });
  await t.rejects(httpPut(`${url}/x`, 'body'), { code: 'FC_ERR_UPSTREAM', message: /^PUT .*\/x: the answer is not JSON/ });
});

t.test("cacheLimits: a cache's connection may take its cacheTimeout to open, no more than any server's 10 s", async (t) => {
  t.equal(cacheLimits(2000).connectTimeout, 2000, 'a short cacheTimeout shortens it');
  t.equal(cacheLimits(30_000).connectTimeout, 10_000, "the default 30 s does not lengthen it: a black-holed cache costs 10 s, as before");
  t.equal(cacheLimits(30_000).idleTimeout, 30_000, 'silence: the cacheTimeout itself');
});
