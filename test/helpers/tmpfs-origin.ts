// An in-process origin whose data directory is on a small tmpfs of its own (needs root): a
// real disk that fills up. Closed, then unmounted, in the test's teardown.
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import { buildOrigin } from '../../src/origin/server.js';
import { TEST_TOKEN, type TestOrigin } from './origin.js';
import { mountTmpfs } from './tmpfs.js';

/** Skips a test where no tmpfs can be mounted. */
export const NEEDS_ROOT = { skip: process.getuid?.() === 0 ? false : 'needs root to mount a tmpfs' };

/** Starts an origin on a tmpfs of `size` (e.g. "4m") named after `name`; `dir` is where it is mounted, the data directory below it. */
export async function startOriginOnTmpfs(t: Test, size: string, name: string): Promise<TestOrigin & { dir: string }> {
  const { dir, unmount } = mountTmpfs(size, name);
  const dataDir = join(dir, 'data');
  const { app, context } = await buildOrigin({ dataDir, tokens: [TEST_TOKEN], logLevel: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await app.close();
    await unmount();
  });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, app, context, dataDir, token: TEST_TOKEN, dir };
}
