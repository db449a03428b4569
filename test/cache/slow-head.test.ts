// A cache lets go of a connection whose request head does not arrive whole within
// clientHeaderTimeout, on the path that answers small hits before node takes a connection
// (early-hits.ts) as on node's own, the next head on a kept-alive connection too (empty
// lines before it do not put it off), but not of a body that takes longer; maxConnections
// closes a connection over it as it comes. (test/cache/workers-slow-head.test.ts: workers.)
import t from 'tap';
import { fetchHash, startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';
import { checkCapOfTwo, checkEmptyLines, checkSlowHeads, slowGet, slowPut } from '../helpers/slow-client.js';

const LIMIT_MS = 1000;

t.test('a late request head is cut, a slow body is not', async (t) => {
  const { up, upUrl: upstream } = await startUpstream(t);
  const cache = await startCache(t, { upstream, clientHeaderTimeout: '1s' }, t.testdir());
  // a small hit, kept in memory: answered on a new connection before node takes it
  const small = up.addBlob(4096);
  t.equal((await fetchHash(`${cache.url}/cas/sha256/${small.hex}`)).xcache, 'MISS');
  for (let hit = ''; hit !== 'HIT';) hit = (await fetchHash(`${cache.url}/cas/sha256/${small.hex}`)).xcache;
  const large = up.addBlob(5 * 1024 * 1024);
  up.options.rate = 2 * 1024 * 1024; // its fill streams for 2.5 s

  // all at once, to keep the file short; each checked in its own subtest
  checkSlowHeads(t, cache.url, LIMIT_MS, { 'a hit answered early': `/cas/sha256/${small.hex}`, 'an answer of node\'s': '/-/healthz' });
  const upload = slowPut(cache.url, 'some-token', Buffer.from('slow body, one byte at a time'), 2500);
  const download = slowGet(`${cache.url}/cas/sha256/${large.hex}`, 0);
  t.test('an upload whose body takes longer than the limit', async (t) => {
    t.match((await upload).answer, /^HTTP\/1\.1 201 /, 'forwarded whole');
  });
  t.test('a download that streams for longer than the limit', async (t) => {
    t.equal(await download, large.hex, 'whole');
  });
});

t.test('a kept-alive connection that sends empty lines only is cut by the keep-alive limit plus the head limit', async (t) => {
  const { up, upUrl: upstream } = await startUpstream(t);
  const cache = await startCache(t, { upstream, clientHeaderTimeout: '1s' }, t.testdir());
  const small = up.addBlob(4096);
  for (let hit = ''; hit !== 'HIT';) hit = (await fetchHash(`${cache.url}/cas/sha256/${small.hex}`)).xcache;
  // the hit is answered before node takes the connection, which an empty line then hands to it
  checkEmptyLines(t, cache.app.server, cache.url, LIMIT_MS, { 'an answer of node\'s': '/-/healthz', 'a hit answered early': `/cas/sha256/${small.hex}` });
});

t.test('maxConnections: a connection over it is closed as it comes', async (t) => {
  const { upUrl: upstream } = await startUpstream(t);
  const cache = await startCache(t, { upstream, maxConnections: 2 }, t.testdir());
  await checkCapOfTwo(t, cache.url);
});
