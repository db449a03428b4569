// The disk store across restarts: objects kept, LRU eviction under --max-size, temp
// files removed, the index rebuilt quickly.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { DiskStore, StorageError, casId, httpId, type EntryMeta } from '../../src/cache/disk-store.js';
import { formatBytes } from '../../src/config/units.js';
import { cpuMsOf } from '../helpers/cpu.js';
import { eventually } from '../helpers/wait.js';
import { blocksOf, startCache } from './harness.js';
import { startServerProcess } from '../helpers/processes.js';
import { startUpstream } from './upstream-fixture.js';
import { pino } from 'pino';

async function get(url: string): Promise<{ status: number; xcache: string; body: Buffer }> {
  const res = await request(url);
  return { status: res.statusCode, xcache: String(res.headers['x-cache']), body: Buffer.from(await res.body.arrayBuffer()) };
}

t.test('restart keeps objects; leftover temp files are removed', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(200_000);
  const small = up.addBlob(4096);
  const dir = t.testdir();
  const first = await startCache(t, { upstream: upUrl }, dir);
  t.equal((await get(`${first.url}/cas/sha256/${hex}`)).xcache, 'MISS');
  t.equal((await get(`${first.url}/cas/sha256/${small.hex}`)).xcache, 'MISS');
  await first.app.cache.fills.drain();
  await first.app.close();
  t.same(readFileSync(path.join(dir, casId({ algo: 'sha256', hex: small.hex }))), small.body, 'a small body is stored as exactly its bytes');
  writeFileSync(path.join(dir, 'tmp', 'leftover'), 'half a fill');
  const halfSmall = path.join(path.dirname(path.join(dir, casId({ algo: 'sha256', hex }))), '.tmp-0123456789abcdef');
  writeFileSync(halfSmall, 'half a small commit');
  const second = await startCache(t, { upstream: upUrl }, dir);
  t.same(readdirSync(path.join(dir, 'tmp')), [], 'temp files removed at start');
  t.notOk(existsSync(halfSmall), 'and those of small commits, in the shard directories');
  const again = await get(`${second.url}/cas/sha256/${hex}`);
  t.equal(again.xcache, 'HIT', 'served from disk after restart');
  t.same(again.body, body);
  const smallAgain = await get(`${second.url}/cas/sha256/${small.hex}`);
  t.equal(smallAgain.xcache, 'HIT', 'the small one too');
  t.same(smallAgain.body, small.body);
  t.equal(up.requests.length, 2);
});

t.test('LRU evicts the least recently used under max-size, and unlinks its files', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blobs = [up.addBlob(400_000), up.addBlob(400_000), up.addBlob(400_000)];
  const dir = t.testdir();
  const { app, url } = await startCache(t, { upstream: upUrl, maxSize: 1_000_000 }, dir);
  const fetch = async (i: number): Promise<string> => {
    const r = await get(`${url}/cas/sha256/${blobs[i]!.hex}`);
    await app.cache.fills.drain();
    return r.xcache;
  };
  await fetch(0);
  await fetch(1);
  t.equal(await fetch(0), 'HIT', 'touch 0: now 1 is the least recently used');
  await fetch(2); // 1.2 MB > 1 MB: evict 1
  const file = (i: number): string => path.join(dir, casId({ algo: 'sha256', hex: blobs[i]!.hex }));
  await eventually('the evicted body is unlinked', () => !existsSync(file(1)), 5000);
  t.notOk(existsSync(file(1)), 'the evicted body is unlinked');
  t.ok(existsSync(file(0)) && existsSync(file(2)));
  t.equal(await fetch(0), 'HIT');
  t.equal(await fetch(2), 'HIT');
  t.equal(await fetch(1), 'MISS', 'the evicted one comes from upstream again');
  t.ok(app.cache.store.bytes <= 1_000_000);
  // 1 evicted for 2, then another for 1 again; each counted in the blocks it took
  const charged = blocksOf(dir, 400_000);
  t.same(app.cache.store.evicted, { objects: 2, bytes: 2 * charged }, 'evictions counted');
  const metrics = await (await request(`${url}/-/metrics`)).body.text();
  t.match(metrics, /fleetcache_cache_evicted_objects_total\{[^}]*\} 2\n/);
  t.match(metrics, new RegExp(`fleetcache_cache_evicted_bytes_total\\{[^}]*\\} ${2 * charged}\n`));
});

