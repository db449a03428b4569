// The cache's and the origin's byte counters against an independent measurement: byte-counting
// TCP relays between the machines and a real cache, between the cache and a real origin, and
// between the cache and a mirror's upstream. The counters count bodies (headers and chunked
// framing are not: deploy/OPERATIONS.md), per kind of content; the relays' bodies are read
// back from the bytes that crossed (wire-messages.ts).
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startByteRelay, type ByteRelay } from '../helpers/byte-relay.js';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { eventually } from '../helpers/wait.js';
import { allExchanges, type WireExchange } from '../helpers/wire-messages.js';
import { startCache } from './harness.js';
import { randomish, startUpstream } from './upstream-fixture.js';

interface Tally { bytesServed: number; bytesUpstream: number; bytesUploaded: number; savingsRatio: number }
interface CacheStats { kinds: Record<string, Tally>; inflightFills: number }
interface OriginStats { kinds: Record<string, { bytesIn: number; bytesOut: number }> }

/** The kind the cache (and the origin) counts a request's bytes under, from its target. */
function kindOf(target: string, mirror?: string): string {
  if (mirror) return `mirror:${mirror}`;
  const m = /^\/(cas|artifacts|projects|mirror\/([^/]+))\//.exec(target);
  if (m?.[2]) return `mirror:${m[2]}`;
  if (m) return m[1]!;
  return /^\/sha(256|512)\//.test(target) ? 'tooltool' : 'other';
}

/** Sums `field` of the exchanges `relay` saw, by kind. */
function byKind(relay: ByteRelay, field: (e: WireExchange) => number, mirror?: string): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const e of allExchanges(relay.connections)) {
    const n = field(e);
    if (n > 0) sums[kindOf(e.target, mirror)] = (sums[kindOf(e.target, mirror)] ?? 0) + n;
  }
  return sums;
}

/** The non-zero `field` of each kind of `kinds`. */
function nonZero<T>(kinds: Record<string, T>, field: (t: T) => number): Record<string, number> {
  return Object.fromEntries(Object.entries(kinds).map(([k, v]) => [k, field(v)]).filter(([, n]) => n !== 0));
}

const getJson = async <T>(url: string): Promise<T> => (await request(url)).body.json() as Promise<T>;

/** A GET whose body is read to its end; resolves to its status, or 0 when the answer was cut. */
async function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  try {
    const res = await request(url, { headers });
    for await (const _chunk of res.body) {
      // read to its end
    }
    return res.statusCode;
  } catch {
    return 0;
  }
}

async function put(url: string, body: Buffer, token: string): Promise<number> {
  const res = await request(url, { method: 'PUT', body, headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  return res.statusCode;
}

const SIZES = { large: 300_000, small: 5_000, ranged: 200_000, tooltool: 40_000, aborted: 2_000_000, cutSmall: 12_000, cutLarge: 200_000 };

/** The blobs of the mix (SIZES), uploaded to the origin itself (not through the relays): their hex digests. */
async function blobs(originUrl: string): Promise<Record<keyof typeof SIZES, string>> {
  const out: Record<string, string> = {};
  for (const [name, size] of Object.entries(SIZES)) out[name] = await uploadBlob(originUrl, randomish(size));
  return out as Record<keyof typeof SIZES, string>;
}

/** A real origin and cache, a mirror upstream, and a relay in front of each of them. */
async function relayedFleet(t: Test) {
  const dirs = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: `${dirs}/origin` });
  const { up, upUrl } = await startUpstream(t);
  const toOrigin = await startByteRelay(t, origin.url);
  const toMirror = await startByteRelay(t, upUrl);
  const { url: cacheUrl } = await startCache(t, { upstream: toOrigin.url, mirrors: { deb: { url: toMirror.url } } }, `${dirs}/cache`);
  const machines = await startByteRelay(t, cacheUrl);
  return { origin, up, toOrigin, toMirror, cacheUrl, machines };
}

