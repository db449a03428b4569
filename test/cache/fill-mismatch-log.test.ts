// A blob whose upstream sends bytes of another digest: the cache's log names the request
// upstream was asked (credentials and query hidden), so that the operator can tell which
// upstream sent them; the cache's client is told the mismatch as before, with no URL of
// the network behind the cache. After a redirect, the log names the target that sent the
// bytes (its query, a signature, hidden). A body shorter than upstream announced is logged
// as `fill failed` too, as every other fill failure: undici itself fails it.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { serveOnLoopback } from '../helpers/loopback-server.js';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { startServerProcess, type RunningServer } from '../helpers/processes.js';
import { flipped, startTamperingProxy } from '../helpers/tampering-proxy.js';
import { eventually } from '../helpers/wait.js';
import { randomish, sha256, startUpstream } from './upstream-fixture.js';

/** The cache's "fill failed" log line, once it came. */
async function fillFailedLine(cache: RunningServer): Promise<string> {
  await eventually('the "fill failed" line', () => cache.stderr().includes('"msg":"fill failed"'), 5000);
  return cache.stderr().split('\n').find((l) => l.includes('"msg":"fill failed"')) ?? '';
}

t.test("a fill of wrong bytes is logged with the upstream's request; the client's answer names no upstream URL", async (t) => {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: `${dir}/origin` });
  const hex = await uploadBlob(origin.url, randomBytes(1024));
  const proxy = await startTamperingProxy(t, origin.url, (_path, body) => flipped(body));
  const withCredentials = proxy.replace('http://', 'http://fc:s3cret@');
  const cache = await startServerProcess(t, ['cache', '--upstream', withCredentials, '--listen', '127.0.0.1:0', '--data', `${dir}/cache`], { FLEETCACHE_LOG_LEVEL: 'warn' });

  const res = await request(`${cache.url}/cas/sha256/${hex}`);
  const answer = await res.body.text();
  t.equal(res.statusCode, 502);
  t.match(JSON.parse(answer), { code: 'FC_ERR_UPSTREAM', message: new RegExp(`^digest mismatch: expected sha256:${hex}, got sha256:[0-9a-f]{64}$`) }, 'the mismatch, as before');
  t.notMatch(answer, /127\.0\.0\.1|http:/, 'no upstream URL in the answer');

  await eventually('the "fill failed" line', () => cache.stderr().includes('"msg":"fill failed"'), 5000);
  const line = cache.stderr().split('\n').find((l) => l.includes('"msg":"fill failed"')) ?? '';
  t.match(line, `GET ${proxy}/cas/sha256/${hex}: digest mismatch: expected sha256:${hex}`, 'the log names the request upstream was asked');
  t.notMatch(cache.stderr(), /s3cret/, 'not its credentials');
  await cache.stop();
});

t.test('a redirected fill of wrong bytes is logged with the URL that sent them, not the one asked', async (t) => {
  const body = randomish(1024);
  const hex = sha256(body);
  const storage = await serveOnLoopback(t, createServer((_req, res) => void res.writeHead(200, { 'content-length': body.length }).end(flipped(body))));
  const upstream = await serveOnLoopback(t, createServer((_req, res) => void res.writeHead(302, { location: `${storage}/s3/${hex}?X-Amz-Signature=s3cret` }).end()));
  const cache = await startServerProcess(t, ['cache', '--upstream', upstream, '--listen', '127.0.0.1:0', '--data', t.testdir()], { FLEETCACHE_LOG_LEVEL: 'warn' });

  const res = await request(`${cache.url}/cas/sha256/${hex}`);
  await res.body.text();
  t.equal(res.statusCode, 502);
  const line = await fillFailedLine(cache);
  t.match(line, `GET ${storage}/s3/${hex}?…: digest mismatch: expected sha256:${hex}`, 'the log names the redirect target');
  t.notMatch(cache.stderr(), /s3cret/, 'not its signature');
  await cache.stop();
});

t.test('a fill whose upstream sends less than it announced is logged as "fill failed"', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const size = 1024 * 1024;
  // Connection: close, so that the connection's end could be taken for the body's: undici
  // still fails a body shorter than its Content-Length (fill.ts's own check never meets one).
  const { hex } = up.addBlob(size, { connection: 'close' });
  up.options.dieAfter = size / 4;
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', t.testdir()], { FLEETCACHE_LOG_LEVEL: 'warn' });

  await t.rejects(request(`${cache.url}/cas/sha256/${hex}`).then((res) => res.body.arrayBuffer()), 'the answer is cut');
  t.match(JSON.parse(await fillFailedLine(cache)), { id: new RegExp(hex), err: /content-length/ });
  await cache.stop();
});