t.test('tiny answers are charged their blocks on disk: a 9-byte 404 under many keys stays within max-size, on disk too', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  up.handler = (_req, res) => {
    res.writeHead(404, { 'cache-control': 'max-age=300', 'content-type': 'text/plain' }).end('not here!');
    return true;
  };
  const dir = t.testdir();
  const maxSize = 256 * 1024;
  const { app, url } = await startCache(t, { upstream: upUrl, maxSize, mirrors: { m: { url: upUrl } } }, dir);
  const asked = 200; // 2 files of at least a block each: several times the limit
  const pad = 'p'.repeat(2000);
  const statuses = new Set<number>();
  for (let i = 0; i < asked; i++) statuses.add((await get(`${url}/mirror/m/x?q=${i}${pad}`)).status);
  t.same([...statuses], [404], 'every answer is the 404');
  await app.cache.fills.drain();
  const files = (): string[] => readdirSync(path.join(dir, 'http.v1'), { recursive: true, encoding: 'utf8' }).map((n) => path.join(dir, 'http.v1', n)).filter((f) => statSync(f).isFile());
  const onDisk = (): number => files().reduce((n, f) => n + statSync(f).blocks * 512, 0);
  const metrics = await (await request(`${url}/-/metrics`)).body.text();
  const lruBytes = Number(/^fleetcache_cache_lru_bytes\{[^}]*\} (\d+)$/m.exec(metrics)?.[1]);
  t.ok(lruBytes <= maxSize, `the index counts ${lruBytes} bytes, within the limit`);
  t.ok(app.cache.store.count < asked && app.cache.store.evicted.objects > 0, `the oldest were evicted (${app.cache.store.count} kept)`);
  await eventually('the evicted files are unlinked', () => files().length === 2 * app.cache.store.count, 5000);
  t.ok(onDisk() <= lruBytes, `what the files take on disk (${onDisk()} bytes) is no more than the index counts`);
});

t.test('index rebuild: 2,000 objects in well under a second (bench/cache.ts times 100,000)', async (t) => {
  const dir = t.testdir();
  const n = 2_000;
  for (let i = 0; i < n; i++) {
    const hex = i.toString(16).padStart(64, '0').replace(/^00/, (i % 256).toString(16).padStart(2, '0'));
    const id = casId({ algo: 'sha256', hex });
    if (i < 256) mkdirSync(path.dirname(path.join(dir, id)), { recursive: true });
    writeFileSync(path.join(dir, id), 'x');
  }
  // A sidecar beside a /cas body (older layout) and an http body without its sidecar go.
  const stale = path.join(dir, casId({ algo: 'sha256', hex: '00'.repeat(32) })) + '.json';
  writeFileSync(stale, '{}');
  const orphan = path.join(dir, httpId('GET /artifacts/x'));
  mkdirSync(path.dirname(orphan), { recursive: true });
  writeFileSync(orphan, 'body without sidecar');
  const store = new DiskStore(dir, 1e9, pino({ level: 'silent' }));
  const { ms } = await cpuMsOf(() => store.open());
  t.equal(store.count, n, 'every object indexed, the orphan dropped');
  t.notOk(existsSync(stale), 'stale /cas sidecar removed');
  t.notOk(existsSync(orphan), 'http body without sidecar removed');
  t.ok(ms < 300, `rebuilt in ${ms.toFixed(0)} ms of CPU`);
});

t.test('a size limit lowered below what the disk holds: the oldest objects go at start, and the log says how many', async (t) => {
  const dir = t.testdir();
  const ids = Array.from({ length: 10 }, (_, i) => casId({ algo: 'sha256', hex: `${i}`.padStart(64, 'a') }));
  for (const [i, id] of ids.entries()) {
    mkdirSync(path.dirname(path.join(dir, id)), { recursive: true });
    writeFileSync(path.join(dir, id), Buffer.alloc(1000));
    utimesSync(path.join(dir, id), 1_000_000 + i, 1_000_000 + i); // accessed in this order
  }
  const logged: string[] = [];
  const block = blocksOf(dir, 1); // each 1000-byte body takes a block
  const store = new DiskStore(dir, 4 * block, pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) }));
  await store.open();
  t.equal(store.count, 4, 'as many as fit');
  t.ok(ids.slice(6).every((id) => store.has(id)), 'the four last accessed kept');
  await eventually('the others unlinked', () => ids.slice(0, 6).every((id) => !existsSync(path.join(dir, id))));
  const said = `"evicted":6,"evictedBytes":${6 * block},"kept":4,"maxSize":${4 * block},"msg":"the data directory held more than the size limit (${formatBytes(4 * block)}): the 6 least recently used objects were evicted at start"`;
  t.ok(logged.join('').includes(said), said);
  const quiet: string[] = [];
  await new DiskStore(dir, 4 * block, pino({ level: 'warn' }, { write: (line: string) => void quiet.push(line) })).open();
  t.same(quiet.filter((l) => l.includes('evicted')), [], 'nothing to say when all fits');
});