t.test('the counters match what crossed the sockets, per link and kind', async (t) => {
  const { origin, up, toOrigin, toMirror, cacheUrl, machines } = await relayedFleet(t);
  const hex = await blobs(origin.url);
  const originBefore = await getJson<OriginStats>(`${origin.url}/-/stats`); // the uploads above are not the link's
  const via = machines.url;
  const cas = (h: string): string => `${via}/cas/sha256/${h}`;

  // blobs: a miss two machines ask at once (collapsed, or a hit), then a hit; a small miss and hit
  t.same(await Promise.all([get(cas(hex.large)), get(cas(hex.large))]), [200, 200]);
  t.equal(await get(cas(hex.large)), 200);
  t.equal(await get(cas(hex.small)), 200);
  t.equal(await get(cas(hex.small)), 200);
  // ranges of a miss and of a hit; HEADs of a stored blob and of one not stored
  t.equal(await get(cas(hex.ranged), { range: 'bytes=100-1099' }), 206);
  t.equal(await get(cas(hex.ranged), { range: 'bytes=5000-' }), 206);
  t.equal((await request(cas(hex.large), { method: 'HEAD' })).statusCode, 200);
  t.equal((await request(cas(hex.tooltool), { method: 'HEAD' })).statusCode, 200);
  // tooltool's alias, and a blob the origin lacks (its 404 passes through)
  t.equal(await get(`${via}/sha256/${hex.tooltool}`), 200);
  t.equal(await get(`${via}/sha256/${hex.tooltool}`), 200);
  t.equal(await get(cas('e'.repeat(64))), 404);
  // uploads through the cache: a blob and an artifact, then the artifact's name read twice (a 304 revalidation)
  const blob = randomish(70_000);
  const blobUrl = cas(createHash('sha256').update(blob).digest('hex'));
  t.equal(await put(blobUrl, blob, origin.token), 201);
  const again = await put(blobUrl, blob, origin.token);
  t.ok(again >= 200 && again < 300, `a blob uploaded again is accepted (${again})`);
  t.equal(await put(`${via}/artifacts/run1/job1/log.txt`, randomish(30_000), origin.token), 201);
  t.equal(await get(`${via}/artifacts/run1/job1/log.txt`), 200);
  t.equal(await get(`${via}/artifacts/run1/job1/log.txt`), 200);
  // a mirror's object, fetched then revalidated (304)
  up.objects.set('/pool/a.deb', { body: randomish(50_000), headers: { etag: '"a1"', 'cache-control': 'no-cache' } });
  t.equal(await get(`${via}/mirror/deb/pool/a.deb`), 200);
  t.equal(await get(`${via}/mirror/deb/pool/a.deb`), 200);
  // a mirror's object whose revalidation meets a 5xx with a body: served stale (stale-if-error), the 5xx's body read and dropped
  up.objects.set('/pool/b.deb', { body: randomish(20_000), headers: { etag: '"b1"', 'cache-control': 'max-age=0, stale-if-error=600' } });
  t.equal(await get(`${via}/mirror/deb/pool/b.deb`), 200);
  up.objects.set('/pool/b.deb', { status: 503, body: randomish(3_000), headers: { 'cache-control': 'no-store' } });
  t.equal(await get(`${via}/mirror/deb/pool/b.deb`), 200, 'served stale');
  // one the mirror lacks: its 404, a body of no stated length (chunked), passed on to the machine
  t.equal(await get(`${via}/mirror/deb/pool/missing.deb`), 404);
  // a download the machine gives up after its first 100 kB (the fill goes on, to keep the blob)
  const aborted = await request(cas(hex.aborted));
  let taken = 0;
  for await (const chunk of aborted.body) {
    taken += (chunk as Buffer).length;
    if (taken >= 100_000) break; // leaving the loop destroys the body, and the connection
  }
  // fills whose upstream dies mid-body: a small blob (answered whole, so a 502) and a large one (cut)
  toOrigin.cutAnswerAfter(6_000);
  t.equal(await get(cas(hex.cutSmall)), 502);
  toOrigin.cutAnswerAfter(100_000);
  t.equal(await get(cas(hex.cutLarge)), 0, 'the large answer is cut');

  const stats = async (): Promise<CacheStats> => getJson<CacheStats>(`${cacheUrl}/-/stats`);
  await eventually('fills ended', async () => (await stats()).inflightFills === 0);
  const cache = await stats();
  // The cache counts the bodies of what is read (GET); not the short answers to uploads, nor
  // its own error answers (deploy/OPERATIONS.md): those are left out of the relays' sums.
  const read = (e: WireExchange): boolean => e.method === 'GET';
  const upstreamSide = { ...byKind(toOrigin, (e) => (read(e) ? e.answerBody : 0)), ...byKind(toMirror, (e) => e.answerBody, 'deb') };
  t.same(nonZero(cache.kinds, (k) => k.bytesUpstream), upstreamSide, 'bytes upstream: the bodies that came from the origin and the mirror');
  t.same(nonZero(cache.kinds, (k) => k.bytesUploaded), byKind(toOrigin, (e) => (e.status !== undefined && e.status < 300 ? e.requestBody : 0)), 'bytes uploaded: the bodies of the PUTs the origin accepted');
  // Served: what the cache hands its socket, so the aborted answer and the cut one (the large
  // fill's) count what went out: at least what crossed the relay, at most their blobs.
  const cutShort = (e: WireExchange): boolean => e.target.endsWith(hex.cutLarge) || e.target.endsWith(hex.aborted);
  const whole = (e: WireExchange): boolean => read(e) && e.status !== undefined && e.status !== 502 && !cutShort(e);
  const served = nonZero(cache.kinds, (k) => k.bytesServed);
  const wholeServed = byKind(machines, (e) => (whole(e) ? e.answerBody : 0));
  t.same({ ...served, cas: wholeServed.cas }, wholeServed, 'bytes served: the bodies the machines got, but the ones cut short');
  const cutServed = (served.cas ?? 0) - (wholeServed.cas ?? 0);
  const cutGot = byKind(machines, (e) => (read(e) && cutShort(e) ? e.answerBody : 0)).cas ?? 0;
  t.ok(cutGot > 0 && cutGot <= cutServed && cutServed <= SIZES.aborted + SIZES.cutLarge, `the answers cut short: ${cutServed} bytes served, ${cutGot} crossed the relay`);

  // savings = (served − upstream) / served (deploy/OPERATIONS.md): here negative for the blobs,
  // whose ranges, aborted download and cut fills fetched more than the machines took
  const ratios = (of: (k: Tally) => number): Record<string, string> => Object.fromEntries(Object.entries(cache.kinds).map(([kind, k]) => [kind, of(k).toFixed(6)]));
  t.ok(cache.kinds.cas!.bytesUpstream > cache.kinds.cas!.bytesServed, 'the blobs cost the link more than they served');
  t.same(ratios((k) => k.savingsRatio), ratios((k) => (k.bytesServed === 0 ? 0 : (k.bytesServed - k.bytesUpstream) / k.bytesServed)), 'each savingsRatio is as defined, a negative one too');

  // The origin counts what it hands its socket: of the answers the relay cut, more than crossed.
  const originAfter = await getJson<OriginStats>(`${origin.url}/-/stats`);
  const change = (field: 'bytesIn' | 'bytesOut'): Record<string, number> =>
    nonZero(originAfter.kinds, (k) => k[field] - (originBefore.kinds[kindFor(originAfter, k)]?.[field] ?? 0));
  const cutByRelay = (e: WireExchange): boolean => e.target.endsWith(hex.cutSmall) || e.target.endsWith(hex.cutLarge);
  const out = change('bytesOut');
  const uncut = byKind(toOrigin, (e) => (cutByRelay(e) ? 0 : e.answerBody));
  t.same({ ...out, cas: uncut.cas }, uncut, "the origin's bytes out: the bodies it sent the cache, but the cut ones");
  const cutCounted = (out.cas ?? 0) - (uncut.cas ?? 0);
  const cutCrossed = byKind(toOrigin, (e) => (cutByRelay(e) ? e.answerBody : 0)).cas ?? 0;
  t.ok(cutCrossed <= cutCounted && cutCounted <= SIZES.cutSmall + SIZES.cutLarge, `the cut answers: ${cutCounted} bytes counted by the origin, ${cutCrossed} crossed the relay`);
  t.same(change('bytesIn'), byKind(toOrigin, (e) => e.requestBody), "the origin's bytes in: the bodies the cache uploaded");
});

