// An in-process origin on 127.0.0.1:0 for tests, closed in teardown, and uploads to an origin.
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { request } from 'undici';
import { buildOrigin } from '../../src/origin/server.js';
import type { OriginContext } from '../../src/origin/context.js';
import type { OriginOptions } from '../../src/origin/config.js';
import type { BlobStore } from '../../src/store/blob-store.js';

export const TEST_TOKEN = 'test-token-0123456789';

export interface TestOrigin {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly context: OriginContext;
  readonly dataDir: string;
  readonly token: string;
}

/** `store`: where its blobs live (default: its data directory, as buildOrigin's). */
export async function startOrigin(t: Test, options: Partial<OriginOptions> = {}, store?: BlobStore): Promise<TestOrigin> {
  const dataDir = options.dataDir ?? t.testdir();
  const { app, context } = await buildOrigin({ dataDir, tokens: [TEST_TOKEN], logLevel: false, ...options }, store);
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return { url: `http://127.0.0.1:${port}`, app, context, dataDir, token: TEST_TOKEN };
}

/** Uploads `body` as a sha256 blob to the origin at `url`; resolves to its hex digest (201 expected). */
export async function uploadBlob(url: string, body: Buffer, token: string = TEST_TOKEN): Promise<string> {
  const hex = createHash('sha256').update(body).digest('hex');
  const res = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', headers: { authorization: `Bearer ${token}` }, body });
  await res.body.dump();
  if (res.statusCode !== 201) throw new Error(`upload: HTTP ${res.statusCode}`);
  return hex;
}