t.test('a small blob damaged on disk while stopped is hashed on its first read, dropped and fetched again', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const small = up.addBlob(4096);
  const dir = t.testdir();
  const first = await startCache(t, { upstream: upUrl }, dir);
  t.equal((await get(`${first.url}/cas/sha256/${small.hex}`)).xcache, 'MISS');
  await first.app.cache.fills.drain();
  await first.app.close();
  // What a power loss can leave of an unflushed file: the right size, zeroes inside.
  writeFileSync(path.join(dir, casId({ algo: 'sha256', hex: small.hex })), Buffer.alloc(4096));
  const second = await startCache(t, { upstream: upUrl }, dir);
  const again = await get(`${second.url}/cas/sha256/${small.hex}`);
  t.equal(again.xcache, 'MISS', 'not served from the damaged file');
  t.same(again.body, small.body, 'the right bytes, from upstream');
  t.equal(up.requests.length, 2);
  await second.app.cache.fills.drain();
  t.equal((await get(`${second.url}/cas/sha256/${small.hex}`)).xcache, 'HIT');
});

/** A store of `dir` with room to spare, opened (its index read from the disk). */
async function openedStore(dir: string): Promise<DiskStore> {
  const store = new DiskStore(dir, 1e9, pino({ level: 'silent' }));
  await store.open();
  return store;
}

t.test('giving a claim up removes the claim only, never a body another process committed under its name since', async (t) => {
  const dir = t.testdir();
  const store = await openedStore(dir);
  const hex = 'ab'.repeat(32);
  const id = casId({ algo: 'sha256', hex });
  for (const opened of [false, true]) {
    const claim = store.claimFill(id, `${id}\0\0`)!;
    t.ok(claim.inPlace, 'a plain /cas claim is under the blob\'s own name');
    if (opened) await (await store.openClaim(claim)).fh.close(); // a large fill: its descriptor closed early
    // Another worker commits the blob: its body renamed over the name.
    writeFileSync(`${claim.path}.other`, 'a whole body', { mode: 0o644 });
    renameSync(`${claim.path}.other`, claim.path);
    store.dropClaim(claim);
    t.equal(readFileSync(claim.path, 'utf8'), 'a whole body', `the committed body stays (claim ${opened ? 'opened' : 'as made'})`);
    rmSync(claim.path);
  }
  const claim = store.claimFill(id, `${id}\0\0`)!;
  store.dropClaim(claim);
  t.notOk(existsSync(claim.path), 'a claim nobody replaced is removed');
});

t.test('a fill whose claim was taken for an orphan\'s and claimed anew meanwhile never writes into the new claim', async (t) => {
  const dir = t.testdir();
  const store = await openedStore(dir);
  const key = 'GET /artifacts/run-1/big.bin';
  const id = httpId(key);
  const first = store.claimFill(id, key)!;
  t.notOk(first.inPlace, 'a name\'s claim is a file of its own, which its fill writes');
  // Another worker, told by none that it fills the key, removes the claim as an orphan's and claims it.
  t.ok(store.dropOrphanClaim(id, key, Date.now() + 10_000), 'taken for an orphan\'s');
  const second = store.claimFill(id, key)!;
  t.ok(second, 'claimed anew, under the same name');
  const refused: unknown = await store.openClaim(first).then(({ fh }) => fh.close(), (err: unknown) => err);
  t.ok(refused instanceof StorageError, 'the first fill is refused the file (a storage failure: its requests pass through), not given the second claim\'s');
  const { fh } = await store.openClaim(second);
  t.equal((await fh.stat()).size, 0, 'the second claim holds nothing of the first fill');
  await fh.close();
});

