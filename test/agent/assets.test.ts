// The bundled agent's `assets`: a tooltool manifest fetched through a real cache after a
// dead URL, per-file sources and byte counts in the JSON line, and the cache folder used
// on the second run. Past the first, the agent's command runs in this process.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { formatManifest, type ManifestRecord } from '../../src/assets/manifest.js';
import { uploadAssets } from '../../src/assets/upload.js';
import { startCache } from '../cache/harness.js';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';
import { pacedProxy } from '../helpers/paced-proxy.js';
import { blackHoleUrl } from '../helpers/black-hole.js';
import { installAgent, runAgent, runAgentHere } from './helpers.js';
import { readQuotedList } from '../helpers/quoted-list.js';
import { deadUrl, serveOnLoopback } from '../helpers/loopback-server.js';

/** An origin under `dir` holding tool.bin (64 KiB) as an asset, and the manifest that names it. */
async function originWithTool(t: Test, dir: string): Promise<{ origin: TestOrigin; tool: Buffer; manifest: string }> {
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
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
  return { origin, tool, manifest };
}

t.test('agent assets fetches through the cache and reports per-file sources', async (t) => {
  const agent = await installAgent(t);
  const dir = t.testdir();
  const { origin, tool, manifest } = await originWithTool(t, dir);
  const cache = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));

  const urls = [await deadUrl(), cache.url, origin.url];
  const args = { manifest, urls, cacheFolder: join(dir, 'tooltool-cache'), dest: join(dir, 'dest') };
  const first = await runAgent(agent, 'assets', args);
  t.equal(first.code, 0, 'exit status 0', { stderr: first.stderr });
  t.match(first.json, { ok: true, failed: 0, bytesDownloaded: tool.length, files: [{ filename: 'tool.bin', source: 'download', url: cache.url, bytesDownloaded: tool.length }] });
  t.ok(readFileSync(join(dir, 'dest', 'tool.bin')).equals(tool));

  const second = await runAgentHere('assets', { ...args, dest: join(dir, 'dest2') });
  t.match(second.json, { ok: true, bytesDownloaded: 0, bytesFromCache: tool.length, files: [{ source: 'cache' }] }, 'the cache folder serves the second run');

  const broken = await runAgentHere('assets', { manifest, urls: [urls[0]], dest: join(dir, 'dest3') });
  t.equal(broken.code, 1, 'a file that cannot be fetched fails the command');
  t.match(broken.json, { ok: false, failed: 1, files: [{ filename: 'tool.bin', code: 'FC_ERR_UPSTREAM' }] });
});

t.test('a cache that trickles a file, each byte within cacheTimeoutMs, is given up on once its rate over 2 x cacheTimeoutMs is below the floor, then the next URL serves it', async (t) => {
  const dir = t.testdir();
  const { origin, tool, manifest } = await originWithTool(t, dir);
  // a byte every 100 ms: never silent for cacheTimeoutMs (500 ms), 10 bytes/s
  const cache = await pacedProxy(t, origin.url, () => true, { bytes: 1, everyMs: 100 });
  const started = Date.now();
  const res = await runAgentHere('assets', { manifest, urls: [cache, origin.url], dest: join(dir, 'dest'), cacheTimeoutMs: 500 });
  const took = Date.now() - started;
  t.equal(res.code, 0, 'exit status 0', { stderr: res.stderr });
  t.match(res.json, { ok: true, failed: 0, files: [{ filename: 'tool.bin', source: 'download', url: origin.url }] });
  t.match(res.json.warnings, [new RegExp(`^tool\\.bin: GET ${cache}/.*slower than 16 KiB/s over 1 s`)], 'the cache was given up on for its rate');
  t.ok(took < 10_000, `within seconds (${took} ms)`);
  t.ok(readFileSync(join(dir, 'dest', 'tool.bin')).equals(tool));
});

t.test('a black-holed cache (its host drops the SYNs) costs cacheTimeoutMs to connect, not the client 10 s, then the next URL serves the file', async (t) => {
  const dir = t.testdir();
  const { origin, tool, manifest } = await originWithTool(t, dir);
  const blackHole = await blackHoleUrl(t);
  const started = Date.now();
  const res = await runAgentHere('assets', { manifest, urls: [blackHole, origin.url], dest: join(dir, 'dest'), cacheTimeoutMs: 1000 });
  const took = Date.now() - started;
  t.equal(res.code, 0, 'exit status 0', { stderr: res.stderr });
  t.match(res.json, { ok: true, failed: 0, files: [{ filename: 'tool.bin', source: 'download', url: origin.url }] });
  t.match(res.json.warnings, [new RegExp(`^tool\\.bin: GET ${blackHole}/.*connect`, 'i')], 'the cache was given up on, connecting');
  t.ok(took < 8000, `within seconds of the 1 s cacheTimeoutMs, not the client's 10 s (${took} ms)`);
  t.ok(readFileSync(join(dir, 'dest', 'tool.bin')).equals(tool));
});

t.test('a cache that keeps silent, before its headers or within its body, costs cacheTimeoutMs per file, then the next URL serves it', async (t) => {
  const dir = t.testdir();
  const { origin, tool, manifest } = await originWithTool(t, dir);
  // One never answers; the other sends the headers and half the file, then nothing.
  const silent = createServer(() => undefined);
  const stalled = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(tool.length) });
    res.write(tool.subarray(0, tool.length >> 1));
  });
  const urls = [await serveOnLoopback(t, silent), await serveOnLoopback(t, stalled)];
  const started = Date.now();
  const res = await runAgentHere('assets', { manifest, urls: [...urls, origin.url], dest: join(dir, 'dest'), cacheTimeoutMs: 500 });
  const took = Date.now() - started;
  t.equal(res.code, 0, 'exit status 0', { stderr: res.stderr });
  t.match(res.json, { ok: true, failed: 0, files: [{ filename: 'tool.bin', source: 'download', url: origin.url }] });
  t.match(res.json.warnings, [new RegExp(`^tool\\.bin: GET ${urls[0]}/.*timeout`, 'i'), new RegExp(`^tool\\.bin: GET ${urls[1]}/.*timeout`, 'i')], 'both caches given up on, for their silence');
  t.ok(took < 10_000, `within seconds, not the client's minute (${took} ms)`);
  t.ok(readFileSync(join(dir, 'dest', 'tool.bin')).equals(tool));
});

t.test("a failed assets answer's error names each failed file's reason once, quoted: a file name holding \"; \" reads as one reason", async (t) => {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  // two files the origin does not have
  const missing = (filename: string): ManifestRecord => {
    const data = randomBytes(64);
    return { filename, size: data.length, algorithm: 'sha512', digest: createHash('sha512').update(data).digest('hex'), unpack: false, visibility: 'public' };
  };
  const manifest = join(dir, 'manifest.tt');
  writeFileSync(manifest, formatManifest([missing('one; two.bin'), missing('three.bin')]));
  const res = await runAgentHere('assets', { manifest, urls: [origin.url], dest: join(dir, 'dest') });
  t.equal(res.code, 1, 'the files that cannot be fetched fail the command');
  const errors = (res.json.files as Array<{ error?: string }>).map((f) => f.error);
  t.same(readQuotedList(String(res.json.error)), errors, `one reason per file, each whole: ${String(res.json.error)}`);
  t.match(errors, [/^one; two\.bin: every URL failed: /, /^three\.bin: every URL failed: /]);
});
