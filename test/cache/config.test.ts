// The cache's YAML configuration: `workers` and the message for a value that matches no
// branch of a union (file, line, field, and every accepted form); sizes, durations, listen, URLs.
import t from 'tap';
import { resolveCacheConfig } from '../../src/cache/config.js';
import { parseCacheConfig } from '../../src/cache/config-file.js';
import { DEFAULT_MAX_CONNECTIONS } from '../../src/http/connection-limits.js';
import { fetchHash, startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

t.test('workers: a number, or auto for one per CPU; default 1', async (t) => {
  const base = 'upstream: http://127.0.0.1:9\n';
  t.equal(resolveCacheConfig(parseCacheConfig(base, 'c.yaml')).workers, 1);
  t.equal(resolveCacheConfig(parseCacheConfig(`${base}workers: 3\n`, 'c.yaml')).workers, 3);
  t.ok(resolveCacheConfig(parseCacheConfig(`${base}workers: auto\n`, 'c.yaml')).workers! >= 1);
  t.throws(() => parseCacheConfig(`${base}workers: many\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: workers: must be integer or "auto"' });
  t.throws(() => parseCacheConfig(`${base}maxSize: [1]\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: maxSize: must be string or integer' });
  t.throws(() => parseCacheConfig(`${base}workers: 0\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: workers: must be >= 1 or "auto"' });
});

t.test('sizes and durations: a malformed one is refused with the file, line and field', async (t) => {
  const base = 'upstream: http://127.0.0.1:9\n';
  const resolved = resolveCacheConfig(parseCacheConfig(`${base}maxSize: 2GiB\nfillMemory: 256MiB\ntimeouts:\n  body: 90s\n`, 'c.yaml'));
  t.same([resolved.maxSize, resolved.fillMemory, resolved.timeouts.bodyMs], [2 * 1024 ** 3, 256 * 1024 ** 2, 90_000]);
  t.equal(resolveCacheConfig(parseCacheConfig(base, 'c.yaml')).fillMemory, 1024 ** 3, 'fillMemory: 1 GiB by default');
  t.throws(() => parseCacheConfig(`${base}fillMemory: lots\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: fillMemory: must be a size (e.g. 4096, 512MiB, 50GiB) or integer' });
  t.throws(() => parseCacheConfig(`${base}maxSize: 12 parsecs\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: maxSize: must be a size (e.g. 4096, 512MiB, 50GiB)' });
  // a malformed duration is told it is malformed, not that it is too long
  for (const malformed of ['soon', '-1s', '1h30', '30 sec']) {
    t.throws(() => parseCacheConfig(`${base}timeouts:\n  connect: ${malformed}\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:3: timeouts.connect: must be a duration such as 250ms, 30s, 5m' }, malformed);
  }
  t.throws(() => parseCacheConfig(`${base}clientHeaderTimeout: 1h30\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: clientHeaderTimeout: must be a duration such as 250ms, 30s, 5m' }, 'a timeout longer than 0, malformed');
  // a timer's longest wait is 2^31-1 ms: a longer one would fire at once
  t.throws(() => parseCacheConfig(`${base}timeouts:\n  body: 30d\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:3: timeouts.body: must be a duration of at most 24 days (e.g. 250ms, 30s, 5m)' });
  t.throws(() => parseCacheConfig(`${base}shutdownTimeout: .inf\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: /^c\.yaml:\d: shutdownTimeout: must be / });
});

t.test('clientHeaderTimeout and maxConnections: the limits on client connections', async (t) => {
  const base = 'upstream: http://127.0.0.1:9\n';
  const resolved = resolveCacheConfig(parseCacheConfig(`${base}clientHeaderTimeout: 10s\nmaxConnections: 5000\n`, 'c.yaml'));
  t.same([resolved.clientHeaderTimeoutMs, resolved.maxConnections], [10_000, 5000]);
  const byDefault = resolveCacheConfig(parseCacheConfig(base, 'c.yaml'));
  t.same([byDefault.clientHeaderTimeoutMs, byDefault.maxConnections], [undefined, DEFAULT_MAX_CONNECTIONS], 'the server\'s default head limit; a cap on connections by default (security by default)');
  t.throws(() => parseCacheConfig(`${base}clientHeaderTimeout: 0s\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: clientHeaderTimeout: must be a duration longer than 0 (e.g. 250ms, 30s, 5m)' });
  t.throws(() => parseCacheConfig(`${base}clientHeaderTimeout: 30d\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: clientHeaderTimeout: must be a duration of at most 24 days (e.g. 250ms, 30s, 5m)' });
  t.throws(() => parseCacheConfig(`${base}maxConnections: 0\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: maxConnections: must be >= 1' });
  t.throws(() => parseCacheConfig(`${base}maxConnections: many\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: maxConnections: must be integer' });
});

t.test('upstreamConnections: the connections to each upstream, a positive integer', async (t) => {
  const base = 'upstream: http://127.0.0.1:9\n';
  t.equal(resolveCacheConfig(parseCacheConfig(`${base}upstreamConnections: 64\n`, 'c.yaml')).upstreamConnections, 64);
  t.equal(resolveCacheConfig(parseCacheConfig(base, 'c.yaml')).upstreamConnections, undefined, 'unset: the Upstream\'s default');
  t.throws(() => parseCacheConfig(`${base}upstreamConnections: 0\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: upstreamConnections: must be >= 1' });
  t.throws(() => parseCacheConfig(`${base}upstreamConnections: 1.5\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: upstreamConnections: must be integer' });
  t.throws(() => parseCacheConfig(`${base}upstreamConnections: unlimited\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: upstreamConnections: must be integer' });
});

t.test('listen: HOST:PORT, checked with the file, line and field', async (t) => {
  const base = 'upstream: http://127.0.0.1:9\n';
  t.equal(parseCacheConfig(`${base}listen: "[::1]:0"\n`, 'c.yaml').listen, '[::1]:0');
  t.throws(() => parseCacheConfig(`${base}listen: localhost\n`, 'c.yaml'), {
    code: 'FC_ERR_CONFIG',
    message: 'c.yaml:2: listen: must be HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8081, [::1]:0)',
  });
});

t.test('upstream and mirror URLs: http or https, checked with the file, line and field', async (t) => {
  const phrase = 'must be an http or https URL with no query or fragment (e.g. http://origin.example:8080)';
  t.throws(() => parseCacheConfig('upstream: origin:8080\n', 'c.yaml'), { code: 'FC_ERR_CONFIG', message: `c.yaml:1: upstream: ${phrase}` });
  t.throws(() => parseCacheConfig('upstream: http://o:1\nmirrors:\n  debian:\n    url: ftp://deb.example/\n', 'c.yaml'), {
    code: 'FC_ERR_CONFIG', message: `c.yaml:4: mirrors.debian.url: ${phrase}`,
  });
  t.equal(resolveCacheConfig(parseCacheConfig('upstream: https://o.example/\n', 'c.yaml')).upstream, 'https://o.example', 'a trailing slash is dropped');
});

t.test('upstream and mirror URLs with a query or fragment are refused, not taken without it: it was never sent, and logged whole', async (t) => {
  const phrase = 'must be an http or https URL with no query or fragment (e.g. http://origin.example:8080)';
  t.throws(() => parseCacheConfig('upstream: http://o:1/?token=s3cret\n', 'c.yaml'), { code: 'FC_ERR_CONFIG', message: `c.yaml:1: upstream: ${phrase}` });
  t.throws(() => parseCacheConfig('upstream: http://o:1\nmirrors:\n  s3:\n    url: https://bucket.example/base?X-Amz-Signature=s3cret\n', 'c.yaml'), {
    code: 'FC_ERR_CONFIG', message: `c.yaml:4: mirrors.s3.url: ${phrase}`,
  });
  t.throws(() => parseCacheConfig('upstream: http://o:1#part\n', 'c.yaml'), { code: 'FC_ERR_CONFIG', message: `c.yaml:1: upstream: ${phrase}` });
  // Given as flags (--upstream): the same refusal, naming neither query nor credentials.
  t.throws(() => resolveCacheConfig({ region: 'a', listen: '127.0.0.1:0', upstream: 'http://u:pw@o.example:1/base?token=s3cret' }), {
    message: 'upstream: the URL of http://o.example:1/base has a query or fragment, which no request to it would carry (give its path only)',
  });
});

t.test('a cache holds no write token: tokenFile is refused (it made the cache write for whoever reached it)', async (t) => {
  t.throws(() => parseCacheConfig('upstream: http://127.0.0.1:9\ntokenFile: /etc/fleetcache/token\n', 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: tokenFile: unknown field "tokenFile"' });
});

t.test('a timeout in fractions of a millisecond is taken to the whole millisecond: misses are served, not all failed', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blob = up.addBlob(4096);
  // 2.5 s and 60 s, each with half a millisecond more, in both spellings: ms and a number of seconds
  const file = parseCacheConfig(`upstream: ${upUrl}\ntimeouts:\n  headers: 2500.5ms\n  body: 60.0005\n`, 'c.yaml');
  const { url } = await startCache(t, file, t.testdir());
  const got = await fetchHash(`${url}/cas/sha256/${blob.hex}`);
  t.same([got.status, got.size], [200, blob.body.length], 'the miss is filled from the upstream');
});

t.test('privateRedirects: auto, allow or refuse, checked with the file, line and field', async (t) => {
  const base = 'upstream: http://127.0.0.1:9\n';
  t.equal(resolveCacheConfig(parseCacheConfig(`${base}privateRedirects: refuse\n`, 'c.yaml')).privateRedirects, 'refuse');
  t.equal(resolveCacheConfig(parseCacheConfig(base, 'c.yaml')).privateRedirects, undefined, 'unset: the Upstream\'s default (auto)');
  t.throws(() => parseCacheConfig(`${base}privateRedirects: yes\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: /^c\.yaml:2: privateRedirects: / });
});