t.test('a replacement cut between its two renames never pairs the new sidecar with the old body', async (t) => {
  const dir = t.testdir();
  const log = pino({ level: 'silent' });
  const key = 'GET /artifacts/run-1/report.txt';
  const id = httpId(key);
  const file = path.join(dir, id);
  const meta = (etag: string): EntryMeta => ({ key, status: 200, headers: { etag }, size: 9, storedAt: Date.now() });
  const written = async (store: DiskStore, body: string): Promise<Awaited<ReturnType<DiskStore['createTemp']>>> => {
    const tmp = await store.createTemp();
    await tmp.fh.write(body);
    return tmp;
  };
  const first = new DiskStore(dir, 1e9, log);
  await first.open();
  await first.commit(id, await written(first, 'version 1'), meta('"v1"'));
  await first.updateMeta(id, { ...meta('"v1"'), headers: { etag: '"v1"', 'x-revalidated': 'yes' } });

  const second = new DiskStore(dir, 1e9, log);
  await second.open();
  t.match((await second.lookup(id))?.meta.headers, { etag: '"v1"', 'x-revalidated': 'yes' }, 'a revalidated sidecar still pairs with its body after a restart');
  // Version 2, of the same size: the body's rename fails once the sidecar's is done (its
  // temp file gone), which leaves on disk what a crash between the two renames leaves.
  const tmp = await written(second, 'version 2');
  rmSync(tmp.path);
  await t.rejects(second.commit(id, tmp, meta('"v2"')), { message: /cache storage failure: ENOENT/ });
  t.match(JSON.parse(readFileSync(`${file}.json`, 'utf8')), { headers: { etag: '"v2"' } }, 'the new sidecar is in place');
  t.equal(readFileSync(file, 'utf8'), 'version 1', 'beside the old body');

  const third = new DiskStore(dir, 1e9, log);
  await third.open();
  t.equal(await third.lookup(id), undefined, 'after a restart the pair is not served as version 2');
  await eventually('its files are removed', () => !existsSync(file) && !existsSync(`${file}.json`), 5000);
});

t.test('an entry whose files another process removed (evicted) is forgotten quietly: no sidecar left without its body, no error', async (t) => {
  const dir = t.testdir();
  const logged: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) });
  const store = new DiskStore(dir, 1e9, log);
  await store.open();
  const meta = (key: string): EntryMeta => ({ key, status: 200, headers: { etag: '"v1"' }, size: 5, storedAt: Date.now() });
  // a revalidation (304) whose entry was evicted (body and sidecar unlinked) between its lookup and the sidecar's update
  const a = httpId('GET /artifacts/r/j/a');
  store.commitSmall(a, Buffer.from('hello'), meta('GET /artifacts/r/j/a'));
  rmSync(path.join(dir, a));
  rmSync(path.join(dir, `${a}.json`));
  await store.updateMeta(a, { ...meta('GET /artifacts/r/j/a'), storedAt: Date.now() + 1 });
  t.notOk(existsSync(path.join(dir, `${a}.json`)), 'no sidecar without its body');
  t.equal(store.count, 0, 'forgotten');
  // a lookup of an entry whose files went meanwhile
  const b = httpId('GET /artifacts/r/j/b');
  store.commitSmall(b, Buffer.from('hello'), meta('GET /artifacts/r/j/b'));
  const fresh = new DiskStore(dir, 1e9, log);
  await fresh.open();
  rmSync(path.join(dir, b));
  rmSync(path.join(dir, `${b}.json`));
  t.equal(await fresh.lookup(b), undefined);
  t.same(logged, [], 'nothing logged: evictions are not errors');
});

t.test('a data directory holding directories inside its shards (not of this layout) still starts, and serves', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const blob = up.addBlob(4096);
  const dir = t.testdir();
  // where an entry or a temp file would be: a directory rm cannot remove without `recursive`
  const strays = [path.join(dir, 'cas.v1/sha256/ab/older-layout/cd'), path.join(dir, 'http.v1/ab/.tmp-fill-dir')];
  for (const d of strays) mkdirSync(d, { recursive: true });
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', dir], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const got = await get(`${cache.url}/cas/sha256/${blob.hex}`);
  t.equal(got.status, 200);
  t.same(got.body, blob.body);
  t.ok(strays.every((d) => existsSync(d)), 'what is not the cache\'s is left as it is');
  // (written before the "listening" line, on another pipe: it may come after it)
  await eventually('said at start', () => /left as it is/.test(cache.stderr()));
});

