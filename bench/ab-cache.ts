// A/B of the cache's small-object paths between source trees (git worktrees of two
// commits), and the reference (lib/floor-proxy.ts): the sides take short rounds in turn,
// so that the machine's drift (±15-40% within minutes on a shared guest) touches all of
// them alike, and the medians of server CPU per request are compared. For changes too
// small for bench/cache.ts's three rounds to show. Not recorded in RESULTS.md.
// The first side measures slower than the same tree in another place (about 7% in the cold
// runs of 2026-12-08, though the order of the sides alternates each round): run each
// comparison twice, the order of the sides swapped, and take both.
//   hot:  10,000 objects fetched once, then asked by wrk until every worker holds them;
//         rounds of wrk (64 connections).
//   cold: rounds of fresh objects, 32 at a time, after a warm-up of as many. A side
//         ending in `:hot` has served the hot load (10,000 objects once, then 10 s of
//         wrk) before the rounds: what a long-running cache's misses cost after its hits.
// Run: node --import tsx bench/ab-cache.ts hot|cold [--rounds N] [--seconds S] SIDE[:hot]...
// where SIDE is a fleetcache source tree (e.g. `git worktree add /tmp/base HEAD~1`, with
// node_modules linked; each is built first and runs compiled), `reference` or
// `reference-raw` (lib/floor-proxy.ts on node:http, or on the socket).
// A tree may carry node options for its processes (the workers inherit them) after `+`,
// e.g. `/tmp/base+--max-semi-space-size=32` against `/tmp/base`, or `.+--perf-basic-prof`
// for `perf record` while the rounds run.
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from 'undici';
import { cpuSecondsOf } from './lib/cpu.js';
import { mountLoopExt4 } from './lib/loopfs.js';
import { ensureNginx, startNginx } from './lib/nginx.js';
import { benchDir, startFleetcache, startReference } from './lib/processes.js';
import { download, median, pool, runWrk, writeBlobs, writeWrkScript } from './lib/small-objects.js';

const { values: opts, positionals } = parseArgs({ allowPositionals: true, options: { rounds: { type: 'string', default: '6' }, seconds: { type: 'string', default: '5' } } });
const [figure, ...trees] = positionals;
if ((figure !== 'hot' && figure !== 'cold') || trees.length === 0) throw new Error('usage: ab-cache.ts hot|cold [--rounds N] [--seconds S] SIDE...');
const ROUNDS = Number(opts.rounds);
const SECONDS = Number(opts.seconds);
const HOT = 10_000;
const COLD = 2000;
const WORKERS = 2;

interface Side { readonly name: string; readonly url: string; readonly pid: number; readonly rates: number[]; readonly cpu: number[] }

async function main(): Promise<void> {
  ensureNginx();
  const { dir, remove } = benchDir('fleetcache-ab-');
  const fs = await mountLoopExt4(dir, 4);
  const dataDir = fs?.dir ?? dir;
  const stops: (() => Promise<void>)[] = [];
  const agent = new Agent({ connections: 64 });
  try {
    await chmod(dir, 0o755); // nginx's workers traverse it
    const origin = await startNginx(join(dir, 'origin'));
    stops.push(origin.stop);
    await mkdir(join(origin.root, 'cas', 'sha256'), { recursive: true });
    const objects = await writeBlobs(origin.root, figure === 'hot' ? HOT : COLD * (ROUNDS + 1) * trees.length);
    const hotFirst = figure === 'cold' && trees.some((spec) => spec.endsWith(':hot'));
    const hotObjects = figure === 'hot' ? objects : hotFirst ? await writeBlobs(origin.root, HOT) : [];
    const script = hotObjects.length > 0 ? await writeWrkScript(dir, hotObjects) : '';
    let taken = 0;
    const fresh = (): string[] => objects.slice(taken, (taken += COLD));
    const sides: Side[] = [];
    for (const [i, spec] of trees.entries()) {
      const afterHot = figure === 'cold' && spec.endsWith(':hot');
      const [tree = '', ...nodeArgs] = spec.replace(/:hot$/, '').split('+');
      const data = join(dataDir, `side-${i}`);
      const p = tree === 'reference' || tree === 'reference-raw'
        ? await startReference(origin.url, data, WORKERS, tree === 'reference-raw')
        : await startFleetcache(['cache', '--upstream', origin.url, '--listen', '127.0.0.1:0', '--data', data, '--max-size', '20GiB', '--region', 'ab', '--workers', String(WORKERS)], { FLEETCACHE_LOG_LEVEL: 'warn' }, nodeArgs, tree);
      stops.push(p.stop);
      const side: Side = { name: `${'ABCDEFGH'[i]} ${spec}`, url: p.url, pid: p.child.pid!, rates: [], cpu: [] };
      process.stderr.write(`${side.name}: warm-up\n`);
      if (figure === 'hot' || afterHot) {
        await pool(hotObjects, 64, async (o) => void (await download(agent, side.url, o, 0)));
        await runWrk(side.url, script, afterHot ? 10 : 6);
      }
      if (figure === 'cold') await pool(fresh(), 32, async (o) => void (await download(agent, side.url, o, 0)));
      sides.push(side);
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const side of r % 2 ? [...sides].reverse() : sides) {
        const c0 = await cpuSecondsOf(side.pid);
        const t0 = performance.now();
        let units: number;
        if (figure === 'hot') {
          const wrk = await runWrk(side.url, script, SECONDS);
          units = wrk.requests;
        } else {
          units = COLD;
          await pool(fresh(), 32, async (o) => void (await download(agent, side.url, o, 0)));
        }
        side.rates.push(units / ((performance.now() - t0) / 1000));
        side.cpu.push((((await cpuSecondsOf(side.pid)) - c0) * 1e6) / units);
        process.stdout.write(`round ${r + 1} ${side.name}: ${side.rates.at(-1)!.toFixed(0)}/s, ${side.cpu.at(-1)!.toFixed(1)} µs of server CPU each\n`);
      }
    }
    for (const side of sides) process.stdout.write(`${side.name}: median ${median(side.rates)!.toFixed(0)}/s, ${median(side.cpu)!.toFixed(1)} µs of server CPU each\n`);
  } finally {
    for (const stop of stops.reverse()) await stop();
    await agent.close();
    await fs?.unmount();
    remove();
  }
}

await main();
