// The dashboard in a real browser (Debian's chromium through playwright-core): the figures
// the page shows must be the ones /-/stats gives, on the origin and on a regional cache.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { request } from 'undici';
import { buildCacheServer } from '../../src/cache/server.js';
import { resolveCacheConfig } from '../../src/cache/config.js';
import { startOrigin } from '../helpers/origin.js';
import { eventually } from '../helpers/wait.js';

const CHROMIUM = '/usr/bin/chromium';

async function launch(t: Test): Promise<BrowserContext> {
  // A fresh profile per browser, removed in teardown after the browser is closed.
  const profile = mkdtempSync(join(tmpdir(), 'fleetcache-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });
  return context;
}

/** Opens /-/ui, records every /-/stats body the page received, refuses any request elsewhere. */
async function openDashboard(t: Test, context: BrowserContext, base: string): Promise<{ page: Page; seen: unknown[] }> {
  const page = await context.newPage();
  const seen: unknown[] = [];
  page.on('request', (r) => { if (!r.url().startsWith(base)) t.fail(`the page loaded ${r.url()}`); });
  page.on('response', (r) => { if (r.url().endsWith('/-/stats')) void r.json().then((j: unknown) => seen.push(j), () => undefined); });
  page.on('pageerror', (err) => t.fail(`page error: ${err.message}`));
  await page.goto(`${base}/-/ui?interval=250`);
  // Three polls: two give a first point of the rate chart; uPlot then draws a canvas.
  await eventually('two points on the chart', async () => Number(await value(page, 'chart', 'points')) >= 2, 10_000);
  await page.locator('#chart canvas').first().waitFor({ timeout: 5000 });
  return { page, seen };
}

async function value(page: Page, testid: string, attr = 'value'): Promise<string | null> {
  return page.getByTestId(testid).first().getAttribute(`data-${attr}`);
}

async function stats<T>(base: string): Promise<T> {
  const res = await request(`${base}/-/stats`);
  return (await res.body.json()) as T;
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? String(n) : n.toFixed(2)} ${units[i]}`;
}

async function putBlob(url: string, token: string, data: Buffer): Promise<string> {
  const hex = createHash('sha256').update(data).digest('hex');
  const res = await request(`${url}/cas/sha256/${hex}`, { method: 'PUT', body: data, headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  if (res.statusCode !== 201) throw new Error(`PUT answered ${res.statusCode}`);
  return hex;
}

async function getBlob(url: string): Promise<void> {
  const res = await request(url);
  if (res.statusCode !== 200) throw new Error(`GET ${url} answered ${res.statusCode}: ${await res.body.text()}`);
  // Read to the end (dump() cuts a body over 128 KiB: the cache rightly counts no bytes served for it).
  await res.body.arrayBuffer();
}

async function startCache(t: Test, region: string, upstream: string): Promise<{ cache: Awaited<ReturnType<typeof buildCacheServer>>; url: string }> {
  // Not t.testdir(): in a test that has an origin, that would empty the origin's directory.
  const dir = mkdtempSync(join(tmpdir(), 'fleetcache-ui-cache-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cache = await buildCacheServer(resolveCacheConfig({ region, listen: '127.0.0.1:0', upstream, data: dir, logLevel: 'silent' }));
  await cache.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => cache.close());
  const addr = cache.server.address();
  return { cache, url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}` };
}

/** The cache's one fill has committed (just after its last byte is sent): the next requests are disk hits. */
async function filled(cacheUrl: string): Promise<void> {
  await eventually('the fill committed', async () => (await stats<{ inflightFills: number; store: { objects: number } }>(cacheUrl)).store.objects === 1, 5000);
  await eventually('no fill in flight', async () => (await stats<{ inflightFills: number }>(cacheUrl)).inflightFills === 0, 5000);
}

