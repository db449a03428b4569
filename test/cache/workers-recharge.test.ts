// `fleetcache cache --workers 2`: a sidecar a worker rewrites larger (a revalidation's 304
// bringing fields the 200 lacked) is charged anew in the primary's index, the one that
// evicts, from the worker's report of it; not only in the worker's own view.
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { httpId } from '../../src/cache/disk-store.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { blocksOf } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

async function storeBytes(url: string): Promise<number> {
  const stats = (await (await request(`${url}/-/stats`)).body.json()) as { store: { bytes: number } };
  return stats.store.bytes;
}

t.test('two workers: a sidecar a revalidation makes larger is charged its new size in the primary\'s index', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  // the 304 brings 24 fields of 400 bytes: the refreshed policy, and so the sidecar, grows past a block
  const added = Object.fromEntries(Array.from({ length: 24 }, (_, i) => [`x-added-${i}`, 'v'.repeat(400)]));
  up.handler = (req, res) => {
    if (req.url !== '/dists/Release') return false;
    const notModified = req.headers['if-none-match'] === '"r"';
    res.writeHead(notModified ? 304 : 200, { etag: '"r"', 'cache-control': 'no-cache', ...(notModified ? added : {}) }).end(notModified ? undefined : 'release');
    return true;
  };
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  writeFileSync(path.join(dir, 'cache.yaml'), `upstream: ${upUrl}\nmirrors:\n  deb:\n    url: ${upUrl}\n`);
  const cache = await startServerProcess(t, ['cache', '--config', path.join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', data, '--workers', '2']);
  const file = path.join(data, httpId('mirror:deb:/dists/Release'));
  const onDisk = (): number => blocksOf(data, statSync(file).size) + blocksOf(data, statSync(`${file}.json`).size);
  const get = async (): Promise<string> => {
    const res = await request(`${cache.url}/mirror/deb/dists/Release`, { reset: true });
    await res.body.dump();
    return String(res.headers['x-cache']);
  };

  t.equal(await get(), 'MISS');
  await eventually('stored: the primary counts the files', async () => (await storeBytes(cache.url)) === onDisk());
  const before = onDisk();
  t.equal(await get(), 'HIT', 'revalidated with a 304');
  t.ok(onDisk() > before, `the sidecar grew (${before} → ${onDisk()} bytes on disk)`);
  await eventually('revalidated: the primary counts the larger sidecar', async () => (await storeBytes(cache.url)) === onDisk());
});
