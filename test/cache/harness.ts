// Starts a cache on loopback port 0 in front of a fixture upstream.
import { createHash } from 'node:crypto';
import { readFileSync, statfsSync } from 'node:fs';
import { createServer } from 'node:http';
import { Writable } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { pino } from 'pino';
import type { Test } from 'tap';
import { Agent, request } from 'undici';
import { resolveCacheConfig, type CacheConfig, type CacheConfigFile } from '../../src/cache/config.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { descendantsOf } from '../helpers/processes.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

/** `internal`: settings a file cannot give, which tests lower. `onRequest`: told of each request the cache receives. */
export async function startCache(t: Test, file: Partial<CacheConfigFile> & { upstream: string }, dataDir: string, internal: Pick<CacheConfig, 'unreadGraceMs'> = {}, onRequest?: (request: FastifyRequest) => void): Promise<{ app: FastifyInstance; url: string }> {
  const config = { ...resolveCacheConfig({ region: 'test', listen: '127.0.0.1:0', ...file, data: dataDir }), ...internal, logLevel: 'silent' };
  const app = await buildCacheServer(config);
  if (onRequest) app.addHook('onRequest', async (request) => onRequest(request)); // before it listens
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await app.close();
    await app.cache.fills.drain();
  });
  return { app, url };
}

/** The bytes a file of `bytes` is charged in `dir`: whole blocks of its filesystem, one at least (DiskStore.footprint). */
export function blocksOf(dir: string, bytes: number): number {
  const { bsize } = statfsSync(dir);
  return Math.max(1, Math.ceil(bytes / bsize)) * bsize;
}

/** How many requests a fill another request started is answering now (fleetcache_cache_fill_joiners in /-/metrics). */
export async function fillJoiners(url: string): Promise<number> {
  const text = await (await request(`${url}/-/metrics`)).body.text();
  return Number(/^fleetcache_cache_fill_joiners\{[^}]*\} (\d+)$/m.exec(text)?.[1]);
}

export interface Fetched {
  status: number;
  hash: string;
  size: number;
  xcache: string;
  etag?: string;
}

/**
 * GETs `url`, hashing the body as it arrives; rejects when the answer is cut. `fresh`
 * opens a new connection (so that requests spread over a multi-process cache's workers).
 */
export async function fetchHash(url: string, headers: Record<string, string> = {}, { fresh = false } = {}): Promise<Fetched> {
  const dispatcher = fresh ? new Agent({ pipelining: 0 }) : undefined;
  try {
    const res = await request(url, { headers, ...(dispatcher ? { dispatcher, reset: true } : {}) });
    const h = createHash('sha256');
    let size = 0;
    for await (const chunk of res.body) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    const etag = res.headers.etag;
    return { status: res.statusCode, hash: h.digest('hex'), size, xcache: String(res.headers['x-cache']), ...(typeof etag === 'string' ? { etag } : {}) };
  } finally {
    await dispatcher?.close();
  }
}

/** The PIDs of the workers of the multi-process cache `pid` (children running the CLI: not tsx's esbuild). */
export function cacheWorkers(pid: number): number[] {
  return descendantsOf(pid).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('cli/bin.');
    } catch {
      return false; // gone meanwhile
    }
  });
}

/** A logger whose lines are kept, parsed, in `lines` (for what a cache component logs). */
export function recordingLogger<Line>(level = 'info'): { log: FastifyBaseLogger; lines: Line[] } {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Line);
      done();
    },
  });
  return { log: pino({ level }, sink), lines };
}

/** A plain HTTP server on loopback answering every request with `body`, closed at teardown; its port. */
export async function bodyServer(t: Test, body: string | Buffer): Promise<number> {
  return Number(new URL(await serveOnLoopback(t, createServer((_req, res) => res.end(body)))).port);
}

/** The sum of a Prometheus metric's series (every label set) in a cache's /-/metrics. */
export async function metricSum(url: string, name: string): Promise<number> {
  const text = await (await request(`${url}/-/metrics`)).body.text();
  const series = text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return series.reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}
