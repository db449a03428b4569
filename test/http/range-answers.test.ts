// Range answers of the origin's blob replies (RFC 9110 §14): an unsatisfiable range is a
// 416 that says how long the object is; a HEAD ignores Range. A Range header built to make
// its parsing slow (runs of blanks) costs the origin and the cache no more than another.
import t from 'tap';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { request } from 'undici';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { startCache } from '../cache/harness.js';
import { startUpstream } from '../cache/upstream-fixture.js';

t.test('a 416 carries Content-Range: bytes */size', async (t) => {
  const origin = await startOrigin(t);
  const body = '0123456789abcdef';
  const hex = createHash('sha256').update(body).digest('hex');
  const put = await request(`${origin.url}/cas/sha256/${hex}`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}` }, body });
  await put.body.dump();
  await (await request(`${origin.url}/artifacts/r/j/f`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}` }, body })).body.dump();
  for (const path of [`/cas/sha256/${hex}`, '/artifacts/r/j/f']) {
    for (const range of ['bytes=16-20', 'bytes=-0']) {
      const res = await request(`${origin.url}${path}`, { headers: { range } });
      const text = await res.body.text();
      t.equal(res.statusCode, 416, `GET ${path} ${range}`);
      t.equal(res.headers['content-range'], 'bytes */16');
      t.equal((JSON.parse(text) as { code: string }).code, 'FC_ERR_RANGE');
      // GET is the only method with ranges (RFC 9110 §14.2): a HEAD answers as a GET without Range
      const head = await request(`${origin.url}${path}`, { method: 'HEAD', headers: { range } });
      await head.body.dump();
      t.equal(head.statusCode, 200, `HEAD ${path} ${range}`);
      t.equal(head.headers['content-length'], '16');
      t.notOk(head.headers['content-range']);
    }
  }
});

/** Requests sent at once by the test below: each blank Range cost a quarter of a second of the server's thread. */
const AT_ONCE = 8;
/** Blanks in a Range header: near node's 16 KiB limit on a request head. */
const BLANKS = 15_000;

/**
 * The CPU time (ms) this process (the servers and their client) spends answering `AT_ONCE`
 * GETs of `url` with `headers`, sent at once; their statuses. CPU time, not the time that
 * passed: a loaded machine that leaves the process waiting for a core adds none of it.
 */
async function timedGets(url: string, headers: Record<string, string>): Promise<{ ms: number; statuses: number[] }> {
  const started = process.cpuUsage();
  const statuses = await Promise.all(Array.from({ length: AT_ONCE }, async () => {
    const res = await request(url, { headers });
    await res.body.dump();
    return res.statusCode;
  }));
  const { user, system } = process.cpuUsage(started);
  return { ms: (user + system) / 1000, statuses };
}

t.test('a Range header of blanks then a letter takes no longer to answer than a plain one as long', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const onOrigin = `${origin.url}/cas/sha256/${await uploadBlob(origin.url, Buffer.from('0123456789abcdef'))}`;
  const { up, upUrl } = await startUpstream(t);
  const cache = await startCache(t, { upstream: upUrl }, join(dir, 'cache'));
  const onCache = `${cache.url}/cas/sha256/${up.addBlob(4096).hex}`;
  await (await request(onCache)).body.dump(); // stored: the next ones are hits

  for (const [where, url] of [['origin', onOrigin], ['cache', onCache]] as const) {
    // the same bytes in another field, and a range asked for, as a baseline
    const plain = await timedGets(url, { range: 'bytes=0-3', 'x-padding': 'a'.repeat(BLANKS) });
    const blank = await timedGets(url, { range: `bytes=${' '.repeat(BLANKS)}x` });
    t.same(plain.statuses, Array(AT_ONCE).fill(206), `${where}: the plain ones are ranges`);
    t.same(blank.statuses, Array(AT_ONCE).fill(200), `${where}: the blank ones ask no range: the whole object`);
    t.ok(blank.ms < 4 * plain.ms + 250, `${where}: ${Math.round(blank.ms)} ms of CPU for ${AT_ONCE} blank ranges, ${Math.round(plain.ms)} ms for plain ones`);
  }
});
