// A real origin killed (SIGKILL, by PID) at seeded random moments under a load of concurrent
// uploads: blobs of several sizes, artifacts, project bases and run manifests, one name
// written over and over. After each restart every acknowledged upload is there, every blob
// on disk and every blob served has the digest of its name, every name record parses and
// points at a stored blob, and no temp file is left. FLEETCACHE_CRASH_SEED replays a run.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { request } from 'undici';
import { filesUnder, seeded } from '../helpers/crash.js';
import { runManifest } from '../helpers/run-manifest.js';
import { startServerProcess, type RunningServer } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

const TOKEN = 'crash-token-0123456789abcdef';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const SIZES = [0, 1, 4096, 70_000, 1024 * 1024 + 3];
// Three kills at random moments (four took one origin start and a round of load more, for
// what another seed gives the next run)
const CRASHES = 3;

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// One data directory for both subtests: the origin the first leaves running after its last
// crash is the one the second stops cleanly, then damages (an origin start fewer).
t.test('an origin\'s data directory', async (t) => {
  const data = t.testdir();
  // started in the parent: the last one outlives the first subtest
  const start = (): Promise<RunningServer> => startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', data], { FLEETCACHE_TOKEN: TOKEN, FLEETCACHE_LOG_LEVEL: 'warn' });
  let last: RunningServer | undefined;

  await t.test('an origin killed mid-upload restarts with every acknowledged upload whole and nothing half written', async (t) => {
    const { seed, random, pick, bytes } = seeded(t);

    /** Acknowledged uploads: blobs by hex, names by URL path with the digest they were given. */
    const blobs = new Set<string>();
    const names = new Map<string, string>();
    /** The bodies ever sent to the name written over and over: after a crash it holds one of them whole. */
    const overwritten = '/artifacts/crash/job/overwritten.txt';
    const overwrittenSent = new Set<string>();
    let n = 0;

    const put = async (url: string, urlPath: string, body: Buffer, headers: Record<string, string> = {}): Promise<boolean> => {
      const res = await request(url + urlPath, { method: 'PUT', headers: { ...AUTH, ...headers }, body });
      await res.body.dump();
      if (res.statusCode >= 300) throw new Error(`PUT ${urlPath}: HTTP ${res.statusCode}`);
      return true;
    };
    /** One upload of a random kind; resolves once it is acknowledged, rejects when the server died. */
    const upload = async (url: string): Promise<void> => {
      const i = n++;
      const kind = pick(['cas', 'cas', 'artifact', 'overwrite', 'run']);
      if (kind === 'cas') {
        const body = bytes(pick(SIZES));
        const hex = sha256(body);
        if (await put(url, `/cas/sha256/${hex}`, body)) blobs.add(hex);
      } else if (kind === 'artifact') {
        const body = bytes(pick(SIZES));
        const p = `/artifacts/crash/job/a-${i}.bin`;
        if (await put(url, p, body)) names.set(p, sha256(body));
      } else if (kind === 'overwrite') {
        const body = bytes(pick(SIZES));
        overwrittenSent.add(sha256(body));
        await put(url, overwritten, body);
      } else {
        const base = bytes(pick(SIZES));
        const basePath = `/projects/crash/bases/b${i}`;
        if (await put(url, basePath, base)) names.set(basePath, sha256(base));
        const manifest = Buffer.from(JSON.stringify(runManifest('crash', `r${i}`, base, { baseId: `b${i}` })));
        const runPath = `/projects/crash/runs/r${i}`;
        if (await put(url, runPath, manifest, { 'content-type': 'application/json' })) names.set(runPath, '');
      }
    };

    /** GETs `urlPath`; its status and the sha256 of its body. */
    const get = async (url: string, urlPath: string): Promise<{ status: number; hex: string; body: Buffer }> => {
      const res = await request(url + urlPath, { headers: AUTH });
      const body = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, hex: sha256(body), body };
    };

    const check = async (url: string, round: number): Promise<void> => {
      const where = `after crash ${round} (seed ${seed})`;
      const tmp = filesUnder(path.join(data, 'tmp'));
      t.same(tmp, [], `${where}: no temp file left`);
      const cas = path.join(data, 'cas.v1', 'sha256');
      const onDisk = filesUnder(cas);
      const bad = onDisk.filter((rel) => sha256(readFileSync(path.join(cas, rel))) !== path.basename(rel));
      t.same(bad, [], `${where}: every blob on disk has the digest of its name (${onDisk.length} blobs)`);
      const records = filesUnder(path.join(data, 'names.v1'));
      const damaged: string[] = [];
      const dangling: string[] = [];
      for (const rel of records) {
        const text = readFileSync(path.join(data, 'names.v1', rel), 'utf8');
        let record: { digest?: unknown };
        try {
          record = JSON.parse(text) as { digest?: unknown };
        } catch {
          damaged.push(`${rel}: ${JSON.stringify(text.slice(0, 40))}`);
          continue;
        }
        if (typeof record.digest === 'string' && record.digest.startsWith('sha256:') && !onDisk.includes(path.join(record.digest.slice(7, 9), record.digest.slice(7)))) dangling.push(rel);
      }
      t.same(damaged, [], `${where}: every name record is whole JSON (${records.length} records)`);
      t.same(dangling, [], `${where}: every name record points at a stored blob`);
      const lost: string[] = [];
      for (const hex of blobs) {
        const got = await get(url, `/cas/sha256/${hex}`);
        if (got.status !== 200 || got.hex !== hex) lost.push(`${hex}: ${got.status} ${got.hex}`);
      }
      for (const [p, hex] of names) {
        const got = await get(url, p);
        if (got.status !== 200 || (hex !== '' && got.hex !== hex)) lost.push(`${p}: ${got.status} ${got.hex}`);
      }
      t.same(lost, [], `${where}: every acknowledged upload is served whole (${blobs.size} blobs, ${names.size} names)`);
      if (overwrittenSent.size > 0) {
        const got = await get(url, overwritten);
        t.ok(got.status === 404 || (got.status === 200 && overwrittenSent.has(got.hex)), `${where}: the name written over and over holds one of its bodies whole (${got.status})`);
      }
    };

    for (let round = 1; round <= CRASHES; round++) {
      const origin = await start();
      if (round > 1) await check(origin.url, round - 1);
      // Eight uploaders at once, each starting another upload as one ends, until the kill.
      let killed = false;
      const uploaders = Array.from({ length: 8 }, async () => {
        while (!killed) await upload(origin.url).catch(() => undefined);
      });
      await sleep(150 + random() * 700);
      killed = true;
      const exited = new Promise((resolve) => origin.child.once('exit', resolve));
      process.kill(origin.child.pid!, 'SIGKILL');
      await exited;
      await Promise.all(uploaders);
    }
    last = await start();
    await check(last.url, CRASHES);
  });

  await t.test('truncated name records: the origin starts, and a truncated name is refused at read, never served empty', async (t) => {
    if (last === undefined) return t.fail('no origin left running by the crashes');
    const first = last;
    const res = await request(`${first.url}/artifacts/r/job/out.txt`, { method: 'PUT', headers: AUTH, body: 'whole' });
    await res.body.dump();
    t.equal(res.statusCode, 201, 'an artifact stored');
    await first.stop(); // a clean stop: its record written
    // What a disk that lost the end of the records leaves (a crash cannot: they are renamed into place whole).
    const record = path.join(data, 'names.v1', 'artifacts', 'r', 'job', 'out.txt.rec.json');
    const stopped = path.join(data, 'names.v1', '_retention', 'stopped.rec.json');
    for (const file of [record, stopped]) writeFileSync(file, readFileSync(file, 'utf8').slice(0, 9));
    const again = await start();
    t.match(again.stderr(), /the record of the last clean stop is damaged/, 'the damaged stop record is said');
    const got = await request(`${again.url}/artifacts/r/job/out.txt`, { headers: AUTH });
    const body = await got.body.json() as { code: string };
    t.equal(got.statusCode, 500, 'the truncated name: an error, not an empty 200');
    t.equal(body.code, 'FC_ERR_INTERNAL');
    await eventually('the log names the damaged record', () => again.stderr().includes(`damaged name record ${record}`));
  });
  });
