// A reference for the hot and small figures, not a cache: the cheapest paths through node:http
// for a /cas object. A miss: node:http in, undici out (its dispatch API, the body gathered by the
// handler: no stream), sha256 check, file created and renamed, answer. A hit: the body from
// a Map in memory, answered with node:http. None of what the product does besides (no
// framework, no exactly-once across processes, no index, no metrics, no eviction, no Range
// or HEAD). What it reaches bounds what any implementation of the cache on node:http can
// reach on the same machine (fleetcache's early hits, src/cache/early-hits.ts, go around
// node:http and can pass it).
// Run: node --import tsx bench/lib/floor-proxy.ts UPSTREAM DATA_DIR WORKERS PORT
import cluster from 'node:cluster';
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Pool, type Dispatcher } from 'undici';

const [upstream, dataDir, workers, port] = process.argv.slice(2);
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
  const answer = (res: http.ServerResponse, body: Buffer): void =>
    void res.writeHead(200, ['content-type', 'application/octet-stream', 'content-length', String(body.length)]).end(body);
  const server = http.createServer((req, res) => {
    const m = /^\/cas\/sha256\/([0-9a-f]{64})$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    const hex = m[1]!;
    const held = hot.get(hex);
    if (held) return answer(res, held);
    void (async () => {
      const up = await fetchWhole(req.url!);
      const body = up.body;
      if (up.statusCode !== 200 || createHash('sha256').update(body).digest('hex') !== hex) return void res.writeHead(502).end();
      const shard = join(dataDir, hex.slice(0, 2));
      if (!shards.has(shard)) {
        mkdirSync(shard, { recursive: true });
        shards.add(shard);
      }
      const tmp = join(shard, prefix + next++);
      writeFileSync(tmp, body, { flag: 'wx' });
      renameSync(tmp, join(shard, hex));
      hot.set(hex, body);
      answer(res, body);
    })().catch(() => res.destroy());
  });
  server.listen(Number(port), '127.0.0.1', () => {
    if (!cluster.isWorker) console.log(`listening http://127.0.0.1:${port}`);
  });
  process.on('SIGTERM', () => process.exit(0));
}