t.test('the page and its assets come from the server, with a CSP that forbids elsewhere', async (t) => {
  const origin = await startOrigin(t);
  const page = await origin.app.inject({ url: '/-/ui' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-security-policy'], /default-src 'none'/);
  t.match(page.body, /\/-\/ui\/assets\/uPlot\.iife\.min\.js/);
  t.notMatch(page.body, /https?:\/\//, 'no absolute URL in the page');
  const js = await origin.app.inject({ url: '/-/ui/assets/uPlot.iife.min.js' });
  t.equal(js.statusCode, 200);
  t.match(js.headers['content-type'], /javascript/);
  t.equal((await origin.app.inject({ url: '/-/ui/assets/..%2Fpackage.json' })).statusCode, 404);
  t.equal((await origin.app.inject({ url: '/-/ui/assets/uPlot.esm.js' })).statusCode, 404);
});

t.test('in Chromium, origin and cache figures match /-/stats', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} missing (apt-get install chromium)` }, async (t) => {
  const origin = await startOrigin(t);
  const a = await putBlob(origin.url, origin.token, randomBytes(1_500_000));
  await putBlob(origin.url, origin.token, randomBytes(70_000));

  const { cache, url: cacheUrl } = await startCache(t, 'eu-west', origin.url);
  await getBlob(`${cacheUrl}/cas/sha256/${a}`); // miss: fetched from the origin
  await filled(cacheUrl);
  await getBlob(`${cacheUrl}/cas/sha256/${a}`); // hit
  await getBlob(`${cacheUrl}/cas/sha256/${a}`); // hit

  const browser = await launch(t);

  t.test('origin', async (t) => {
    const { page, seen } = await openDashboard(t, browser, origin.url);
    const s = await stats<{ role: string; totals: { bytesIn: number; bytesOut: number; requests: number }; kinds: Record<string, { bytesOut: number }> }>(origin.url);
    t.equal(await page.getByTestId('role').textContent(), 'origin');
    t.equal(Number(await value(page, 'bytes-served')), s.totals.bytesOut);
    t.equal(await page.getByTestId('bytes-served').textContent(), formatBytes(s.totals.bytesOut));
    t.equal(Number(await value(page, 'link-uploads')), s.totals.bytesIn);
    t.equal(s.totals.bytesIn, 1_570_000, 'both uploads are counted');
    t.equal(Number(await value(page, 'kind-cas', 'out')), s.kinds.cas?.bytesOut);
    // Requests grow with every poll: the figure shown is one that a poll returned.
    // The page may draw a poll's figure before Playwright hands the test that poll's body: wait for it.
    const shown = Number(await value(page, 'requests'));
    await eventually('the page received that /-/stats body', () => seen.some((j) => (j as typeof s).totals.requests === shown), 5000)
      .then(() => t.pass(`requests ${shown} is one /-/stats gave`), () => t.fail(`requests ${shown} is no /-/stats body the page received`));
    t.equal(await value(page, 'hit-ratio'), '', 'the origin has no hit ratio');
    t.equal(await page.getByTestId('hit-ratio').textContent(), '—');
  });

  t.test('cache', async (t) => {
    const { page } = await openDashboard(t, browser, cacheUrl);
    const s = await stats<{ total: { bytesServed: number; bytesUpstream: number; hits: number; misses: number; collapsed: number }; inflightFills: number }>(cacheUrl);
    t.equal(await page.getByTestId('role').textContent(), 'cache eu-west');
    t.same([s.total.hits, s.total.misses, s.total.collapsed], [2, 1, 0], JSON.stringify(s));
    const ratio = (s.total.hits + s.total.collapsed) / (s.total.hits + s.total.misses + s.total.collapsed);
    t.equal(Number(await value(page, 'hit-ratio')), ratio);
    t.equal(await page.getByTestId('hit-ratio').textContent(), `${(ratio * 100).toFixed(1)} %`);
    t.equal(Number(await value(page, 'bytes-served')), s.total.bytesServed);
    const saved = s.total.bytesServed - s.total.bytesUpstream;
    t.equal(Number(await value(page, 'bytes-saved')), saved);
    t.equal(await page.getByTestId('bytes-saved').textContent(), formatBytes(saved));
    t.equal(Number(await value(page, 'link-upstream')), s.total.bytesUpstream);
    t.equal(Number(await value(page, 'fills-inflight')), s.inflightFills);
    t.equal(Number(await value(page, 'requests')), 3);

    // Traffic while the page watches shows up in the next poll.
    await getBlob(`${cacheUrl}/cas/sha256/${a}`);
    // A body's bytes are counted when its transfer ends, which can be after the client has it
    // all (and after a poll that already counts the request): wait for the cache, then the page.
    const served = 4 * 1_500_000; // the miss and three hits of blob a
    await eventually('the cache counted every byte served', async () => (await stats<typeof s>(cacheUrl)).total.bytesServed === served, 5000);
    await eventually('the page shows them', async () => Number(await value(page, 'bytes-served')) === served, 5000);
    t.equal(Number(await value(page, 'requests')), 4);
    t.equal(Number(await value(page, 'hit-ratio')), 3 / 4);

    // The disk: what the index holds against the limit, then a storage failure (what a
    // full disk raises, see test/cache/disk-full.test.ts) on the next poll.
    const { store } = await stats<{ store: { bytes: number; maxSize: number } }>(cacheUrl);
    t.equal(Number(await value(page, 'disk')), store.bytes);
    t.equal(await page.getByTestId('disk').textContent(), `${formatBytes(store.bytes)} of ${formatBytes(store.maxSize)}`);
    t.equal(await value(page, 'disk', 'full'), 'false');
    cache.cache.store.storageFailure(new Error('ENOSPC: no space left on device (the test)'), 'fill-write');
    await eventually('the page shows the disk full', async () => (await value(page, 'disk', 'full')) === 'true', 5000);
    t.equal(await page.getByTestId('disk').textContent(), `${formatBytes(store.bytes)} of ${formatBytes(store.maxSize)}, refusing writes`);
    // An eviction (the least recently used, as for a fill that needs the room) shows up too.
    const freed = await cache.cache.store.makeRoom(1);
    await eventually('the page shows the eviction', async () => Number(await value(page, 'disk', 'evicted')) === freed, 5000);
    const after = (await stats<{ store: { bytes: number; maxSize: number } }>(cacheUrl)).store;
    t.equal(await page.getByTestId('disk').textContent(), `${formatBytes(after.bytes)} of ${formatBytes(after.maxSize)}, ${formatBytes(freed)} evicted, refusing writes`);
  });

  t.test('a cache that fetched more than it served shows a negative saving, as savingsRatio', async (t) => {
    // A Range of a miss fills the whole blob (deploy/OPERATIONS.md, "bytes saved").
    const { url } = await startCache(t, 'us-east', origin.url);
    const res = await request(`${url}/cas/sha256/${a}`, { headers: { range: 'bytes=0-99' } });
    t.equal(res.statusCode, 206);
    await res.body.arrayBuffer();
    await filled(url);
    const s = await stats<{ total: { bytesServed: number; bytesUpstream: number; savingsRatio: number } }>(url);
    const saved = s.total.bytesServed - s.total.bytesUpstream;
    t.ok(s.total.savingsRatio < 0, `savingsRatio ${s.total.savingsRatio} is negative`);
    t.ok(saved < 0, `served ${s.total.bytesServed} < upstream ${s.total.bytesUpstream}`);
    const { page } = await openDashboard(t, browser, url);
    t.equal(Number(await value(page, 'bytes-saved')), saved);
    t.equal(await page.getByTestId('bytes-saved').textContent(), formatBytes(saved));
  });
});
