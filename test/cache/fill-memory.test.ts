// The windows of recent bytes that fills keep in memory stay within the cache's
// `fillMemory` across all fills of a process: past it, fills keep fewer windows and their
// readers further behind read the file. Every window is given back once its fill and its
// readers are done.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { request } from 'undici';
import { fillMemoryInUse } from '../../src/cache/fill-progress.js';
import { eventually } from '../helpers/wait.js';
import { fetchHash, startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

const MiB = 1024 * 1024;

t.test('six large fills at once keep their windows within fillMemory; readers behind go to the file', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blobs = Array.from({ length: 6 }, () => up.addBlob(6 * MiB));
  up.options.rate = 24 * MiB; // a quarter of a second per blob: every fill runs at once
  const { app, url } = await startCache(t, { upstream: upUrl, fillMemory: '3MiB' }, t.testdir());
  let peak = 0;
  let scraped = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, fillMemoryInUse());
      await sleep(2);
    }
  })();
  // What operators see: the gauge in /-/metrics, scraped while the fills run.
  const scraper = (async () => {
    while (sampling) {
      const text = await (await request(`${url}/-/metrics`)).body.text();
      scraped = Math.max(scraped, Number(/^fleetcache_cache_fill_memory_bytes\{[^}]*\} (\d+)$/m.exec(text)?.[1] ?? -1));
      await sleep(20);
    }
  })();
  // Two clients per blob, the second one started late: it reads behind the first.
  const results = await Promise.all(blobs.flatMap(({ hex }) => [
    fetchHash(`${url}/cas/sha256/${hex}`),
    sleep(100).then(() => fetchHash(`${url}/cas/sha256/${hex}`)),
  ]));
  sampling = false;
  await Promise.all([sampler, scraper]);
  t.ok(results.every((r, i) => r.status === 200 && r.hash === blobs[Math.floor(i / 2)]!.hex && r.size === 6 * MiB), 'all 12 bodies hash right');
  t.equal(up.requests.length, 6, 'one upstream request per blob');
  t.ok(peak > 0, `windows were used (peak ${peak} bytes)`);
  // Each fill keeps two 256 KiB windows whatever the budget (a new fill's first ones, until
  // the others make their next window and shed theirs): at most 3 MiB past the budget here.
  t.ok(peak <= 3 * MiB + 6 * 2 * 256 * 1024, `peak ${peak} bytes within the 3 MiB budget and the windows each fill keeps (unbounded, six fills would hold 36 MiB)`);
  t.ok(scraped > 0 && scraped <= 3 * MiB + 6 * 2 * 256 * 1024, `the metric showed the windows in use, within the same bound (${scraped} bytes at most)`);
  await app.cache.fills.drain();
  await eventually('every window given back', () => fillMemoryInUse() === 0);
  const after = await (await request(`${url}/-/metrics`)).body.text();
  t.match(after, /^fleetcache_cache_fill_memory_bytes\{role="cache",region="[^"]+"\} 0$/m, 'and 0 once they are all given back');
});
