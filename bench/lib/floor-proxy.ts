// A reference for the hot and small figures, not a cache: the cheapest paths through node:http
// for a /cas object. A miss: node:http in, undici out (its dispatch API, the body gathered by the
// handler: no stream), sha256 check, file created and renamed, answer. A hit: the body from
// a Map in memory, answered with node:http. None of what the product does besides (no
// framework, no exactly-once across processes, no index, no metrics, no eviction, no Range
// or HEAD). What it reaches bounds what any implementation of the cache on node:http can
// reach on the same machine (fleetcache's early hits and misses, src/cache/early-hits.ts,
// go around node:http and can pass it). With `raw`, the same miss read and answered on
// the socket without node:http (a GET head matched by a pattern, nothing else taken), for
// bench/ab-cache.ts: what going around node:http can gain at most.
// Run: node --import tsx bench/lib/floor-proxy.ts UPSTREAM DATA_DIR WORKERS PORT [raw]
import cluster from 'node:cluster';
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { Pool, type Dispatcher } from 'undici';

const [upstream, dataDir, workers, port, mode] = process.argv.slice(2);
if (!upstream || !dataDir || !workers || !port) throw new Error('usage: floor-proxy.ts UPSTREAM DATA_DIR WORKERS PORT');

if (cluster.isPrimary && Number(workers) > 1) {
  for (let i = 0; i < Number(workers); i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', () => {
    if (++listening === Number(workers)) console.log(`listening http://127.0.0.1:${port}`);
  });
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const pool = new Pool(upstream);
  const shards = new Set<string>();
  const prefix = `.tmp-${process.pid}-`;
  let next = 0;
  const hot = new Map<string, Buffer>();
  /** A GET whose body is gathered by the dispatch handler itself. */
  const fetchWhole = (path: string): Promise<{ statusCode: number; body: Buffer }> => new Promise((resolve, reject) => {
    let statusCode = 0;
    const chunks: Buffer[] = [];
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: () => undefined,
      onResponseStart: (_c, status) => void (statusCode = status),
      onResponseData: (_c, chunk) => void chunks.push(chunk),
      onResponseEnd: () => resolve({ statusCode, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) }),
      onResponseError: (_c, err) => reject(err),
    };
    pool.dispatch({ path, method: 'GET' }, handler);
  });
  /** The body of the blob `hex` from upstream, checked and stored; undefined when upstream fails. */
  const miss = async (path: string, hex: string): Promise<Buffer | undefined> => {
    const up = await fetchWhole(path);
    const body = up.body;
    if (up.statusCode !== 200 || createHash('sha256').update(body).digest('hex') !== hex) return undefined;
    const shard = join(dataDir, hex.slice(0, 2));
    if (!shards.has(shard)) {
      mkdirSync(shard, { recursive: true });
      shards.add(shard);
    }
    const tmp = join(shard, prefix + next++);
    writeFileSync(tmp, body, { flag: 'wx' });
    renameSync(tmp, join(shard, hex));
    hot.set(hex, body);
    return body;
  };
  const answer = (res: http.ServerResponse, body: Buffer): void =>
    void res.writeHead(200, ['content-type', 'application/octet-stream', 'content-length', String(body.length)]).end(body);
  const BLOB = /^\/cas\/sha256\/([0-9a-f]{64})$/;
  const httpServer = (): net.Server => http.createServer((req, res) => {
    const m = BLOB.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    const held = hot.get(m[1]!);
    if (held) return answer(res, held);
    miss(req.url!, m[1]!).then((body) => (body ? answer(res, body) : void res.writeHead(502).end()), () => res.destroy());
  });
  // One GET per read, as the bench's clients ask (a request cut or pipelined is dropped).
  const GET_HEAD = /^GET (\/cas\/sha256\/([0-9a-f]{64})) HTTP\/1\.1\r\n(?:[^\r\n]*\r\n)*\r\n$/;
  const rawServer = (): net.Server => net.createServer((socket) => {
    const reply = (body: Buffer): void => {
      socket.cork();
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${body.length}\r\nDate: ${new Date().toUTCString()}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n`, 'latin1');
      socket.write(body);
      socket.uncork();
    };
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      const m = GET_HEAD.exec(chunk.toString('latin1'));
      if (!m) return void socket.destroy();
      const held = hot.get(m[2]!);
      if (held) return reply(held);
      miss(m[1]!, m[2]!).then((body) => (body ? reply(body) : socket.destroy()), () => socket.destroy());
    });
  });
  const server = mode === 'raw' ? rawServer() : httpServer();
  server.listen(Number(port), '127.0.0.1', () => {
    if (!cluster.isWorker) console.log(`listening http://127.0.0.1:${port}`);
  });
  process.on('SIGTERM', () => process.exit(0));
}
