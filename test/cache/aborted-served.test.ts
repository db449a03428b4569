// Bytes served of answers that do not end whole: a client that reads half of a large blob
// and goes away, a hit or a fill's (the one leading it, and one joining it), and a fill whose
// upstream dies mid-body. What the cache handed the socket counts (deploy/OPERATIONS.md):
// at least what the client read, less than the whole blob; never 0. In a single process and
// in a cache of two workers, in /-/stats and /-/metrics alike.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startServerProcess, type RunningServer } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { randomBlob, startUpstream } from './upstream-fixture.js';

const SIZE = 64 * 1024 * 1024;
const HALF = SIZE / 2;
/** Longer than a worker takes to report its counts (cluster/link.ts). */
const SETTLE_MS = 500;
/**
 * The large blobs, made once for the file: one per subtest that reads one, the same in both
 * caches (each has a data directory and an upstream of its own: a cold miss in each).
 */
const LARGE = Array.from({ length: 3 }, () => randomBlob(SIZE));

/** Bytes served of /cas blobs, in /-/stats. */
async function statsServed(cache: RunningServer): Promise<number> {
  const stats = (await (await request(`${cache.url}/-/stats`)).body.json()) as { kinds: Record<string, { bytesServed: number }> };
  return stats.kinds.cas?.bytesServed ?? 0;
}

/** Bytes served of /cas blobs, in /-/metrics. */
async function metricsServed(cache: RunningServer): Promise<number> {
  const text = await (await request(`${cache.url}/-/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith('fleetcache_cache_bytes_served_total{') && l.includes('kind="cas"'));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/**
 * GETs `target` on a connection of its own and reads its body until `enough` bytes came
 * (or all of it), then goes away, or until the cache cuts it; resolves to the body bytes read.
 */
function readPart(cache: RunningServer, target: string, enough = Infinity): Promise<number> {
  const { port } = new URL(cache.url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1');
    let head = Buffer.alloc(0);
    let body = -1; // until the head is read
    let length = Infinity;
    socket.on('data', (chunk: Buffer) => {
      if (body < 0) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        body = head.length - end - 4;
        length = Number(/\r\ncontent-length: *(\d+)/i.exec(head.subarray(0, end).toString('latin1'))?.[1] ?? Infinity);
      } else {
        body += chunk.length;
      }
      if (body >= Math.min(enough, length)) socket.destroy();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Math.max(body, 0)));
    socket.write(`GET ${target} HTTP/1.1\r\nHost: test\r\n\r\n`);
  });
}

/** The bytes served that `served` says are added once they stop changing, after `act`. */
async function addedBy(cache: RunningServer, served: (cache: RunningServer) => Promise<number>, act: () => Promise<unknown>): Promise<number> {
  const before = await served(cache);
  await act();
  // counted as handed to the socket, reported by a worker in a moment:
  // the same figure twice, SETTLE_MS apart
  let last = before;
  await eventually('bytes served settled', async () => {
    await sleep(SETTLE_MS);
    const now = await served(cache);
    const settled = now > before && now === last;
    last = now;
    return settled;
  });
  return last - before;
}

for (const workers of [1, 2]) {
  t.test(`${workers === 1 ? 'one process' : 'two workers'}: an answer cut short counts the bytes it sent`, async (t) => {
    const { up, upUrl } = await startUpstream(t);
    const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', t.testdir(), '--workers', String(workers)], { FLEETCACHE_LOG_LEVEL: 'warn' });

    await t.test('a hit read half-way', async (t) => {
      const target = `/cas/sha256/${up.serveBlob(LARGE[0]!).hex}`;
      t.equal(await readPart(cache, target), SIZE, 'filled whole first');
      await eventually('stored', async () => (await request(`${cache.url}${target}`, { method: 'HEAD', headers: { 'cache-control': 'only-if-cached' } })).statusCode === 200);
      let read = 0;
      const served = await addedBy(cache, statsServed, async () => (read = await readPart(cache, target, HALF)));
      t.ok(read >= HALF && served >= read && served < SIZE, `served ${served} bytes, the client read ${read} of ${SIZE}`);
      await checkMetrics(t, cache, served);
    });

    await t.test('a fill read half-way by the request leading it and one joining it', async (t) => {
      const target = `/cas/sha256/${up.serveBlob(LARGE[1]!).hex}`;
      up.options.rate = SIZE / 2; // two seconds: the second request joins a fill in flight
      t.teardown(() => (up.options.rate = undefined));
      let reads: number[] = [];
      const served = await addedBy(cache, statsServed, async () => (reads = await Promise.all([readPart(cache, target, HALF), readPart(cache, target, HALF)])));
      t.equal(up.count(target), 1, 'one fill');
      const read = reads[0]! + reads[1]!;
      t.ok(reads.every((n) => n >= HALF) && served >= read && served < 2 * SIZE, `served ${served} bytes, the clients read ${reads.join(' and ')} of ${SIZE} each`);
      await checkMetrics(t, cache, served);
    });

    await t.test('a fill whose upstream dies mid-body', async (t) => {
      const target = `/cas/sha256/${up.serveBlob(LARGE[2]!).hex}`;
      up.options.dieAfter = HALF;
      let read = 0;
      const served = await addedBy(cache, statsServed, async () => (read = await readPart(cache, target)));
      t.ok(read > 0 && read < SIZE && served >= read && served <= HALF, `served ${served} bytes, the client read ${read} before the cut, upstream sent ${HALF}`);
      await checkMetrics(t, cache, served);
    });

    // In the cache of one process only, as when it had a cache of its own: it counts what its
    // own requests add, on blobs of its own (a cache each cost half a second of CPU to start).
    if (workers === 1) {
      await t.test('a cold small miss whose client left before its fill ended counts no bytes served', async (t) => {
        const { port } = new URL(cache.url);
        // The first request of a connection, taken by its first reader (early-hits.ts); one with
        // Connection: close, left to node's parser (the miss node's request handler leads).
        for (const [path, fields] of [['the early path', ''], ["node's request handler", 'Connection: close\r\n']] as const) {
          const target = `/cas/sha256/${up.addBlob(4096).hex}`;
          const before = await statsServed(cache);
          const release = up.hold(target);
          const socket = net.connect(Number(port), '127.0.0.1');
          socket.on('error', () => undefined);
          socket.write(`GET ${target} HTTP/1.1\r\nHost: test\r\n${fields}\r\n`);
          await eventually('the fill asked upstream', () => up.count(target) === 1);
          await new Promise<void>((resolve) => socket.destroy().once('close', () => resolve()));
          await sleep(SETTLE_MS); // the cache sees the connection closed
          release();
          await eventually('the blob stored', async () => (await request(`${cache.url}${target}`, { method: 'HEAD', headers: { 'cache-control': 'only-if-cached' } })).statusCode === 200);
          t.equal(await statsServed(cache) - before, 0, `${path}: nothing served to a client gone`);
        }
      });
    }

    await cache.stop();
  });
}

/** /-/metrics counts what /-/stats does (they read the same tallies). */
async function checkMetrics(t: Test, cache: RunningServer, served: number): Promise<void> {
  t.equal(await metricsServed(cache), await statsServed(cache), `/-/metrics says the same (${served} bytes more)`);
}
