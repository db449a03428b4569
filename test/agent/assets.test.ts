// The bundled agent's `assets`: a tooltool manifest fetched through a real cache after a
// dead URL, per-file sources and byte counts in the JSON line, and the cache folder used
// on the second run.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatManifest, type ManifestRecord } from '../../src/assets/manifest.js';
import { uploadAssets } from '../../src/assets/upload.js';
import { startCache } from '../cache/harness.js';
import { startOrigin } from '../helpers/origin.js';
import { deadUrl, installAgent, runAgent } from './helpers.js';

t.test('agent assets fetches through the cache and reports per-file sources', async (t) => {
  const agent = await installAgent(t);
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  const src = join(dir, 'src');
  mkdirSync(src);
  const tool = randomBytes(64 * 1024);
  writeFileSync(join(src, 'tool.bin'), tool);
  const record: ManifestRecord = {
    filename: 'tool.bin', size: tool.length, algorithm: 'sha512', digest: createHash('sha512').update(tool).digest('hex'), unpack: false, visibility: 'public',
  };
  const manifest = join(src, 'manifest.tt');
  writeFileSync(manifest, formatManifest([record]));
  await uploadAssets({ manifestPath: manifest, origin: origin.url, token: origin.token, dir: src });

  const urls = [await deadUrl(), cache.url, origin.url];
  const args = { manifest, urls, cacheFolder: join(dir, 'tooltool-cache'), dest: join(dir, 'dest') };
  const first = await runAgent(agent, 'assets', args);
  t.equal(first.code, 0, 'exit status 0', { stderr: first.stderr });
  t.match(first.json, { ok: true, failed: 0, bytesDownloaded: tool.length, files: [{ filename: 'tool.bin', source: 'download', url: cache.url, bytesDownloaded: tool.length }] });
  t.ok(readFileSync(join(dir, 'dest', 'tool.bin')).equals(tool));

  const second = await runAgent(agent, 'assets', { ...args, dest: join(dir, 'dest2') });
  t.match(second.json, { ok: true, bytesDownloaded: 0, bytesFromCache: tool.length, files: [{ source: 'cache' }] }, 'the cache folder serves the second run');

  const broken = await runAgent(agent, 'assets', { manifest, urls: [urls[0]], dest: join(dir, 'dest3') });
  t.equal(broken.code, 1, 'a file that cannot be fetched fails the command');
  t.match(broken.json, { ok: false, failed: 1, files: [{ filename: 'tool.bin', code: 'FC_ERR_UPSTREAM' }] });
});
