// Starts a cache on loopback port 0 in front of a fixture upstream.
import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { resolveCacheConfig, type CacheConfigFile } from '../../src/cache/config.js';
import { buildCacheServer } from '../../src/cache/server.js';

export async function startCache(t: Test, file: Partial<CacheConfigFile> & { upstream: string }, dataDir: string): Promise<{ app: FastifyInstance; url: string }> {
  const config = { ...resolveCacheConfig({ region: 'test', listen: '127.0.0.1:0', ...file, data: dataDir }), logLevel: 'silent' };
  const app = await buildCacheServer(config);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await app.close();
    await app.cache.fills.drain();
  });
  return { app, url };
}
