// The fleet benchmark on the multi-region test bed (test/testbed/netns.ts; needs root):
// a real project (this repository's src/ and package.json, with typescript, fastify and
// undici from node_modules vendored in, as real projects carry them) over 24 machines in
// two regions (12 workers per system, each machine in its region's namespace). Run 1 fills the caches;
// run 2, after a small change, is the measured one: origin egress against naive, and wall
// time against the same run with every machine pulling straight from the origin.
// Run: node --import tsx bench/fleet.ts [--append] [--workers N]
import { appendFile, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { ensureAgentBundle } from '../src/agent/paths.js';
import { formatLedger } from '../src/report/ledger.js';
import { RunLog } from '../src/run/report.js';
import { runProject, type RunResult } from '../src/run/runner.js';
import { bedBackends, startTestBed, type TestBed } from '../test/testbed/netns.js';
import { today } from './lib/today.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const SYSTEMS = { 'region-a': 'alpha-1', 'region-b': 'beta-1' };
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const workers = Number(arg('--workers') ?? 12);
const say = (line: string) => process.stdout.write(`${line}\n`);

/**
 * The project: real sources, one task with two variants per worker, each a second long, so
 * every worker is still finding jobs when the last machine comes up.
 */
async function writeProject(dir: string, bed: TestBed): Promise<void> {
  await cp(join(ROOT, 'src'), join(dir, 'src'), { recursive: true });
  await cp(join(ROOT, 'package.json'), join(dir, 'package.json'));
  for (const pkg of ['fastify', 'undici', 'typescript']) await cp(join(ROOT, 'node_modules', pkg), join(dir, 'vendor', pkg), { recursive: true, dereference: true });
  const spread = { project: 'fleet-bench', path: '/home/fleet-bench', backends: bedBackends(bed, SYSTEMS, workers), suites: { 'tests/': { summary: 'checks on the sources' } } };
  await writeFile(join(dir, 'spread.yaml'), stringify(spread));
  const variants = Object.fromEntries(Array.from({ length: 2 * workers }, (_, i) => [`SHARD/s${i}`, String(i)]));
  const task = {
    summary: 'the sources arrived whole',
    environment: variants,
    execute: 'sleep 1\ntest -f "$SPREAD_PATH/src/cli/main.ts"\ntest "$(find "$SPREAD_PATH/src" -name "*.ts" | wc -l)" -gt 50\ngrep -q fleetcache "$SPREAD_PATH/package.json"\n',
  };
  await mkdir(join(dir, 'tests', 'sources'), { recursive: true });
  await writeFile(join(dir, 'tests', 'sources', 'task.yaml'), stringify(task));
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'fleetcache-bench-fleet-'));
  const bed = await startTestBed({ dataDir: join(work, 'bed') });
  const interrupt = () => void bed.close().finally(() => process.exit(130));
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    say(`test bed up: origin ${bed.originUrl}, caches ${Object.values(bed.caches).join(', ')}; latency ${bed.latency ? 'netem 20 ms each way' : 'NOT emulated (no netem in this kernel)'}, 100 Mbit/s origin link`);
    const project = join(work, 'project');
    await writeProject(project, bed);
    const tokenFile = join(work, 'token');
    await writeFile(tokenFile, bed.token, { mode: 0o600 });
    const agentBundle = await ensureAgentBundle();
    const run = async (title: string, direct: boolean): Promise<{ result: RunResult; seconds: number }> => {
      const fleetFile = join(work, direct ? 'fleet-direct.json' : 'fleet.json');
      await writeFile(fleetFile, JSON.stringify(bed.fleet({ direct, startupLimit: 8, dispatchDelay: '50ms' })));
      const started = process.hrtime.bigint();
      const result = await runProject({ cwd: project, filters: [], fleetFile, tokenFile, agentBundle, log: new RunLog(() => undefined), dataRoot: join(work, 'controller') });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      say(`\n== ${title}: ${seconds.toFixed(1)} s, ${result.pulls.length} machines ==\n${result.tally.summary()}\n${formatLedger(result.ledger)}`);
      if (!result.tally.ok) throw new Error(`${title}: jobs failed`);
      return { result, seconds };
    };
    const change = (n: number) => appendFile(join(project, 'src', 'log.ts'), `// small change ${n} between runs\n`);
    await run('run 1 (cold caches)', false);
    await change(1);
    const cached = await run('run 2 through the region caches', false);
    await change(2);
    const direct = await run('run 2 again, every machine straight from the origin', true);

    const pct = (r: RunResult) => {
      const { actual, naive } = r.ledger.originEgress;
      if (actual === null) throw new Error('the origin restarted during the benchmark: its egress is unknown');
      return (100 * actual) / naive;
    };
    const c = cached.result.ledger.originEgress;
    const d = direct.result.ledger.originEgress;
    const lines = [
      '',
      `## fleet on the multi-region test bed — ${today()}`,
      '',
      `Command: \`node --import tsx bench/fleet.ts --append\` (npm run bench:fleet). Project: this repository's src/ and package.json with fastify, undici and typescript vendored ` +
        `(${(cached.result.push.fullUploadBytes / 1e6).toFixed(2)} MB packed); ${cached.result.pulls.length} machines (local backend, ${workers} workers per system) in 2 region namespaces; ` +
        `origin link 100 Mbit/s each way; ${bed.latency ? '20 ms netem delay each way (~40 ms RTT origin↔region), 0.5 ms on each region loopback' : 'no latency emulation (this kernel has no netem; tbf rate only)'}; 2 cores. ` +
        'Run 1 fills the caches; a one-line change; run 2 is measured. The direct run (another one-line change) lists the origin as every region\'s "cache".',
      '',
      `- run 2 origin egress: ${c.actual} B of ${c.naive} B naive = **${pct(cached.result).toFixed(2)}%** (goal ≤ 3%: ${pct(cached.result) <= 3 ? 'meets' : 'misses'})`,
      `- direct run origin egress: ${d.actual} B of ${d.naive} B naive = ${pct(direct.result).toFixed(1)}%`,
      `- wall time of the whole run: through caches ${cached.seconds.toFixed(1)} s, direct ${direct.seconds.toFixed(1)} s, ratio **${(cached.seconds / direct.seconds).toFixed(2)}×**`,
      '',
    ];
    say(lines.join('\n'));
    if (process.argv.includes('--append')) await appendFile(join(ROOT, 'bench', 'RESULTS.md'), lines.join('\n'));
  } finally {
    await bed.close();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
