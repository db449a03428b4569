// Large bodies by sendfile (src/http/zero-copy.ts, src/native/sendfile.c): exact bytes and
// ranges, counted; a stalled client cut by the idle timeout; clients that leave end their
// transfers (no thread left behind); the buffer path when switched off; the cache's hits
// and a reader that joins a fill late.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { request } from 'undici';
import { zeroCopyStatus } from '../../src/http/zero-copy.js';
import { fetchHash, startCache } from '../cache/harness.js';
import { sha256, startUpstream } from '../cache/upstream-fixture.js';
import { startOrigin, TEST_TOKEN, uploadBlob, type TestOrigin } from '../helpers/origin.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

const MiB = 1024 * 1024;
/** Larger than the socket buffers of a loopback connection: a client that stops reading leaves the transfer waiting. */
const SIZE = 24 * MiB + 7;
/** Where that is not the point: well past FIRST, and past the ranges asked. */
const MEDIUM = 8 * MiB + 7;
/** What src/http/send-file.ts writes itself, with the headers. */
const FIRST = 64 * 1024;
/** The bodies, made once for the file (random bytes cost CPU; no test needs bodies of its own). */
const large = randomBytes(SIZE);
const medium = randomBytes(MEDIUM);

/**
 * The origin of the tests that neither stop nor reconfigure theirs, with `large` and `medium`
 * uploaded once for the file. Its idle timeout is the stalled client's: the checks of that
 * test fit well within it, and the other clients read on.
 */
let sharedOrigin: Promise<{ origin: TestOrigin; largeHex: string; mediumHex: string }> | undefined;
function originWithBlobs(): NonNullable<typeof sharedOrigin> {
  return (sharedOrigin ??= (async () => {
    const origin = await startOrigin(t, { idleTimeoutMs: 1500 });
    return { origin, largeHex: await uploadBlob(origin.url, large), mediumHex: await uploadBlob(origin.url, medium) };
  })());
}

