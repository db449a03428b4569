// A cache lets go of a connection whose request head does not arrive whole within
// clientHeaderTimeout, on the path that answers small hits before node takes a connection
// (early-hits.ts) as on node's own, but not of a body that takes longer; maxConnections
// closes a connection over it as it comes. (test/cache/workers-slow-head.test.ts: workers.)
import t from 'tap';
import { fetchHash, startCache } from './harness.js';
import { UpstreamFixture } from './upstream-fixture.js';
import { dribbleHead, getOn, idleBetween, openMany, silent, slowGet, slowPut } from '../helpers/slow-client.js';

const LIMIT_MS = 1000;
/** node looks for late heads every second: a cut comes within that after the limit, plus slack for a loaded machine. */
const LATEST_MS = LIMIT_MS + 2000;

t.test('a late request head is cut, a slow body is not', async (t) => {
  const up = new UpstreamFixture();
  const upstream = await up.start();
  t.teardown(() => up.stop());
  const cache = await startCache(t, { upstream, clientHeaderTimeout: '1s' }, t.testdir());
  // a small hit, kept in memory: answered on a new connection before node takes it
  const small = up.addBlob(4096);
  t.equal((await fetchHash(`${cache.url}/cas/sha256/${small.hex}`)).xcache, 'MISS');
  for (let hit = ''; hit !== 'HIT';) hit = (await fetchHash(`${cache.url}/cas/sha256/${small.hex}`)).xcache;
  const large = up.addBlob(5 * 1024 * 1024);
  up.options.rate = 2 * 1024 * 1024; // its fill streams for 2.5 s

  // all at once, to keep the file short; each checked in its own subtest
  const endings = {
    silent: silent(cache.url),
    dribbled: dribbleHead(cache.url),
    silentThenDribbled: dribbleHead(cache.url, { silentMs: 900 }),
    afterEarlyHit: dribbleHead(cache.url, { before: `GET /cas/sha256/${small.hex} HTTP/1.1\r\nHost: {host}\r\n\r\n` }),
    afterNodeAnswer: dribbleHead(cache.url, { before: 'GET /-/healthz HTTP/1.1\r\nHost: {host}\r\n\r\n' }),
    idleAfterAnswer: idleBetween(cache.url, `/cas/sha256/${small.hex}`, LIMIT_MS + 500),
    upload: slowPut(cache.url, 'some-token', Buffer.from('slow body, one byte at a time'), 2500),
    download: slowGet(`${cache.url}/cas/sha256/${large.hex}`, 0),
  };

  t.test('a connection that sends nothing (taken by the early path)', async (t) => {
    const { ms } = await endings.silent;
    t.ok(ms >= LIMIT_MS - 100 && ms <= LATEST_MS, `closed after ${ms} ms`);
  });
  t.test('a head sent a byte at a time', async (t) => {
    const { ms, answer } = await endings.dribbled;
    t.ok(ms >= LIMIT_MS - 100 && ms <= LATEST_MS, `closed after ${ms} ms`);
    t.match(answer, /^HTTP\/1\.1 408 .*FC_ERR_REQUEST_TIMEOUT/s, 'answered 408');
  });
  t.test('silent, then a head a byte at a time: the limit counts from the connection', async (t) => {
    const { ms } = await endings.silentThenDribbled;
    // node, given the connection at the head's first byte, would count from there: 1.9 s at the least
    t.ok(ms <= LIMIT_MS + 600, `closed after ${ms} ms`);
  });
  t.test('the next head after a hit answered early', async (t) => {
    const { ms, answer } = await endings.afterEarlyHit;
    t.ok(ms <= LATEST_MS, `closed ${ms} ms after its first byte`);
    t.match(answer, /HTTP\/1\.1 408 /, 'answered 408');
  });
  t.test('the next head after an answer of node\'s', async (t) => {
    const { ms, answer } = await endings.afterNodeAnswer;
    t.ok(ms <= LATEST_MS, `closed ${ms} ms after its first byte`);
    t.match(answer, /HTTP\/1\.1 408 /, 'answered 408');
  });
  t.test('a kept-alive connection idle past the limit after its first answer (answered early, no head in progress)', async (t) => {
    t.equal(await endings.idleAfterAnswer, 200, 'its next request is served');
  });
  t.test('an upload whose body takes longer than the limit', async (t) => {
    t.match((await endings.upload).answer, /^HTTP\/1\.1 201 /, 'forwarded whole');
  });
  t.test('a download that streams for longer than the limit', async (t) => {
    t.equal(await endings.download, large.hex, 'whole');
  });
});

t.test('maxConnections: a connection over it is closed as it comes', async (t) => {
  const up = new UpstreamFixture();
  const upstream = await up.start();
  t.teardown(() => up.stop());
  const cache = await startCache(t, { upstream, maxConnections: 2 }, t.testdir());
  const { closed, open: kept } = await openMany(cache.url, 3);
  t.equal(closed, 1, 'the third closed');
  t.equal(kept.length, 2);
  t.equal(await getOn(kept[0]!, cache.url, '/-/healthz'), 200, 'the ones within it are served');
  kept[1]!.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const again = await openMany(cache.url, 1);
  t.equal(again.closed, 0, 'one closed makes room');
  t.equal(await getOn(again.open[0]!, cache.url, '/-/healthz'), 200);
  for (const s of [...kept, ...again.open]) s.destroy();
});
