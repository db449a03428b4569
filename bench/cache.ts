// The regional cache side by side with nginx proxy_cache (proxy_cache_lock on), both in
// front of the same origin: nginx serving files, rate-limited to 50 MB/s per connection.
// Four figures: stampede (32 clients, one cold 256 MiB object), hot large (8 clients x
// 5 rounds of a cached 256 MiB object), hot small (10,000 cached 4 KiB objects, wrk, 64
// connections, 15 s), cold small (2,000 uncached 4 KiB objects, 32 at a time).
// Run: node --import tsx bench/cache.ts [--quick]   (appends to bench/RESULTS.md)
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { appendFile, chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { ensureNginx } from './lib/nginx.js';
import { REPO_ROOT, freePort, startProcess, waitForLine, type BenchProcess } from './lib/processes.js';

const quick = process.argv.includes('--quick');
const BIG = (quick ? 64 : 256) * 1024 * 1024;
const HOT_SMALL = quick ? 2000 : 10_000;
const COLD_SMALL = quick ? 500 : 2000;
const WRK_SECONDS = quick ? 5 : 15;
/** Server processes on each side: nginx's worker_processes and our --workers. */
const WORKERS = 2;
const agent = new Agent({ connections: 128, keepAliveTimeout: 30_000, bodyTimeout: 0, headersTimeout: 0 });

async function writeBlob(root: string, body: Buffer): Promise<string> {
  const hex = createHash('sha256').update(body).digest('hex');
  await writeFile(join(root, 'cas', 'sha256', hex), body);
  return `/cas/sha256/${hex}`;
}

/** Downloads `path`, discarding the body; resolves to the milliseconds it took from `t0`. */
async function download(base: string, path: string, t0: number): Promise<number> {
  const res = await request(base + path, { dispatcher: agent });
  if (res.statusCode !== 200) throw new Error(`${base}${path}: HTTP ${res.statusCode}`);
  for await (const _chunk of res.body) { /* discard */ }
  return performance.now() - t0;
}

async function pool<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

function count(log: string, path: string): number {
  return log.split('\n').filter((l) => l.includes(`GET ${path} `)).length;
}

interface Figures { stampedeRatio: number; stampedeFirst: number; stampedeLast: number; originSends: number; hotLargeGBs: number; hotSmallRps: number; coldSmallOps: number }

async function measure(name: string, base: string, originLog: string, paths: { big: string; hot: string[]; cold: string[] }, wrkScript: string): Promise<Figures> {
  process.stderr.write(`${name}: stampede\n`);
  const before = count(await readFile(originLog, 'utf8').catch(() => ''), paths.big);
  const t0 = performance.now();
  const times = (await Promise.all(Array.from({ length: 32 }, () => download(base, paths.big, t0)))).sort((a, b) => a - b);
  await sleep(1500); // the access log is written when the origin's response ends
  const originSends = count(await readFile(originLog, 'utf8'), paths.big) - before;

  process.stderr.write(`${name}: hot large\n`);
  let bytes = 0;
  const h0 = performance.now();
  for (let round = 0; round < 5; round++) {
    await Promise.all(Array.from({ length: 8 }, () => download(base, paths.big, 0)));
    bytes += 8 * BIG;
  }
  const hotLargeGBs = bytes / 1e9 / ((performance.now() - h0) / 1000);

  process.stderr.write(`${name}: hot small (prefill ${paths.hot.length}, wrk ${WRK_SECONDS}s)\n`);
  await pool(paths.hot, 64, async (p) => void (await download(base, p, 0)));
  const wrk = await promisify(execFile)('wrk', ['-t2', '-c64', `-d${WRK_SECONDS}s`, '-s', wrkScript, base], { maxBuffer: 1 << 20 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(wrk.stdout)?.[1] ?? NaN);
  if (/Non-2xx/.test(wrk.stdout)) throw new Error(`${name}: wrk saw errors:\n${wrk.stdout}`);

  process.stderr.write(`${name}: cold small\n`);
  const c0 = performance.now();
  await pool(paths.cold, 32, async (p) => void (await download(base, p, 0)));
  const coldSmallOps = paths.cold.length / ((performance.now() - c0) / 1000);
  return { stampedeRatio: times.at(-1)! / times[0]!, stampedeFirst: times[0]!, stampedeLast: times.at(-1)!, originSends, hotLargeGBs, hotSmallRps: rps, coldSmallOps };
}

async function main(): Promise<void> {
  ensureNginx();
  const dir = await mkdtemp(join(tmpdir(), 'fleetcache-bench-cache-'));
  const procs: BenchProcess[] = [];
  try {
    await chmod(dir, 0o755);
    const root = join(dir, 'origin');
    await mkdir(join(root, 'cas', 'sha256'), { recursive: true });
    await mkdir(join(dir, 'temp'), { recursive: true });
    process.stderr.write('writing objects\n');
    const bigBody = randomBytes(BIG);
    const big = await writeBlob(root, bigBody);
    const hot: string[] = [];
    const cold: string[] = [];
    for (let i = 0; i < HOT_SMALL; i++) hot.push(await writeBlob(root, randomBytes(4096)));
    for (let i = 0; i < COLD_SMALL; i++) cold.push(await writeBlob(root, randomBytes(4096)));
    const wrkScript = join(dir, 'paths.lua');
    await writeFile(join(dir, 'paths.txt'), hot.join('\n') + '\n');
    await writeFile(wrkScript, `local paths = {}
for line in io.lines("${join(dir, 'paths.txt')}") do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
`);
    const [originPort, proxyPort] = [await freePort(), await freePort()];
    const conf = join(dir, 'nginx.conf');
    const originLog = join(dir, 'origin-access.log');
    await writeFile(conf, `daemon off;
user root;
worker_processes ${WORKERS};
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')};
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${dir}/temp/body;
  proxy_temp_path ${dir}/temp/proxy;
  fastcgi_temp_path ${dir}/temp/fastcgi;
  uwsgi_temp_path ${dir}/temp/uwsgi;
  scgi_temp_path ${dir}/temp/scgi;
  proxy_cache_path ${dir}/nginx-cache levels=1:2 keys_zone=bench:64m max_size=20g inactive=1d use_temp_path=off;
  upstream origin { server 127.0.0.1:${originPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${originPort};
    root ${root};
    access_log ${originLog};
    limit_rate 50m;
  }
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
    }
  }
}
`);
    const nginx = startProcess('nginx', ['-c', conf, '-p', dir, '-e', join(dir, 'error.log')]);
    procs.push(nginx);
    const cacheProc = startProcess(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli/bin.ts'), 'cache',
      '--upstream', `http://127.0.0.1:${originPort}`, '--listen', '127.0.0.1:0', '--data', join(dir, 'ours'), '--max-size', '20GiB', '--region', 'bench', '--workers', String(WORKERS)],
    { cwd: REPO_ROOT, env: { ...process.env, FLEETCACHE_LOG_LEVEL: 'warn' } });
    procs.push(cacheProc);
    const oursUrl = await waitForLine(cacheProc, /listening (http:\/\/\S+)/);
    const nginxUrl = `http://127.0.0.1:${proxyPort}`;
    for (let i = 0; ; i++) {
      try { await download(`http://127.0.0.1:${originPort}`, cold[0]!, 0); break; } catch (err) { if (i > 100) throw err; await sleep(50); }
    }
    cold.shift(); // used to wait for nginx; fetched by neither cache

    const ours = await measure('fleetcache', oursUrl, originLog, { big, hot, cold }, wrkScript);
    const ng = await measure('nginx', nginxUrl, originLog, { big, hot, cold }, wrkScript);
    const r = (a: number, b: number) => (a / b).toFixed(2);
    const mib = BIG / 1024 / 1024;
    const text = `
## regional cache vs nginx proxy_cache — ${new Date().toISOString().slice(0, 10)}

Command: \`node --import tsx bench/cache.ts${quick ? ' --quick' : ''}\`. Origin: nginx serving files (limit_rate 50 MB/s per
connection); in front of it our cache (--workers ${WORKERS}) and nginx proxy_cache (worker_processes ${WORKERS}, proxy_cache_lock on), loopback,
2 cores shared by servers and clients.

| figure | fleetcache | nginx | ratio | goal |
| --- | ---: | ---: | ---: | --- |
| stampede: 32 clients, cold ${mib} MiB, last ÷ first | ${ours.stampedeRatio.toFixed(2)} (${(ours.stampedeFirst / 1000).toFixed(1)} s → ${(ours.stampedeLast / 1000).toFixed(1)} s) | ${ng.stampedeRatio.toFixed(2)} (${(ng.stampedeFirst / 1000).toFixed(1)} s → ${(ng.stampedeLast / 1000).toFixed(1)} s) | — | ≤ 1.1 |
| stampede: times the origin sent it | ${ours.originSends} | ${ng.originSends} | — | 1 |
| hot large: 8 clients × 5 rounds, GB/s | ${ours.hotLargeGBs.toFixed(2)} | ${ng.hotLargeGBs.toFixed(2)} | ${r(ours.hotLargeGBs, ng.hotLargeGBs)}× | ≥ 0.95× |
| hot small: ${hot.length} × 4 KiB, wrk 64 conns ${WRK_SECONDS} s, req/s | ${ours.hotSmallRps.toFixed(0)} | ${ng.hotSmallRps.toFixed(0)} | ${r(ours.hotSmallRps, ng.hotSmallRps)}× | ≥ 0.6× |
| cold small: ${cold.length} × 4 KiB, 32 at a time, objects/s | ${ours.coldSmallOps.toFixed(0)} | ${ng.coldSmallOps.toFixed(0)} | ${r(ours.coldSmallOps, ng.coldSmallOps)}× | ≥ 1.0× |
`;
    process.stdout.write(text);
    if (!quick) await appendFile(join(REPO_ROOT, 'bench', 'RESULTS.md'), text);
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await agent.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