/** A series of a server's /-/metrics (its first sample). */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await request(`${url}/-/metrics`)).body.text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /-/metrics`);
  return Number(m[1]);
}

const sendfileBytes = (url: string): Promise<number> => metric(url, 'fleetcache_sendfile_bytes_total');

/** Transfers running in this process: their threads (named in src/native/sendfile.c). */
async function transferThreads(): Promise<number> {
  let n = 0;
  for (const task of await readdir('/proc/self/task')) {
    if ((await readFile(`/proc/self/task/${task}/comm`, 'utf8').catch(() => '')).trim() === 'fc-sendfile') n++;
  }
  return n;
}

t.test('the addon is built and loads (CI builds it: scripts/build-native.mjs)', async (t) => {
  t.same(zeroCopyStatus(), { enabled: true });
});

t.test('whole bodies and ranges go by sendfile, exact and counted once', async (t) => {
  const { origin, mediumHex: hex } = await originWithBlobs();
  const uploadAnswer = origin.context.ledger.snapshot().kinds.cas?.bytesOut ?? 0; // the JSON answers to the PUTs
  const before = await sendfileBytes(origin.url);
  // Whole bodies are hashed as they come (fetchHash), not gathered into one buffer first.
  const whole = await fetchHash(`${origin.url}/cas/sha256/${hex}`);
  t.equal(whole.status, 200);
  t.equal(whole.hash, hex, 'whole body');
  // All but the first 64 KiB (written with the headers) went by sendfile.
  await eventually('sendfile bytes of the whole body', async () => (await sendfileBytes(origin.url)) - before === MEDIUM - FIRST);
  let served = MEDIUM;
  for (const [start, end] of [[MiB - 1, 5 * MiB], [MEDIUM - 3 * MiB, MEDIUM - 1], [7, 7 + MiB]] as const) {
    const res = await request(`${origin.url}/cas/sha256/${hex}`, { headers: { range: `bytes=${start}-${end}` } });
    t.equal(res.statusCode, 206);
    t.ok(Buffer.from(await res.body.arrayBuffer()).equals(medium.subarray(start, end + 1)), `range ${start}-${end}`);
    served += end - start + 1;
  }
  // Counted when a transfer ends, which the client may see after its last byte.
  await eventually('bytes out counted once each', () => origin.context.ledger.snapshot().kinds.cas?.bytesOut === uploadAnswer + served);
  t.equal(await transferThreads(), 0, 'no transfer thread left');
});

t.test('a client that stops reading is cut after the idle timeout, and its transfer ends', async (t) => {
  const { origin, largeHex: hex } = await originWithBlobs(); // its idle timeout: 1.5 s
  const { port } = new URL(origin.url);
  const sock = connect(Number(port), '127.0.0.1', () => sock.write(`GET /cas/sha256/${hex} HTTP/1.1\r\nHost: x\r\n\r\n`));
  t.teardown(() => void sock.destroy());
  sock.on('error', () => undefined); // a reset is one way of being cut
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  let bytes = 0;
  await new Promise<void>((resolve) => {
    let stalled = false;
    sock.on('data', (c: Buffer) => {
      bytes += c.length;
      if (bytes > 2 * MiB && !stalled) {
        stalled = true;
        sock.pause(); // stop reading: the socket buffers fill, then sendfile waits
        resolve();
      }
    });
  });
  await eventually('a transfer is running', async () => (await transferThreads()) > 0, 5000);
  t.equal(await metric(origin.url, 'fleetcache_sendfile_transfers'), 1, 'one transfer running');
  // Ended by the server's idle timeout while this client still holds its end open.
  await eventually('the stalled transfer ended', async () => (await transferThreads()) === 0, 10_000);
  t.equal(await metric(origin.url, 'fleetcache_sendfile_transfers'), 0, 'none running');
  sock.resume();
  await closed;
  t.ok(bytes < SIZE, `cut short (${bytes} bytes, headers included, of a ${SIZE} byte body)`);
  t.equal((await fetchHash(`${origin.url}/cas/sha256/${hex}`)).hash, hex, 'the server goes on');
});

t.test('clients that leave mid-body end their transfers; the server keeps serving', async (t) => {
  const { origin, largeHex: hex } = await originWithBlobs();
  await Promise.all(Array.from({ length: 8 }, async () => {
    const ac = new AbortController();
    const res = await request(`${origin.url}/cas/sha256/${hex}`, { signal: ac.signal });
    let got = 0;
    for await (const chunk of res.body) {
      got += (chunk as Buffer).length;
      if (got > 3 * MiB) break; // well into the sendfile part
    }
    ac.abort();
  }));
  await eventually('every transfer thread ended', async () => (await transferThreads()) === 0);
  t.equal((await fetchHash(`${origin.url}/cas/sha256/${hex}`)).hash, hex, 'a later download is whole');
});

t.test('FLEETCACHE_SENDFILE=0: the same bytes through buffers, said at start-up', async (t) => {
  const dir = t.testdir();
  const server = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', dir], { FLEETCACHE_SENDFILE: '0', FLEETCACHE_TOKEN: TEST_TOKEN });
  const hex = await uploadBlob(server.url, medium);
  t.equal((await fetchHash(`${server.url}/cas/sha256/${hex}`)).hash, hex);
  t.equal(await sendfileBytes(server.url), 0, 'nothing by sendfile');
  await eventually('the start-up line', () => /"sendfile":\{"enabled":false,"reason":"FLEETCACHE_SENDFILE=0"\}/.test(server.stderr()));
});

t.test('a cache sends its large hits by sendfile, and says so at start-up', async (t) => {
  const { origin, mediumHex: hex } = await originWithBlobs();
  const cache = await startServerProcess(t, ['cache', '--upstream', origin.url, '--listen', '127.0.0.1:0', '--data', t.testdir(), '--region', 'zc']);
  // stderr and stdout are two pipes: the start-up line may be read after "listening".
  await eventually('the start-up line', () => /"sendfile":\{"enabled":true\}/.test(cache.stderr()));
  t.equal((await fetchHash(`${cache.url}/cas/sha256/${hex}`)).hash, hex, 'the miss');
  // The hit once the fill is committed (the miss's answer may end just before).
  await eventually('the object is stored', async () => {
    const r = await request(`${cache.url}/cas/sha256/${hex}`, { method: 'HEAD' });
    await r.body.dump();
    return r.headers['x-cache'] === 'HIT';
  });
  const before = await sendfileBytes(cache.url);
  const hit = await fetchHash(`${cache.url}/cas/sha256/${hex}`);
  t.equal(hit.xcache, 'HIT');
  t.equal(hit.hash, hex, 'the hit');
  await eventually('all but the first 64 KiB by sendfile', async () => (await sendfileBytes(cache.url)) - before === MEDIUM - FIRST);
  const tail = await request(`${cache.url}/cas/sha256/${hex}`, { headers: { range: `bytes=${5 * MiB}-` } });
  t.equal(tail.statusCode, 206);
  t.ok(Buffer.from(await tail.body.arrayBuffer()).equals(medium.subarray(5 * MiB)), 'a range of the hit');
});

t.test('a reader that joins a fill late takes what was written from the file by sendfile, then follows', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  // 48 MiB: the file's large body twice (what the fill holds is the point, not random bytes)
  const twice = Buffer.concat([large, large]);
  const { hex } = up.serveBlob({ hex: sha256(twice), body: twice });
  up.options.rate = 32 * MiB; // 1.5 s of filling
  const { url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const before = await sendfileBytes(url);
  // The first reader, counted as it goes; the late one starts once 24 MiB have reached it,
  // when the fill keeps only the last 16 MiB in memory: the first MiBs are in the file only.
  const first = await request(`${url}/cas/sha256/${hex}`);
  const firstHash = createHash('sha256');
  let firstBytes = 0;
  let joined!: () => void;
  const farEnough = new Promise<void>((resolve) => (joined = resolve));
  const firstDone = (async () => {
    for await (const chunk of first.body) {
      firstHash.update(chunk as Buffer);
      firstBytes += (chunk as Buffer).length;
      if (firstBytes >= 24 * MiB) joined();
    }
    return firstHash.digest('hex');
  })();
  await farEnough;
  const late = await fetchHash(`${url}/cas/sha256/${hex}`);
  t.equal(late.xcache, 'COLLAPSED', 'the late reader joined the fill');
  t.equal(late.hash, hex, 'the late reader');
  t.equal(await firstDone, hex, 'the first reader');
  t.equal(up.requests.length, 1, 'one upstream request');
  // What was written before it came (24 MiB at least), but for its first chunk, went by sendfile.
  const viaSendfile = (await sendfileBytes(url)) - before;
  t.ok(viaSendfile >= 20 * MiB, `${viaSendfile} bytes by sendfile`);
});

t.test('pipelined requests: the answer after a sendfile body comes whole, after it', async (t) => {
  const { origin, mediumHex: hex } = await originWithBlobs();
  const small = randomBytes(1000);
  const smallHex = await uploadBlob(origin.url, small);
  const { port } = new URL(origin.url);
  // Both requests in one write: node answers the second once the first has ended.
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(Number(port), '127.0.0.1', () =>
      sock.write(`GET /cas/sha256/${hex} HTTP/1.1\r\nHost: x\r\n\r\nGET /cas/sha256/${smallHex} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', reject);
    sock.on('end', () => resolve(Buffer.concat(chunks)));
  });
  const firstHead = raw.indexOf('\r\n\r\n') + 4;
  t.match(raw.subarray(0, firstHead).toString(), new RegExp(`^HTTP/1.1 200 OK\r\n[^]*content-length: ${MEDIUM}\r\n`, 'i'));
  t.equal(sha256(raw.subarray(firstHead, firstHead + MEDIUM)), hex, 'the large body, exact');
  const second = raw.subarray(firstHead + MEDIUM).toString('latin1');
  t.match(second, /^HTTP\/1\.1 200 OK\r\n[^]*content-length: 1000\r\n/i, 'then the second answer');
  t.ok(Buffer.from(second.slice(second.indexOf('\r\n\r\n') + 4), 'latin1').equals(small), 'its body');
});

