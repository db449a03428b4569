// The regional cache side by side with nginx proxy_cache (proxy_cache_lock on), both in
// front of the same origin: nginx serving files, rate-limited to 50 MB/s per connection.
// Four figures: stampede (32 clients, one cold 256 MiB object), hot large (8 clients x
// 5 rounds of a cached 256 MiB object), hot small (10,000 cached 4 KiB objects, wrk, 64
// connections, 15 s; three rounds taken in turn by each side, the median reported), cold
// small (2,000 uncached 4 KiB objects, 32 at a time, after a warm-up of 8,000 other
// uncached objects, the same for every side; seven rounds of fresh objects, taken in turn
// by each side so that a change in the machine's load during the run touches all of them,
// each round right after 2,000 more misses of the same side, the median reported). Large
// objects are downloaded with curl, small ones with undici from this process.
// Both caches keep their data on a fresh loop-mounted ext4 when run as root (lib/loopfs.ts).
// Run: node --import tsx bench/cache.ts [--quick] [--only stampede,hot-large,hot-small,cold-small] [--workers N]
// (appends to bench/RESULTS.md unless --quick or --only)
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { appendFile, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Agent } from 'undici';
import { cpuSecondsOf } from './lib/cpu.js';
import { mountLoopExt4 } from './lib/loopfs.js';
import { ensureNginx } from './lib/nginx.js';
import { REPO_ROOT, benchDir, freePort, startFleetcache, startProcess, startReference, type BenchProcess } from './lib/processes.js';
import { download as fetchOne, median, pool, runWrk, writeBlob, writeBlobs, writeWrkScript } from './lib/small-objects.js';
import { today } from './lib/today.js';

const FIGURES = ['stampede', 'hot-large', 'hot-small', 'cold-small'] as const;
type Figure = (typeof FIGURES)[number];

function parseOnly(argv: readonly string[]): Set<Figure> {
  const i = argv.indexOf('--only');
  if (i < 0) return new Set(FIGURES);
  const names = (argv[i + 1] ?? '').split(',');
  for (const n of names) if (!(FIGURES as readonly string[]).includes(n)) throw new Error(`--only: unknown figure "${n}" (one of ${FIGURES.join(', ')})`);
  return new Set(names as Figure[]);
}

const quick = process.argv.includes('--quick');
const only = parseOnly(process.argv);
const BIG = (quick ? 64 : 256) * 1024 * 1024;
const HOT_SMALL = quick ? 2000 : 10_000;
const COLD_SMALL = quick ? 500 : 2000;
/**
 * Rounds of the cold small figure. 2,000 objects take a third to two thirds of a second, and
 * one side's rounds swung from 0.39× to 1.03× within one run (runs 44–45): 7 rounds, not 3,
 * for a steadier median.
 */
const COLD_ROUNDS = 7;
/**
 * Unmeasured misses right before each round: a Node process that sat idle while the other
 * sides ran is slower for its first few thousand misses (the garbage collector and the
 * inline caches start over; measured after 20 s idle: lib/floor-proxy.ts 220 µs of CPU per
 * miss for the first 2,000, then 105-125; our cache 220-280, then 175-205), nginx much less.
 */
const COLD_REWARM = quick ? 200 : COLD_SMALL;
/**
 * Misses of each side's warm-up, before its first round: a fresh Node process reaches its
 * steady cost per miss after 4,000-8,000 of them (2-3x the later cost before; scratch runs of
 * 2026-12-03, bench/RESULTS.md run 50), where a warm-up of 2,000 left the first rounds slow.
 */
const COLD_WARMUP = quick ? COLD_SMALL : 4 * COLD_SMALL;
const WRK_SECONDS = quick ? 5 : 15;
/** Rounds of the hot small figure (one 15 s run per side, taken one after the other, was as noisy as the machine). */
const HOT_ROUNDS = 3;
/** Hot large rounds (8 clients × 5 downloads each), taken by every side in turn. */
const LARGE_ROUNDS = 3;
/**
 * Server processes on each side (nginx's worker_processes, our --workers, the reference's):
 * 2 by default, one per core. The origin keeps 2 whatever the caches use.
 */
const WORKERS = parseWorkers(process.argv);
const ORIGIN_WORKERS = 2;

