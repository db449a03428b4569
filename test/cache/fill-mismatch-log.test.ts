// A blob whose upstream sends bytes of another digest: the cache's log names the request
// upstream was asked (credentials and query hidden), so that the operator can tell which
// upstream sent them; the cache's client is told the mismatch as before, with no URL of
// the network behind the cache.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { request } from 'undici';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { startServerProcess } from '../helpers/processes.js';
import { flipped, startTamperingProxy } from '../helpers/tampering-proxy.js';
import { eventually } from '../helpers/wait.js';

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