t.test('a request pipelined behind a long sendfile answer (it re-arms the idle timeout) does not cut it', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  // the file's large body, its digest known from the shared origin's upload
  const long = up.serveBlob({ hex: (await originWithBlobs()).largeHex, body: large });
  const small = up.addBlob(4096);
  // Idle limit for clients: 2 × 300 ms.
  const { url } = await startCache(t, { upstream: upUrl, timeouts: { connect: '100ms', headers: '100ms', body: '300ms' } }, t.testdir());
  t.equal((await fetchHash(`${url}/cas/sha256/${long.hex}`)).hash, long.hex);
  await eventually('the large object is stored', async () => {
    const r = await request(`${url}/cas/sha256/${long.hex}`, { method: 'HEAD' });
    await r.body.dump();
    return r.headers['x-cache'] === 'HIT';
  });
  const { port } = new URL(url);
  const started = Date.now();
  // Read at a pace that keeps the transfer alive (pauses of 100 ms) but makes it last
  // several idle limits; the second request (a miss) arrives while the first is sent, and
  // arms the socket's idle timeout, which sees no traffic from node meanwhile.
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    let nextPause = MiB;
    const sock = connect(Number(port), '127.0.0.1', () => sock.write(`GET /cas/sha256/${long.hex} HTTP/1.1\r\nHost: x\r\n\r\n`));
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      // The second request once the first answer is well under way (sent by sendfile).
      if (got >= 2 * MiB && got - c.length < 2 * MiB) sock.write(`GET /cas/sha256/${small.hex} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      if (got >= nextPause) {
        nextPause += MiB;
        sock.pause();
        setTimeout(() => sock.resume(), 100);
      }
    });
    sock.on('error', reject);
    sock.on('end', () => resolve(Buffer.concat(chunks)));
  });
  t.ok(Date.now() - started > 1200, 'the answer lasted two idle limits at least');
  const head = raw.indexOf('\r\n\r\n') + 4;
  t.equal(sha256(raw.subarray(head, head + SIZE)), long.hex, 'the large body, whole');
  const second = raw.subarray(head + SIZE).toString('latin1');
  t.match(second, /^HTTP\/1\.1 200 OK\r\n/, 'then the pipelined answer');
  t.equal(sha256(Buffer.from(second.slice(second.indexOf('\r\n\r\n') + 4), 'latin1')), small.hex, 'its body');
});
