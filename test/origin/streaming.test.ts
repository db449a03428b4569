// The origin as a real process on loopback: large streamed round trips, aborts,
// concurrency, restarts and raw path escapes. The tests share one process, the one that
// restarts it last; the idle timeout's has an origin of its own, in-process.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { startOrigin } from '../helpers/origin.js';
import { rssOf, startServerProcess, type RunningServer } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

const TOKEN = 'streaming-test-token';
const MiB = 1024 * 1024;

/** A generated body of `size` bytes that is never held whole in memory, and its sha256. */
function generated(size: number): { body: Readable; digest: Promise<string> } {
  const hash = createHash('sha256');
  const block = randomBytes(MiB);
  let sent = 0;
  let resolveDigest!: (d: string) => void;
  const digest = new Promise<string>((r) => (resolveDigest = r));
  const body = new Readable({
    read() {
      if (sent >= size) {
        resolveDigest(hash.digest('hex'));
        this.push(null);
        return;
      }
      const n = Math.min(MiB, size - sent);
      // vary each block so that the content is not one repeated MiB
      block.writeUInt32BE(sent / MiB, 0);
      const chunk = Buffer.from(block.subarray(0, n));
      hash.update(chunk);
      sent += n;
      this.push(chunk);
    },
  });
  return { body, digest };
}

async function startOriginProcess(t: Test, dataDir: string, logLevel = 'warn') {
  return startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', dataDir], { FLEETCACHE_TOKEN: TOKEN, FLEETCACHE_LOG_LEVEL: logLevel });
}

let shared: Promise<{ server: RunningServer; dataDir: string }> | undefined;
/** The digests of the blobs the shared origin stored. */
const sharedBlobs: string[] = [];
/** The file's shared origin process (logging at info, for the test that reads its log), started by the first test that asks. */
function sharedOrigin(): Promise<{ server: RunningServer; dataDir: string }> {
  shared ??= (async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'fleetcache-streaming-'));
    t.teardown(() => rm(dataDir, { recursive: true, force: true }));
    return { server: await startOriginProcess(t, dataDir, 'info'), dataDir };
  })();
  return shared;
}