t.test('commit tells its caller whether it stored the body: one larger than the cache is dropped, and says so', async (t) => {
  const dir = t.testdir();
  const block = blocksOf(dir, 1);
  const store = new DiskStore(dir, 2 * block, pino({ level: 'silent' })); // a body's block and its sidecar's
  await store.open();
  const commitBody = async (key: string, body: string): Promise<{ outcome: string; tmpPath: string }> => {
    const tmp = await store.createTemp();
    await tmp.fh.write(body);
    const outcome = await store.commit(httpId(key), tmp, { key, status: 200, headers: {}, size: body.length, storedAt: Date.now() });
    return { outcome, tmpPath: tmp.path };
  };
  const small = await commitBody('GET /small', 'fits');
  t.equal(small.outcome, 'stored');
  t.ok(await store.lookup(httpId('GET /small')), 'and it is found');
  const large = await commitBody('GET /large', 'x'.repeat(block + 1));
  t.equal(large.outcome, 'larger-than-cache', 'a body that fits the limit, but not with its sidecar, is not stored, and the caller is told');
  t.equal(await store.lookup(httpId('GET /large')), undefined, 'nothing is found under its key');
  t.notOk(existsSync(large.tmpPath), 'its temp file is removed');
  const file = path.join(dir, httpId('GET /large'));
  t.same([existsSync(file), existsSync(`${file}.json`)], [false, false], 'neither its body nor its sidecar is left on disk, where no index would count them');
});

t.test('a small body larger than a cache smaller than 16 KiB: commitSmall drops it as commit does, and leaves no file on disk', async (t) => {
  const dir = t.testdir();
  const maxSize = 2 * blocksOf(dir, 1); // a body's block and its sidecar's
  const store = new DiskStore(dir, maxSize, pino({ level: 'silent' }));
  await store.open();
  const stored = (key: string, body: string): string => store.commitSmall(httpId(key), Buffer.from(body), { key, status: 200, headers: {}, size: body.length, storedAt: Date.now() });
  t.equal(stored('GET /small', 'fits'), 'stored');
  t.ok(await store.lookup(httpId('GET /small')), 'and it is found');
  t.equal(stored('GET /large', 'x'.repeat(maxSize + 1)), 'larger-than-cache', 'a body over the size limit is not stored, and the caller is told');
  t.equal(await store.lookup(httpId('GET /large')), undefined, 'nothing is found under its key');
  const file = path.join(dir, httpId('GET /large'));
  t.same([existsSync(file), existsSync(`${file}.json`)], [false, false], 'neither its body nor its sidecar is on disk, where no index would count them');
});

t.test('two sidecar updates of one entry at once (two revalidations\' 304s): the later one is kept on disk, charged in the index and served', async (t) => {
  const dir = t.testdir();
  const store = await openedStore(dir);
  const key = 'mirror:m:/dists/Release';
  const id = httpId(key);
  const file = path.join(dir, id);
  const meta = (headers: Record<string, string>): EntryMeta => ({ key, status: 200, headers: { etag: '"r"', ...headers }, size: 5, storedAt: Date.now() });
  store.commitSmall(id, Buffer.from('hello'), meta({}));
  // a sidecar of several blocks, and one of a block
  const large = meta({ 'x-fields': 'v'.repeat(3 * blocksOf(dir, 1)) });
  const small = meta({ 'x-fields': 'few' });
  for (const [what, first, later] of [['large, then small', large, small], ['small, then large', small, large]] as const) {
    await Promise.all([store.updateMeta(id, first), store.updateMeta(id, later)]);
    const onDisk = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as EntryMeta;
    t.same(onDisk.headers, later.headers, `${what}: the later one on disk`);
    t.equal(store.bytes, blocksOf(dir, statSync(file).size) + blocksOf(dir, statSync(`${file}.json`).size), `${what}: the index charges the files as they are`);
    t.same((await store.lookup(id))?.meta.headers, later.headers, `${what}: and serves it`);
  }
  // a new body committed while they wait (the object fetched anew): neither writes over its sidecar
  const fetchedAnew = { ...meta({ etag: '"r2"' }), size: 7 };
  const updates = Promise.all([store.updateMeta(id, large), store.updateMeta(id, small)]);
  store.commitSmall(id, Buffer.from('hello 2'), fetchedAnew);
  await updates;
  t.same((JSON.parse(readFileSync(`${file}.json`, 'utf8')) as EntryMeta).headers, fetchedAnew.headers, 'an entry committed meanwhile keeps its own sidecar');
  t.same((await store.lookup(id))?.meta, fetchedAnew, 'and its own headers');
  t.equal(store.bytes, blocksOf(dir, statSync(file).size) + blocksOf(dir, statSync(`${file}.json`).size), 'and its own charge');
});
