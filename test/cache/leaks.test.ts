// A cache that runs for weeks must give back everything a request took, on every path:
// after a bounded mixed load (misses and hits across two workers, fills followed by the
// other worker, ranges of filling objects, clients that leave mid-body or while their
// answer is owed, an upstream that dies mid-stream, pipelined requests, PUTs forwarded or
// cut, mirror answers, hits of a large object cut mid-body), each process of a real
// `fleetcache cache --workers 2` holds no file of its data directory open, no TCP
// connection, no more Unix connections than it started with, and its data directory no
// temp file. Checked to fail with a fill's temp file left open, and with an early
// connection not ended when its client ends it.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { Agent, request } from 'undici';
import { checkReleased, held, plainGet, rawExchange, unreadLeave } from '../helpers/held.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually, failIfSlower } from '../helpers/wait.js';
import { cacheWorkers, fetchHash } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

t.test('after a mixed load, each process of a two-worker cache holds no data file, TCP connection or extra Unix connection open, and no temp file is left', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const dataDir = t.testdir();
  const data = path.join(dataDir, 'data');
  const config = path.join(dataDir, 'cache.yaml');
  writeFileSync(config, `region: leaks\nlisten: 127.0.0.1:0\nupstream: ${upUrl}\ndata: ${data}\nmaxSize: 64MiB\nworkers: 2\nmirrors:\n  m:\n    url: ${upUrl}/mirrored\n`);
  const cache = await startServerProcess(t, ['cache', '--config', config]);
  const port = Number(new URL(cache.url).port);
  await eventually('two workers', () => cacheWorkers(cache.child.pid!).length === 2);
  const processes = [cache.child.pid!, ...cacheWorkers(cache.child.pid!)];
  const workers = processes.slice(1);
  const before = new Map(processes.map((pid) => [pid, held(pid, [data])]));
  const busy = { tcp: 0, dataFiles: 0 };

  // What upstream has: small and large blobs, one large blob whose answers die mid-way, mirror answers.
  // 8 small blobs: their 32 requests on new connections alternate between the workers, so
  // each blob has misses on both (collapsed, followed) as 24 had, at a third of the CPU.
  const small = Array.from({ length: 8 }, () => up.addBlob(4096).hex);
  const large = Array.from({ length: 6 }, () => up.addBlob(2 * 1024 * 1024).hex);
  const dying = createHash('sha256').update('dies').digest('hex');
  // Larger than the cache: not kept. Its answer never ends; the cache cuts it once no client reads it.
  const oversize = createHash('sha256').update('larger than the cache').digest('hex');
  let oversizeCut = false;
  up.handler = (req, res) => {
    if (req.url === `/cas/sha256/${oversize}`) {
      res.writeHead(200, { 'content-length': String(80 * 1024 * 1024) });
      res.write(Buffer.alloc(1024 * 1024, 2));
      res.on('close', () => (oversizeCut = true));
      return true;
    }
    if (req.url === `/cas/sha256/${dying}`) {
      res.writeHead(200, { 'content-length': String(1024 * 1024) });
      res.write(Buffer.alloc(256 * 1024, 1), () => res.socket?.destroy());
      return true;
    }
    const reply = (status: number, headers: Record<string, string>, body: string) => (res.writeHead(status, headers).end(body), true);
    if (req.url === '/mirrored/kept-404') return reply(404, { 'cache-control': 'max-age=300' }, 'kept');
    if (req.url === '/mirrored/plain-404') return reply(404, {}, 'not kept');
    if (req.url === '/mirrored/ok') return reply(200, { 'cache-control': 'max-age=300', etag: '"ok"' }, 'mirrored body');
    return false;
  };
  up.options.rate = 8 * 1024 * 1024; // large fills last about a quarter of a second: requests meet them filling

  const keepAlive = new Agent({ connections: 8 });
  t.teardown(() => keepAlive.destroy());
  const get = (p: string, headers: Record<string, string> = {}) => request(`${cache.url}${p}`, { dispatcher: keepAlive, headers }).then(async (res) => {
    await res.body.dump();
    return res.statusCode;
  }, () => 0);
  const fresh = (p: string, headers: Record<string, string> = {}) => fetchHash(`${cache.url}${p}`, headers, { fresh: true }).catch(() => undefined);

  const load = async (): Promise<void> => {
    // An object larger than the cache, its clients (both workers) gone after their first bytes.
    await Promise.all([0, 1, 2, 3].map(() => rawExchange(port, plainGet(`/cas/sha256/${oversize}`), (got) => got > 100_000)));
    // Cold small blobs, four requests each on new connections (both workers, early misses, collapsed ones); then hits.
    await Promise.all(small.flatMap((hex) => Array.from({ length: 4 }, () => fresh(`/cas/sha256/${hex}`))));
    await Promise.all(small.map((hex) => get(`/cas/sha256/${hex}`)));
    // Large fills met by requests on new connections (the other worker follows), ranges of them while
    // filling, and clients that leave after their first bytes.
    await Promise.all(large.slice(0, 4).flatMap((hex) => [
      fresh(`/cas/sha256/${hex}`), fresh(`/cas/sha256/${hex}`),
      fresh(`/cas/sha256/${hex}`, { range: 'bytes=1000000-1000999' }),
      rawExchange(port, plainGet(`/cas/sha256/${hex}`), (got) => got > 70_000),
    ]));
    await Promise.all(large.slice(4).map((hex) => rawExchange(port, plainGet(`/cas/sha256/${hex}`), (got) => {
      busy.dataFiles = Math.max(busy.dataFiles, ...workers.map((pid) => held(pid, [data]).dataFiles.length));
      return got > 1000;
    })));
    // An upstream that dies mid-stream, with three waiters.
    await Promise.all([0, 1, 2].map(() => fresh(`/cas/sha256/${dying}`)));
    // Clients that leave while their answer is owed (held upstream), one closing, one half-closing.
    const owed = up.addBlob(4096).hex;
    const release = up.hold(`/cas/sha256/${owed}`);
    const leaving = [
      rawExchange(port, plainGet(`/cas/sha256/${owed}`), () => false, 300),
      new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => s.end(plainGet(`/cas/sha256/${owed}`)));
        s.on('error', () => undefined).on('close', () => resolve()).resume();
      }),
    ];
    await eventually('the owed miss reached upstream', () => up.count(`/cas/sha256/${owed}`) >= 1);
    // What is counted here is seen while in use (so that the counts after are not blind).
    busy.tcp = Math.max(busy.tcp, ...workers.map((pid) => held(pid, [data]).tcp));
    await leaving[0];
    release();
    await leaving[1];
    // Pipelined requests (a hit, a miss, a hit), the client gone after its first bytes; a head
    // never finished; a PUT forwarded, and one cut mid-body.
    const pipelined = up.addBlob(4096).hex;
    await rawExchange(port, [small[0], pipelined, small[1]].map((hex) => plainGet(`/cas/sha256/${hex}`)).join(''), (got) => got > 100);
    await rawExchange(port, 'GET /cas/sha256/', () => false, 100);
    const putBody = Buffer.alloc(64 * 1024, 7);
    const putHex = createHash('sha256').update(putBody).digest('hex');
    const put = await request(`${cache.url}/cas/sha256/${putHex}`, { method: 'PUT', dispatcher: keepAlive, headers: { authorization: 'Bearer writer' }, body: putBody });
    await put.body.dump();
    t.equal(put.statusCode, 201, 'a PUT forwarded');
    await rawExchange(port, Buffer.concat([Buffer.from(`PUT /cas/sha256/${'0'.repeat(64)} HTTP/1.1\r\nHost: cache\r\nAuthorization: Bearer writer\r\nContent-Length: 1048576\r\n\r\n`), Buffer.alloc(65536)]), () => false, 200);
    // Hits of a stored large object, the clients gone mid-body: reading (the answer may be
    // all in the socket buffers by then), and not reading (it is not).
    up.options.rate = 0;
    const big = up.addBlob(16 * 1024 * 1024).hex;
    await fresh(`/cas/sha256/${big}`);
    await Promise.all([0, 1, 2, 3].map(() => rawExchange(port, plainGet(`/cas/sha256/${big}`), (got) => got > 100_000)));
    await Promise.all([0, 1].map(() => unreadLeave(port, plainGet(`/cas/sha256/${big}`), 300)));
    // Large answers queued behind others of a pipelining client that leaves: stored ones, and fills.
    await rawExchange(port, [big, large[0]!, large[1]!].map((hex) => plainGet(`/cas/sha256/${hex}`)).join(''), (got) => got > 100);
    const cold = [up.addBlob(2 * 1024 * 1024).hex, up.addBlob(2 * 1024 * 1024).hex];
    await rawExchange(port, [big, ...cold].map((hex) => plainGet(`/cas/sha256/${hex}`)).join(''), (got) => got > 100);
    // Mirror answers: kept and not, and HEADs of them.
    for (const p of ['kept-404', 'plain-404', 'ok']) {
      await get(`/mirror/m/${p}`);
      await get(`/mirror/m/${p}`);
      await request(`${cache.url}/mirror/m/${p}`, { method: 'HEAD', dispatcher: keepAlive }).then((r) => r.body.dump());
    }
  };
  await failIfSlower(t, 'the load', 60_000, load);
  t.equal(await get(`/cas/sha256/${large[0]}`), 200, 'the cache still serves');
  await eventually('the answer larger than the cache cut', () => oversizeCut, 5000).catch(() => undefined);
  t.ok(oversizeCut, 'the answer larger than the cache, read by no one, was cut by the cache');
  t.ok(busy.tcp > 0 && busy.dataFiles > 0, `while busy, TCP connections (${busy.tcp}) and data files (${busy.dataFiles}) were seen open`);
  t.ok([...before.values()].every((b) => b.unix > 0), 'and Unix connections before the load');

  // Every client gone, and upstream (whose connections the cache may keep alive).
  await keepAlive.close();
  await up.stop();
  await checkReleased(t, before, [data], cache.stderr);
});