/** The kind under which `stats` holds `tally` (its key). */
function kindFor<T>(stats: { kinds: Record<string, T> }, tally: T): string {
  return Object.entries(stats.kinds).find(([, v]) => v === tally)![0];
}

t.test('a changed name whose new body upstream cuts counts the bytes that came', async (t) => {
  const { origin, toOrigin, cacheUrl } = await relayedFleet(t);
  const name = `${origin.url}/artifacts/run1/job1/small.log`;
  t.equal(await put(name, randomish(12_000), origin.token), 201);
  t.equal(await get(`${cacheUrl}/artifacts/run1/job1/small.log`), 200, 'kept by the cache');
  t.ok([200, 201].includes(await put(name, randomish(12_000), origin.token)), 'changed at the origin');
  toOrigin.cutAnswerAfter(6_000); // the revalidation's 200, a small body the fill reads whole
  t.equal(await get(`${cacheUrl}/artifacts/run1/job1/small.log`), 502);
  const crossed = byKind(toOrigin, (e) => e.answerBody).artifacts ?? 0;
  t.ok(crossed > 12_000, `the first body and part of the second crossed (${crossed} bytes)`);
  await eventually('the cut fill counted', async () => (await getJson<CacheStats>(`${cacheUrl}/-/stats`)).inflightFills === 0);
  t.equal((await getJson<CacheStats>(`${cacheUrl}/-/stats`)).kinds.artifacts?.bytesUpstream, crossed, 'bytes upstream: both bodies, the cut one as far as it came');
});

