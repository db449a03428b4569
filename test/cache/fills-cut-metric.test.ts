// An upstream that dies (or restarts) in the middle of a fill cuts the answers of every client
// reading it. No error answer is given (the 200 had begun), so fleetcache_cache_errors_total
// does not see it: fleetcache_cache_fills_cut_total does, summed over the workers.
import t from 'tap';
import { startServerProcess } from '../helpers/processes.js';
import { fetchHash, metricSum, startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

t.test('a fill its upstream cut midway is counted; one that ends whole is not', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', t.testdir(), '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const size = 4 * 1024 * 1024;
  const { hex } = up.addBlob(size);
  up.options.rate = 16 * 1024 * 1024;
  up.options.dieAfter = size / 4;
  const cut = await fetchHash(`${cache.url}/cas/sha256/${hex}`).then((f) => f.status, (err: Error) => err);
  t.type(cut, Error, 'the client sees its answer cut');
  t.equal(await metricSum(cache.url, 'fleetcache_cache_fills_cut_total'), 1, 'one fill cut');
  t.equal(await metricSum(cache.url, 'fleetcache_cache_errors_total'), 0, 'which no error answer counts');

  const whole = await fetchHash(`${cache.url}/cas/sha256/${hex}`);
  t.equal(whole.hash, hex, 'the next request fills it whole');
  t.equal(await metricSum(cache.url, 'fleetcache_cache_fills_cut_total'), 1, 'and is not counted');
  await cache.stop();
});

// A small body (up to SMALL_MAX) is handed out whole once verified: a fill of one that fails
// after its head (its bytes do not match the digest) gives its clients an error answer, which
// errors_total counts; nobody's answer was cut. One process shows it: the cache runs in
// this one (the sum over workers is the test above's).
t.test('a small fill that fails after its head is an error answer, not a cut', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const cache = await startCache(t, { upstream: upUrl }, t.testdir());
  const { hex } = up.addBlob(4096);
  const { body: other } = up.addBlob(4096);
  up.objects.set(`/cas/sha256/${hex}`, { body: other }); // upstream sends the wrong bytes
  const got = await fetchHash(`${cache.url}/cas/sha256/${hex}`);
  t.equal(got.status, 502, 'the client gets an error answer');
  t.equal(await metricSum(cache.url, 'fleetcache_cache_errors_total'), 1, 'which errors_total counts');
  t.equal(await metricSum(cache.url, 'fleetcache_cache_fills_cut_total'), 0, 'and no fill is counted as cut');
});