// 128 MiB: an origin that held the body whole would grow by more than the bound; one that
// streams it grows by a third of it (the size proves no more past that).
t.test('128 MiB round trip, streamed, RSS grows by less than 100 MiB', async (t) => {
  const { server } = await sharedOrigin();
  const size = 128 * MiB;
  const up = generated(size);
  const rssBefore = await rssOf(server.child.pid!);
  // Upload to a name (the server hashes), then fetch it back through /cas by digest.
  const put = await request(`${server.url}/artifacts/big/job/blob.bin`, {
    method: 'PUT',
    body: up.body,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-length': String(size) },
  });
  t.equal(put.statusCode, 201);
  const answer = (await put.body.json()) as { digest: string; size: number };
  const expected = await up.digest;
  sharedBlobs.push(expected);
  t.equal(answer.digest, `sha256:${expected}`);
  t.equal(answer.size, size);
  const rssAfterUpload = await rssOf(server.child.pid!);

  const get = await request(`${server.url}/cas/sha256/${expected}`);
  t.equal(get.statusCode, 200);
  const hash = createHash('sha256');
  let got = 0;
  let peakRss = rssAfterUpload;
  for await (const chunk of get.body) {
    hash.update(chunk as Buffer);
    got += (chunk as Buffer).length;
    if (got % (32 * MiB) < 65536) peakRss = Math.max(peakRss, await rssOf(server.child.pid!));
  }
  t.equal(got, size);
  t.equal(hash.digest('hex'), expected);
  const growth = Math.max(rssAfterUpload, peakRss) - rssBefore;
  t.ok(growth < 100 * MiB, `server RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
});

t.test('an upload aborted mid-way stores nothing and leaves no temporary file', async (t) => {
  const { server, dataDir } = await sharedOrigin();
  const digest = randomBytes(32).toString('hex'); // any well-formed digest: the upload never completes
  const ac = new AbortController();
  let sent = 0;
  const body = new Readable({
    read() {
      if (sent >= 4 * MiB) return; // stall half way, then abort
      sent += MiB;
      this.push(randomBytes(MiB));
    },
  });
  setTimeout(() => ac.abort(), 300);
  await t.rejects(
    request(`${server.url}/cas/sha256/${digest}`, { method: 'PUT', body, signal: ac.signal, headers: { authorization: `Bearer ${TOKEN}`, 'content-length': String(8 * MiB) } }),
  );
  // give the server a moment to notice the reset
  let leftovers: string[] = [];
  for (let i = 0; i < 50; i++) {
    leftovers = await readdir(join(dataDir, 'tmp'));
    if (leftovers.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.same(leftovers, []);
  t.equal((await request(`${server.url}/cas/sha256/${digest}`)).statusCode, 404);
});

t.test('raw dot segments over a socket never leave the namespace', async (t) => {
  const { server } = await sharedOrigin();
  const { port, hostname } = new URL(server.url);
  const raw = async (path: string) =>
    new Promise<number>((resolve, reject) => {
      const sock = connect(Number(port), hostname, () => {
        sock.write(`PUT ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi`);
      });
      let data = '';
      sock.on('data', (c) => (data += c.toString()));
      sock.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0)));
      sock.on('error', reject);
    });
  for (const path of ['/artifacts/run/job/../../../../etc/passwd', '/artifacts/run/job/a/./b', '/artifacts/run/../x/y', '/projects/../bases/x', '/artifacts/run/job/..']) {
    const status = await raw(path);
    t.ok(status === 400 || status === 404, `${path} → ${status}`);
  }
});

t.test('a client that stops reading a download is cut after the idle timeout; a reading one is not', async (t) => {
  // Long enough that the upload below is never cut on a loaded machine (400 ms was, once).
  const origin = await startOrigin(t, { idleTimeoutMs: 1500 });
  // More than loopback's socket buffers hold (a few MiB each way): the stalled answer cannot all be sent.
  const size = 32 * MiB;
  const up = generated(size);
  const put = await request(`${origin.url}/artifacts/idle/job/blob.bin`, {
    method: 'PUT',
    body: up.body,
    headers: { authorization: `Bearer ${origin.token}`, 'content-length': String(size) },
  });
  t.equal(put.statusCode, 201);
  const hex = await up.digest;
  await put.body.dump();
  const stalled = await request(`${origin.url}/cas/sha256/${hex}`);
  const stalledAt = Date.now();
  t.equal(stalled.statusCode, 200);
  const reading = await request(`${origin.url}/cas/sha256/${hex}`);
  const h = createHash('sha256');
  for await (const chunk of reading.body) {
    h.update(chunk as Buffer);
    await new Promise((r) => setTimeout(r, 4)); // slow (≥ 2 s for its ≤ 64 KiB chunks), but never silent for long
  }
  t.equal(h.digest('hex'), hex, 'a slow reader gets the whole blob');
  // Silent for the whole read (≥ 2 s) and until 3.5 s after its head at least: well past the timeout.
  await new Promise((r) => setTimeout(r, Math.max(0, stalledAt + 3500 - Date.now())));
  await t.rejects(stalled.body.arrayBuffer(), 'the client that stopped reading was cut');
});

t.test('a run manifest upload cut mid-body is the client\'s abort (logged at info), not a server error', async (t) => {
  const { server } = await sharedOrigin();
  // this test's lines only: an upload aborted by an earlier test is logged the same way
  const logged = server.stderr().length;
  const log = () => server.stderr().slice(logged);
  const { hostname, port } = new URL(server.url);
  const socket = connect(Number(port), hostname, () => {
    socket.write(`PUT /projects/p/runs/cut HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 100\r\n\r\n{"format":`);
    setImmediate(() => socket.destroy());
  });
  socket.on('error', () => undefined);
  await eventually('the abort logged', () => /upload aborted before completion/.test(log()));
  const line = log().split('\n').find((l) => l.includes('upload aborted before completion'))!;
  t.match(JSON.parse(line), { level: 30, code: 'FC_ERR_ABORTED' }, 'at info, with its code');
  t.notMatch(server.stderr(), /"level":50/, 'no error logged');
  t.equal((await request(`${server.url}/projects/p/runs/cut`, { headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 404, 'nothing stored');
});

// Last: it stops the shared origin and starts it again on its data directory.
t.test('concurrent puts of one digest, restart keeps every object', async (t) => {
  const { server: first, dataDir } = await sharedOrigin();
  let server = first;
  const blobs = Array.from({ length: 5 }, () => randomBytes(256 * 1024));
  const digests = blobs.map((b) => createHash('sha256').update(b).digest('hex'));
  const results = await Promise.all(
    Array.from({ length: 10 }, () =>
      request(`${server.url}/cas/sha256/${digests[0]}`, { method: 'PUT', body: blobs[0], headers: { authorization: `Bearer ${TOKEN}` } }).then(async (r) => {
        await r.body.dump();
        return r.statusCode;
      }),
    ),
  );
  t.ok(results.every((s) => s === 201 || s === 200), `statuses ${results.join(',')}`);
  t.ok(results.includes(201));
  for (let i = 1; i < blobs.length; i++) {
    const r = await request(`${server.url}/cas/sha256/${digests[i]}`, { method: 'PUT', body: blobs[i], headers: { authorization: `Bearer ${TOKEN}` } });
    await r.body.dump();
  }
  // One file per digest and nothing else in the shard (another blob, of this test or an
  // earlier one of the shared origin, may share its prefix)
  const shard = digests[0]!.slice(0, 2);
  t.same((await readdir(join(dataDir, 'cas.v1', 'sha256', shard))).sort(), [...new Set([...digests, ...sharedBlobs])].filter((d) => d.startsWith(shard)).sort());
  await server.stop();
  server = await startOriginProcess(t, dataDir);
  for (let i = 0; i < blobs.length; i++) {
    const r = await request(`${server.url}/cas/sha256/${digests[i]}`);
    t.equal(r.statusCode, 200);
    t.ok(Buffer.from(await r.body.arrayBuffer()).equals(blobs[i]!));
  }
});