t.test("a tooltool mirror's redirects: the body of a 302 and the first byte a HEAD's GET takes count as bytes upstream", async (t) => {
  const stored = randomish(30_000);
  const hex = createHash('sha512').update(stored).digest('hex');
  const absent = 'f'.repeat(128); // HEAD: the storage has a blob under it the cache does not hold
  const storage = await startUpstream(t);
  const blobs = new Map([[`/s3/${hex}`, stored], [`/s3/${absent}`, randomish(9_000)]]);
  // a storage host answers a range (the HEAD's GET asks for the first byte)
  storage.up.handler = (req, res) => {
    const body = blobs.get(req.url ?? '');
    if (!body) return false;
    if (req.headers.range === 'bytes=0-0') res.writeHead(206, { 'content-range': `bytes 0-0/${body.length}`, 'content-length': '1' }).end(body.subarray(0, 1));
    else res.writeHead(200, { 'content-length': String(body.length) }).end(body);
    return true;
  };
  const toStorage = await startByteRelay(t, storage.upUrl);
  const tooltool = await startUpstream(t);
  // a tooltool server's 302 carries a little HTML, as Flask's does
  tooltool.up.handler = (req, res) => {
    const m = /^\/sha512\/([0-9a-f]{128})$/.exec(req.url ?? '');
    if (!m) return false;
    res.writeHead(302, { location: `${toStorage.url}/s3/${m[1]}`, 'content-type': 'text/html' }).end(`<a href="${toStorage.url}/s3/${m[1]}">redirecting</a>`);
    return true;
  };
  const toTooltool = await startByteRelay(t, tooltool.upUrl);
  const { url } = await startCache(t, { upstream: 'http://127.0.0.1:9', mirrors: { tt: { url: toTooltool.url, tooltool: true } } }, t.testdir());
  t.equal(await get(`${url}/mirror/tt/sha512/${hex}`), 200, 'a miss, filled through the redirect');
  t.equal(await get(`${url}/mirror/tt/sha512/${hex}`), 200, 'a hit');
  t.equal((await request(`${url}/mirror/tt/sha512/${absent}`, { method: 'HEAD' })).statusCode, 200, 'a HEAD of a blob not held, through the redirect');
  const crossed = (relay: ByteRelay): number => allExchanges(relay.connections).reduce((sum, e) => sum + e.answerBody, 0);
  const redirects = allExchanges(toTooltool.connections).filter((e) => e.status === 302 && e.answerBody > 0).length;
  t.equal(redirects, 1, "the GET's redirect crossed with a body (the HEAD's has none)");
  await eventually('fills ended', async () => (await getJson<CacheStats>(`${url}/-/stats`)).inflightFills === 0);
  const counted = (await getJson<CacheStats>(`${url}/-/stats`)).kinds['mirror:tt']?.bytesUpstream;
  t.equal(counted, crossed(toTooltool) + crossed(toStorage), `bytes upstream: the blob, the 302's body and the HEAD's first byte (${crossed(toTooltool)} + ${crossed(toStorage)})`);
});
