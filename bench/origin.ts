// Origin download throughput against nginx serving the same file from disk: a 256 MiB
// blob fetched by 8 concurrent clients, several rounds alternating the two servers so
// both see the same machine state. Goal (issue 2): origin ≥ 0.8× nginx.
// Run: node --import tsx bench/origin.ts [--rounds N] [--no-append]   (npm run bench:origin)
// FLEETCACHE_BENCH_PROF=DIR writes a CPU profile of the origin process into DIR.
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { appendFile, chmod, copyFile, mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { Agent, request } from 'undici';
import { cpuSecondsOf } from './lib/cpu.js';
import { ensureNginx, startNginx, type RunningNginx } from './lib/nginx.js';
import { REPO_ROOT, startFleetcache } from './lib/processes.js';
import { today } from './lib/today.js';

const SIZE = 256 * 1024 * 1024;
const CLIENTS = 8;
const argv = process.argv.slice(2);
const roundsAt = argv.indexOf('--rounds');
const ROUNDS = roundsAt >= 0 ? Number(argv[roundsAt + 1]) : 3;
const APPEND = !argv.includes('--no-append');
// Rounds stop early past this budget (a loaded machine), so one run stays a few minutes.
const ROUNDS_BUDGET_MS = 100_000;

const agent = new Agent({ connections: CLIENTS, pipelining: 1, bodyTimeout: 60_000, headersTimeout: 30_000 });

/** Writes SIZE random bytes to `path` in 1 MiB chunks and returns their sha256. */
async function makeBlob(path: string): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  const chunk = Buffer.allocUnsafe(1024 * 1024);
  for (let written = 0; written < SIZE; written += chunk.length) {
    randomFillSync(chunk);
    hash.update(chunk);
    // A copy per write: the stream may still hold the previous buffer.
    if (!out.write(Buffer.from(chunk))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  out.end();
  await finished(out);
  return hash.digest('hex');
}

/**
 * GETs `url` and returns how many body bytes came back (and their sha256 when asked).
 * A bare dispatch handler, not a body stream, so the client costs as little CPU as it can:
 * it shares the two cores with the server it measures.
 */
function fetchCount(url: string, digest = false): Promise<{ bytes: number; hex?: string }> {
  const { origin, pathname } = new URL(url);
  const hash = digest ? createHash('sha256') : undefined;
  let status = 0;
  let bytes = 0;
  return new Promise((resolve, reject) => {
    // The classic handler callbacks: Agent.dispatch in undici 7.30 still requires them.
    agent.dispatch({ origin, path: pathname, method: 'GET', headers: { 'accept-encoding': 'identity' } }, {
      onConnect() {},
      onHeaders(statusCode) {
        status = statusCode;
        return true;
      },
      onData(chunk) {
        bytes += chunk.length;
        hash?.update(chunk);
        return true;
      },
      onComplete() {
        if (status !== 200) reject(new Error(`GET ${url}: HTTP ${status}`));
        else resolve({ bytes, hex: hash?.digest('hex') });
      },
      onError(err) {
        reject(err);
      },
    });
  });
}

interface Sample {
  /** Bytes per second over the wall time. */
  readonly bps: number;
  /** Server CPU seconds per GiB served (less sensitive to other load on the machine). */
  readonly cpuPerGiB: number;
}

/** CLIENTS concurrent whole-body GETs of `url`, served by process `pid`. */
async function measure(url: string, pid: number): Promise<Sample> {
  const cpu0 = await cpuSecondsOf(pid);
  const start = process.hrtime.bigint();
  const results = await Promise.all(Array.from({ length: CLIENTS }, () => fetchCount(url)));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = (await cpuSecondsOf(pid)) - cpu0;
  for (const r of results) if (r.bytes !== SIZE) throw new Error(`${url}: got ${r.bytes} bytes, expected ${SIZE}`);
  return { bps: (SIZE * CLIENTS) / seconds, cpuPerGiB: cpu / ((SIZE * CLIENTS) / 1024 ** 3) };
}

const gbps = (bps: number) => (bps / 1e9).toFixed(2);
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function main(): Promise<void> {
  ensureNginx();
  const dir = await mkdtemp(join(tmpdir(), 'fleetcache-bench-origin-'));
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  const onSignal = () => void stopAll().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const blobPath = join(dir, 'blob');
    const hex = await makeBlob(blobPath);
    const token = randomBytes(16).toString('hex');

    const origin = await startFleetcache(['origin', '--listen', '127.0.0.1:0', '--data', join(dir, 'origin-data')], {
      FLEETCACHE_TOKEN: token,
    }, process.env.FLEETCACHE_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FLEETCACHE_BENCH_PROF}`] : []);
    stops.push(origin.stop);
    const put = await request(`${origin.url}/cas/sha256/${hex}`, {
      method: 'PUT',
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}`, 'content-length': String(SIZE), 'content-type': 'application/octet-stream' },
      body: createReadStream(blobPath),
    });
    const putBody = await put.body.text();
    if (put.statusCode !== 201 && put.statusCode !== 200) throw new Error(`PUT: HTTP ${put.statusCode}: ${putBody}`);

    // nginx workers drop privileges: they need to traverse every directory above the root.
    await chmod(dir, 0o755);
    const nginxDir = join(dir, 'nginx');
    const nginx: RunningNginx = await startNginx(nginxDir);
    stops.push(nginx.stop);
    await copyFile(blobPath, join(nginx.root, hex));
    await chmod(join(nginx.root, hex), 0o644);
    await rm(blobPath);

    const targets = { origin: `${origin.url}/cas/sha256/${hex}`, nginx: `${nginx.url}/${hex}` };
    const pids = { origin: origin.child.pid!, nginx: nginx.pid };
    // Warm-up: one verified download each, so both read from the page cache afterwards.
    for (const [name, url] of Object.entries(targets)) {
      const r = await fetchCount(url, true);
      if (r.bytes !== SIZE || r.hex !== hex) throw new Error(`${name}: warm-up download is wrong (${r.bytes} bytes, sha256 ${r.hex})`);
    }

    const runs: Record<'origin' | 'nginx', Sample[]> = { origin: [], nginx: [] };
    const roundsStart = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0 && Date.now() - roundsStart > ROUNDS_BUDGET_MS) {
        console.log(`time budget spent: stopping after ${round} round(s)`);
        break;
      }
      // Alternate which goes first, so neither always follows the other.
      const order = round % 2 === 0 ? (['origin', 'nginx'] as const) : (['nginx', 'origin'] as const);
      for (const name of order) {
        const sample = await measure(targets[name], pids[name]);
        runs[name].push(sample);
        console.log(`round ${round + 1} ${name.padEnd(6)} ${gbps(sample.bps)} GB/s, server CPU ${sample.cpuPerGiB.toFixed(2)} s/GiB`);
      }
    }
    const o = median(runs.origin.map((r) => r.bps));
    const n = median(runs.nginx.map((r) => r.bps));
    const oCpu = median(runs.origin.map((r) => r.cpuPerGiB));
    const nCpu = median(runs.nginx.map((r) => r.cpuPerGiB));
    const ratio = o / n;
    const verdict = ratio >= 0.8 ? 'meets' : 'below';
    console.log(`origin ${gbps(o)} GB/s, nginx ${gbps(n)} GB/s (medians of ${runs.origin.length}): ratio ${ratio.toFixed(2)}× (${verdict} the 0.8× goal)`);
    console.log(`server CPU per GiB served: origin ${oCpu.toFixed(2)} s, nginx ${nCpu.toFixed(2)} s`);

    if (APPEND) {
      const section = [
        '',
        `## origin download vs nginx — ${today()}`,
        '',
        `Command: \`node --import tsx bench/origin.ts\` (npm run bench:origin). ${CLIENTS} concurrent GETs of a 256 MiB blob,`,
        `${runs.origin.length} rounds alternating origin and nginx (sendfile, 2 workers), loopback, ${cpus().length} cores; medians.`,
        '',
        `- origin: ${gbps(o)} GB/s (rounds: ${runs.origin.map((r) => gbps(r.bps)).join(', ')}), server CPU ${oCpu.toFixed(2)} s/GiB`,
        `- nginx: ${gbps(n)} GB/s (rounds: ${runs.nginx.map((r) => gbps(r.bps)).join(', ')}), server CPU ${nCpu.toFixed(2)} s/GiB`,
        `- ratio origin/nginx: **${ratio.toFixed(2)}×** (goal ≥ 0.8×: ${verdict})`,
        '',
      ].join('\n');
      await appendFile(join(REPO_ROOT, 'bench/RESULTS.md'), section);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await stopAll();
    await agent.close();
  }
}

await main();