function parseWorkers(argv: readonly string[]): number {
  const i = argv.indexOf('--workers');
  if (i < 0) return 2;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--workers: expected a number from 1 to 64, got "${argv[i + 1] ?? ''}"`);
  return n;
}
const agent = new Agent({ connections: 128, keepAliveTimeout: 30_000, bodyTimeout: 0, headersTimeout: 0 });

/**
 * Downloads a large object with curl (to /dev/null); resolves to the milliseconds it took
 * from `t0`. The large figures use curl rather than this process: 32 undici clients reading
 * 8 GiB took more CPU than either cache (perf: 45% of the machine against our 25%), so on
 * 2 cores the figure measured the client's share as much as the server.
 */
async function curl(base: string, path: string, t0: number): Promise<number> {
  const { stderr } = await promisify(execFile)('curl', ['-sS', '--fail', '-o', '/dev/null', base + path]);
  if (stderr) throw new Error(`curl ${base}${path}: ${stderr}`);
  return performance.now() - t0;
}

/** Downloads `path` with this bench's agent (see lib/small-objects.ts). */
function download(base: string, path: string, t0: number): Promise<number> {
  return fetchOne(agent, base, path, t0);
}

/**
 * Waits until `side` answers `path` from its store (X-Cache: HIT), so that hot large
 * measures a cached object: right after the fill's last byte, ours still commits it
 * (fsync, rename) and serves it meanwhile as a fill (COLLAPSED). The reference says
 * nothing: it keeps a body before answering it.
 */
async function untilStored(side: Side, path: string): Promise<void> {
  if (!side.saysHit) return;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(50)) {
    const res = await agent.request({ origin: side.url, path, method: 'HEAD' });
    await res.body.dump();
    if (res.headers['x-cache'] === 'HIT') return;
  }
  throw new Error(`${side.name}: ${path} not stored within 30 s`);
}

function count(log: string, path: string): number {
  return log.split('\n').filter((l) => l.includes(`GET ${path} `)).length;
}

interface Figures {
  stampedeRatio?: number; stampedeFirst?: number; stampedeLast?: number; originSends?: number;
  /** GB/s of each hot large round. */
  hotLargeGBs: number[];
  /** Requests per second of each hot small round. */
  hotSmallRps: number[];
  /** Objects per second of each cold small round. */
  coldSmallOps: number[];
  /** Server CPU per unit of work: s per GB (stampede, hot large), µs per request (small). */
  cpu: Partial<Record<Figure, number>>;
}

interface Side {
  readonly name: string;
  readonly url: string;
  /** The server's main PID (its workers are its children). */
  readonly pid: number;
  /** Whether it says X-Cache: HIT for an answer from its store (see untilStored). */
  readonly saysHit: boolean;
}

interface Paths { big: string; hot: string[]; coldWarmup: string[]; coldRounds: { rewarm: string[]; measured: string[] }[] }

async function measure(side: Side, originLog: string, paths: Paths, figures: ReadonlySet<Figure> = only): Promise<Figures> {
  const { name, url: base } = side;
  const f: Figures = { cpu: {}, hotLargeGBs: [], hotSmallRps: [], coldSmallOps: [] };
  /** Runs one figure and records the server's CPU seconds divided by `units`. */
  const cpuOf = async <T>(figure: Figure, units: number, run: () => Promise<T>): Promise<T> => {
    const c0 = await cpuSecondsOf(side.pid);
    const out = await run();
    f.cpu[figure] = ((await cpuSecondsOf(side.pid)) - c0) / units;
    return out;
  };
  if (figures.has('stampede')) {
    process.stderr.write(`${name}: stampede\n`);
    const before = count(await readFile(originLog, 'utf8').catch(() => ''), paths.big);
    const t0 = performance.now();
    const times = await cpuOf('stampede', (32 * BIG) / 1e9, async () => (await Promise.all(Array.from({ length: 32 }, () => curl(base, paths.big, t0)))).sort((a, b) => a - b));
    await sleep(1500); // the access log is written when the origin's response ends
    f.originSends = count(await readFile(originLog, 'utf8'), paths.big) - before;
    f.stampedeFirst = times[0]!;
    f.stampedeLast = times.at(-1)!;
    f.stampedeRatio = f.stampedeLast / f.stampedeFirst;
  }

  if (figures.has('hot-large')) {
    // The rounds themselves are taken in turn with the other sides (largeRounds).
    process.stderr.write(`${name}: hot large prefill\n`);
    if (!figures.has('stampede')) await curl(base, paths.big, 0);
    await untilStored(side, paths.big);
  }

  if (figures.has('hot-small')) {
    // The rounds themselves are taken in turn with the other sides (hotRounds).
    process.stderr.write(`${name}: hot small prefill (${paths.hot.length})\n`);
    await pool(paths.hot, 64, async (p) => void (await download(base, p, 0)));
  }

  if (figures.has('cold-small')) {
    // The warm-up (other uncached objects, COLD_WARMUP of them) brings the client's and our
    // server's JIT to a steady state, as it is after minutes of service; nginx gets the same.
    // The rounds themselves are taken in turn with the other sides (coldRounds).
    process.stderr.write(`${name}: cold small warm-up (${paths.coldWarmup.length})\n`);
    await pool(paths.coldWarmup, 32, async (p) => void (await download(base, p, 0)));
  }
  return f;
}

/** Server CPU per unit of work of each side, summed over the rounds of one figure. */
class RoundsCpu {
  #spent = new Map<Side, { cpu: number; units: number }>();

  /** Runs `run` (resolving to the units of work it did) and adds the server's CPU during it. */
  async measure(side: Side, run: () => Promise<number>): Promise<void> {
    const c0 = await cpuSecondsOf(side.pid);
    const units = await run();
    const cpu = (await cpuSecondsOf(side.pid)) - c0;
    const so = this.#spent.get(side) ?? { cpu: 0, units: 0 };
    this.#spent.set(side, { cpu: so.cpu + cpu, units: so.units + units });
  }

  /** Sets each side's CPU per unit for `figure`: µs (`scale` 1e6) or s (1). */
  record(sides: readonly { side: Side; figures: Figures }[], figure: Figure, scale = 1e6): void {
    for (const { side, figures } of sides) {
      const so = this.#spent.get(side);
      if (so) figures.cpu[figure] = (so.cpu * scale) / so.units;
    }
  }
}

/** The hot large rounds: each round, every side in turn serves its stored large object to 8 clients, 5 times. */
async function largeRounds(sides: readonly { side: Side; figures: Figures }[], big: string): Promise<void> {
  const cpu = new RoundsCpu();
  const gb = (5 * 8 * BIG) / 1e9;
  for (let i = 0; i < LARGE_ROUNDS; i++) {
    for (const { side, figures } of sides) {
      process.stderr.write(`${side.name}: hot large round ${i + 1}\n`);
      await cpu.measure(side, async () => {
        const t0 = performance.now();
        for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 8 }, () => curl(side.url, big, 0)));
        figures.hotLargeGBs.push(gb / ((performance.now() - t0) / 1000));
        return gb;
      });
    }
  }
  cpu.record(sides, 'hot-large', 1);
}

/** The hot small rounds: each round, every side in turn takes WRK_SECONDS of wrk on its prefilled objects. */
async function hotRounds(sides: readonly { side: Side; figures: Figures }[], wrkScript: string): Promise<void> {
  const cpu = new RoundsCpu();
  for (let i = 0; i < HOT_ROUNDS; i++) {
    for (const { side, figures } of sides) {
      process.stderr.write(`${side.name}: hot small round ${i + 1} (wrk ${WRK_SECONDS}s)\n`);
      await cpu.measure(side, async () => {
        const wrk = await runWrk(side.url, wrkScript, WRK_SECONDS);
        figures.hotSmallRps.push(wrk.perSecond);
        return wrk.requests;
      });
    }
  }
  cpu.record(sides, 'hot-small');
}

/** The cold small rounds: each round, every side in turn gets the round's (fresh) objects. */
async function coldRounds(sides: readonly { side: Side; figures: Figures }[], rounds: Paths['coldRounds']): Promise<void> {
  const cpu = new RoundsCpu();
  for (const [i, { rewarm, measured: objects }] of rounds.entries()) {
    for (const { side, figures } of sides) {
      process.stderr.write(`${side.name}: cold small round ${i + 1} (${rewarm.length} unmeasured, then ${objects.length})\n`);
      await pool(rewarm, 32, async (p) => void (await download(side.url, p, 0)));
      await cpu.measure(side, async () => {
        const t0 = performance.now();
        await pool(objects, 32, async (p) => void (await download(side.url, p, 0)));
        figures.coldSmallOps.push(objects.length / ((performance.now() - t0) / 1000));
        return objects.length;
      });
    }
  }
  cpu.record(sides, 'cold-small');
}

function nginxConf(dir: string, name: string, workers: number, body: string): string {
  return `daemon off;
user root;
worker_processes ${workers};
pid ${join(dir, `${name}.pid`)};
error_log ${join(dir, `${name}-error.log`)};
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${dir}/temp/${name}-body;
  proxy_temp_path ${dir}/temp/${name}-proxy;
  fastcgi_temp_path ${dir}/temp/${name}-fastcgi;
  uwsgi_temp_path ${dir}/temp/${name}-uwsgi;
  scgi_temp_path ${dir}/temp/${name}-scgi;
${body}
}
`;
}

function row(label: string, goal: string, ours: string, ng: string, ratio = '—'): string {
  return `| ${label} | ${ours} | ${ng} | ${ratio} | ${goal} |\n`;
}

function report(ours: Figures, ng: Figures, floor: Figures | undefined, hot: number, coldObjects: number, dataFs: string): string {
  const r = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}×` : '—');
  const n = (v: number | undefined, digits = 0) => (v === undefined ? '—' : v.toFixed(digits));
  const s = (ms: number | undefined) => n(ms === undefined ? undefined : ms / 1000, 1);
  const stampede = (f: Figures) => `${n(f.stampedeRatio, 2)} (${s(f.stampedeFirst)} s → ${s(f.stampedeLast)} s)`;
  const mib = BIG / 1024 / 1024;
  let rows = '';
  if (only.has('stampede')) {
    rows += row(`stampede: 32 clients, cold ${mib} MiB, last ÷ first`, '≤ 1.1', stampede(ours), stampede(ng));
    rows += row('stampede: times the origin sent it', '1', n(ours.originSends), n(ng.originSends));
  }
  // Median of the rounds, then each round's figure.
  const rounds = (v: readonly number[], digits = 0) => `${n(median(v), digits)} (${v.map((x) => n(x, digits)).join(' / ')})`;
  const roundsRatio = (a: readonly number[], b: readonly number[]) => `${r(median(a), median(b))} (${a.map((x, i) => r(x, b[i])).join(' / ')})`;
  if (only.has('hot-large')) {
    rows += row(`hot large: 8 clients × 5 downloads, GB/s, median of ${LARGE_ROUNDS} rounds (each round)`, '≥ 0.95×', rounds(ours.hotLargeGBs, 2), rounds(ng.hotLargeGBs, 2), roundsRatio(ours.hotLargeGBs, ng.hotLargeGBs));
  }
  if (floor && only.has('hot-large')) rows += row('hot large, reference: minimal Node server, the body in memory (lib/floor-proxy.ts)', '—', rounds(floor.hotLargeGBs, 2), rounds(ng.hotLargeGBs, 2), roundsRatio(floor.hotLargeGBs, ng.hotLargeGBs));
  if (only.has('hot-small')) {
    rows += row(`hot small: ${hot} × 4 KiB, wrk 64 conns ${WRK_SECONDS} s, req/s, median of ${HOT_ROUNDS} rounds (each round)`, '≥ 0.6×', rounds(ours.hotSmallRps), rounds(ng.hotSmallRps), roundsRatio(ours.hotSmallRps, ng.hotSmallRps));
  }
  if (floor && only.has('hot-small')) rows += row('hot small, reference: minimal Node server (lib/floor-proxy.ts) instead of fleetcache', '—', rounds(floor.hotSmallRps), rounds(ng.hotSmallRps), roundsRatio(floor.hotSmallRps, ng.hotSmallRps));
  if (only.has('cold-small')) {
    rows += row(`cold small: ${coldObjects} × 4 KiB, 32 at a time, objects/s, median of ${COLD_ROUNDS} rounds (each round)`, '≥ 1.0×', rounds(ours.coldSmallOps), rounds(ng.coldSmallOps), roundsRatio(ours.coldSmallOps, ng.coldSmallOps));
  }
  if (floor && only.has('cold-small')) rows += row('cold small, reference: minimal Node proxy (lib/floor-proxy.ts) instead of fleetcache', '—', rounds(floor.coldSmallOps), rounds(ng.coldSmallOps), roundsRatio(floor.coldSmallOps, ng.coldSmallOps));
  let cpu = '';
  const unit: Record<Figure, string> = { 'stampede': 'CPU s per GB delivered', 'hot-large': 'CPU s per GB', 'hot-small': 'CPU µs per request', 'cold-small': 'CPU µs per object' };
  for (const fig of FIGURES) {
    if (!only.has(fig)) continue;
    const d = fig.endsWith('small') ? 0 : 2;
    cpu += row(`server ${fig}: ${unit[fig]}`, 'lower is better', n(ours.cpu[fig], d), n(ng.cpu[fig], d), r(ours.cpu[fig], ng.cpu[fig]));
  }
  for (const fig of ['hot-large', 'hot-small', 'cold-small'] as const) {
    const d = fig.endsWith('small') ? 0 : 2;
    if (floor && only.has(fig)) cpu += row(`server ${fig}, reference: minimal Node ${fig === 'cold-small' ? 'proxy' : 'server'}: ${unit[fig]}`, 'lower is better', n(floor.cpu[fig], d), n(ng.cpu[fig], d), r(floor.cpu[fig], ng.cpu[fig]));
  }
  const command = `node --import tsx bench/cache.ts${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`;
  return `
## regional cache vs nginx proxy_cache — ${today()}

Command: \`${command}\`. Origin: nginx serving files (limit_rate 50 MB/s per
connection); in front of it our cache (compiled, --workers ${WORKERS}) and nginx proxy_cache (worker_processes ${WORKERS}, proxy_cache_lock on),
each its own process group, cache data on ${dataFs}; loopback, 2 cores shared by servers and clients.
Hot large: once the object is stored (a HEAD answers X-Cache: HIT; nginx says $upstream_cache_status), not while ours still commits its fill; ${LARGE_ROUNDS} rounds, each taken by every side in turn; the median, then each round.
Server CPU: utime + stime of the cache's processes (ours: primary and workers; nginx: master and workers) during the figure.
Hot small: one prefill (each object asked once), then ${HOT_ROUNDS} rounds of wrk, each taken by every side in turn; the median, then each round.
The first round includes each of our workers' first hit of the objects the other worker fetched (read from disk, then held in memory).
Cold small: ${COLD_ROUNDS} rounds of fresh objects after a warm-up of ${COLD_WARMUP} misses, each round taken by every side in turn, right after ${COLD_REWARM} unmeasured misses of its own; the median, then each round.${floor ? `
Reference rows: the cheapest paths through node:http (lib/floor-proxy.ts, ${WORKERS} processes; a miss: node:http, undici, sha256, file + rename;
a hit: node:http and a Map of bodies, the large one too, so one copy less than from a file; nothing else: no framework, no exactly-once across processes, no index, no metrics), measured like the caches;
they bound any implementation on node:http (fleetcache's small hits and plain cold misses on a fresh connection are read and answered on its socket, without node:http).` : ''}

| figure | fleetcache | nginx | ratio | goal |
| --- | ---: | ---: | ---: | --- |
${rows}${cpu}`;
}

async function main(): Promise<void> {
  ensureNginx();
  const { dir, remove } = benchDir('fleetcache-bench-cache-');
  const procs: BenchProcess[] = [];
  const fs = await mountLoopExt4(dir, 8);
  const dataDir = fs?.dir ?? dir;
  try {
    await chmod(dir, 0o755);
    const root = join(dir, 'origin');
    await mkdir(join(root, 'cas', 'sha256'), { recursive: true });
    await mkdir(join(dir, 'temp'), { recursive: true });
    process.stderr.write('writing objects\n');
    const big = await writeBlob(root, randomBytes(BIG));
    const hot = await writeBlobs(root, HOT_SMALL);
    const cold = await writeBlobs(root, COLD_WARMUP + COLD_ROUNDS * (COLD_REWARM + COLD_SMALL) + 1);
    const wrkScript = await writeWrkScript(dir, hot);
    const [originPort, proxyPort] = [await freePort(), await freePort()];
    const originLog = join(dir, 'origin-access.log');
    const originConf = join(dir, 'origin.conf');
    await writeFile(originConf, nginxConf(dir, 'origin', ORIGIN_WORKERS, `  server {
    listen 127.0.0.1:${originPort};
    root ${root};
    access_log ${originLog};
    limit_rate 50m;
  }`));
    const proxyConf = join(dir, 'proxy.conf');
    await writeFile(proxyConf, nginxConf(dir, 'proxy', WORKERS, `  proxy_cache_path ${dataDir}/nginx-cache levels=1:2 keys_zone=bench:64m max_size=20g inactive=1d use_temp_path=off;
  upstream origin { server 127.0.0.1:${originPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${proxyPort};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_valid 200 1d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10m;
      proxy_cache_lock_age 10m;
      add_header X-Cache $upstream_cache_status;
    }
  }`));
    const origin = startProcess('nginx', ['-c', originConf, '-p', dir, '-e', join(dir, 'origin-error.log')]);
    procs.push(origin);
    const proxy = startProcess('nginx', ['-c', proxyConf, '-p', dir, '-e', join(dir, 'proxy-error.log')]);
    procs.push(proxy);
    const cacheProc = await startFleetcache(['cache', '--upstream', `http://127.0.0.1:${originPort}`, '--listen', '127.0.0.1:0',
      '--data', join(dataDir, 'ours'), '--max-size', '20GiB', '--region', 'bench', '--workers', String(WORKERS)], { FLEETCACHE_LOG_LEVEL: 'warn' });
    procs.push(cacheProc);
    const oursUrl = cacheProc.url;
    const nginxUrl = `http://127.0.0.1:${proxyPort}`;
    for (const base of [`http://127.0.0.1:${originPort}`, nginxUrl]) {
      for (let i = 0; ; i++) {
        try { await download(base, cold[0]!, 0); break; } catch (err) { if (i > 100) throw err; await sleep(50); }
      }
    }
    cold.shift(); // used to wait for the nginx servers
    const paths: Paths = {
      big, hot, coldWarmup: cold.slice(0, COLD_WARMUP),
      coldRounds: Array.from({ length: COLD_ROUNDS }, (_, i) => {
        const at = COLD_WARMUP + i * (COLD_REWARM + COLD_SMALL);
        return { rewarm: cold.slice(at, at + COLD_REWARM), measured: cold.slice(at + COLD_REWARM, at + COLD_REWARM + COLD_SMALL) };
      }),
    };

    const oursSide: Side = { name: 'fleetcache', url: oursUrl, pid: cacheProc.child.pid!, saysHit: true };
    const nginxSide: Side = { name: 'nginx', url: nginxUrl, pid: proxy.child.pid!, saysHit: true };
    const ours = await measure(oursSide, originLog, paths);
    const ng = await measure(nginxSide, originLog, paths);
    const sides = [{ side: oursSide, figures: ours }, { side: nginxSide, figures: ng }];
    let floor: Figures | undefined;
    const floorFigures = new Set(FIGURES.filter((fig) => fig !== 'stampede' && only.has(fig)));
    if (floorFigures.size > 0) {
      const floorProc = await startReference(`http://127.0.0.1:${originPort}`, join(dataDir, 'floor'), WORKERS);
      procs.push(floorProc);
      const floorUrl = floorProc.url;
      // A fresh process: as many misses as the caches served before their cold figure (the
      // hot objects, misses here), so that its JIT is as warm as theirs. Hot small's prefill
      // makes them, once, as for the caches (each body then held by the process that fetched it).
      if (!floorFigures.has('hot-small')) await pool(paths.hot, 32, async (p) => void (await download(floorUrl, p, 0)));
      // Each process holds its own copy of the large object: every one fetches it before the figure.
      if (floorFigures.has('hot-large')) for (let i = 0; i < 2 * WORKERS; i++) await curl(floorUrl, paths.big, 0);
      const floorSide: Side = { name: 'minimal Node proxy', url: floorUrl, pid: floorProc.child.pid!, saysHit: false };
      floor = await measure(floorSide, originLog, paths, floorFigures);
      sides.push({ side: floorSide, figures: floor });
    }
    if (only.has('hot-large')) await largeRounds(sides, paths.big);
    if (only.has('hot-small')) await hotRounds(sides, wrkScript);
    if (only.has('cold-small')) await coldRounds(sides, paths.coldRounds);
    const text = report(ours, ng, floor, hot.length, COLD_SMALL, fs ? 'a fresh loop-mounted ext4 (lib/loopfs.ts)' : 'the temp directory\'s filesystem');
    process.stdout.write(text);
    if (!quick && !process.argv.includes('--only')) await appendFile(join(REPO_ROOT, 'bench', 'RESULTS.md'), text);
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await agent.close();
    await fs?.unmount();
    remove();
  }
}

await main();
