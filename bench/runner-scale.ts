// The runner's own overhead at scale, on the local backend: a spread project of 2 systems ×
// 3 suites × T tasks × 2 variants of `true` (12·T jobs), at T, 2T and 4T (--scales). For each: `fleetcache
// list` (time, runner CPU, peak RSS), then `fleetcache run --workers W` (2·W machines): wall time,
// the runner's CPU and peak RSS (its own), its scripts' CPU, the per-job overhead (the run's
// wall time over its jobs: the tasks themselves take no time), and the size of its output.
// --transfers: every suite has a (empty) tooltool manifest and every task an artifact, so each
// job starts the agent on its machine twice (assets, then artifacts): what that costs a job.
// Run: node --import tsx bench/runner-scale.ts [--tasks 200] [--workers 16] [--scales 1,2,4] [--transfers] [--append]
import { spawn } from 'node:child_process';
import { appendFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchDir, REPO_ROOT } from './lib/processes.js';
import { today } from './lib/today.js';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '200' },
    workers: { type: 'string', default: '16' },
    scales: { type: 'string', default: '1,2,4' },
    transfers: { type: 'boolean', default: false },
    append: { type: 'boolean', default: false },
  },
});
const TASKS = Number(values.tasks);
const WORKERS = Number(values.workers);
const SCALES = values.scales.split(',').map(Number);
const TRANSFERS = values.transfers;
const SUITES = ['s1', 's2', 's3'];

const TASK = TRANSFERS ? 'execute: echo hi > out.txt\nartifacts: [out.txt]\n' : 'execute: "true"\n';

/** Writes the project: 2 systems × 3 suites × `tasks` tasks × 2 variants. */
async function writeProject(dir: string, tasks: number): Promise<number> {
  const spread = ['project: scale', 'path: /home/scale', 'backends:', '  local:', '    type: local', '    systems: [sys-a, sys-b]', 'suites:'];
  for (const suite of SUITES) {
    spread.push(`  ${suite}/:`, `    summary: ${suite}`);
    if (TRANSFERS) {
      spread.push('    assets: manifest.tt');
      await mkdir(join(dir, suite), { recursive: true });
      await writeFile(join(dir, suite, 'manifest.tt'), '[]\n');
    }
    for (let t = 1; t <= tasks; t++) {
      await mkdir(join(dir, suite, `t${t}`), { recursive: true });
      await writeFile(join(dir, suite, `t${t}`, 'task.yaml'), `summary: t\nenvironment:\n  V/one: 1\n  V/two: 2\n${TASK}`);
    }
  }
  await writeFile(join(dir, 'spread.yaml'), `${spread.join('\n')}\n`);
  return 2 * SUITES.length * tasks * 2;
}

interface Usage {
  wallS: number;
  cpuS: number;
  rssMiB: number;
  /** CPU seconds of the runner's scripts (and what they started: the agent on local machines). */
  scriptsCpuS: number;
  outBytes: number;
}

/**
 * The runner's own usage, written by the process itself as it exits, and its scripts' CPU
 * (cutime + cstime of /proc/self/stat, clock ticks of 1/100 s: what its reaped children used).
 */
const USAGE_HOOK = `data:text/javascript,import{readFileSync}from"node:fs";process.on("exit",()=>{const f=readFileSync("/proc/self/stat","utf8").split(") ")[1].split(" ");process.stderr.write("USAGE "+JSON.stringify({...process.resourceUsage(),childrenTicks:Number(f[13])+Number(f[14])})+"\\n")})`;

/** Runs `fleetcache <args>` in `cwd`; its own CPU and peak RSS, the wall time, the size of its output. */
function fleetcache(cwd: string, args: string[]): Promise<Usage> {
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', USAGE_HOOK, join(REPO_ROOT, 'bin/fleetcache.js'), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let outBytes = 0;
  let err = '';
  child.stdout.on('data', (c: Buffer) => (outBytes += c.length));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve, reject) => {
    child.on('close', (code) => {
      const m = /^USAGE (.*)$/m.exec(err);
      if (code !== 0 || !m) return reject(new Error(`fleetcache ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`));
      const u = JSON.parse(m[1]!) as NodeJS.ResourceUsage & { childrenTicks: number };
      resolve({ wallS: (performance.now() - started) / 1000, cpuS: (u.userCPUTime + u.systemCPUTime) / 1e6, rssMiB: u.maxRSS / 1024, scriptsCpuS: u.childrenTicks / 100, outBytes });
    });
  });
}

const rows: string[] = [];
const work = benchDir('runner-scale-');
try {
  for (const scale of SCALES) {
    const dir = join(work.dir, `x${scale}`);
    const jobs = await writeProject(dir, TASKS * scale);
    const list = await fleetcache(dir, ['list']);
    const run = await fleetcache(dir, ['run', '--workers', String(WORKERS)]);
    const reports = join(dir, '.fleetcache', 'reports');
    const report = await readFile(join(reports, (await readdir(reports))[0]!));
    const perJob = (s: number) => `${((s * 1000) / jobs).toFixed(1)}`;
    rows.push(
      `| ${jobs} | ${list.wallS.toFixed(2)} s, ${list.cpuS.toFixed(2)} s CPU, ${list.rssMiB.toFixed(0)} MiB | ${run.wallS.toFixed(1)} s | ${perJob(run.wallS)} ms | ${run.cpuS.toFixed(1)} s (${perJob(run.cpuS)} ms/job) | ${run.rssMiB.toFixed(0)} MiB | ${run.scriptsCpuS.toFixed(1)} s (${perJob(run.scriptsCpuS)} ms/job) | ${(run.outBytes / 1024).toFixed(0)} KiB (${(run.outBytes / jobs).toFixed(0)} B/job) | ${report.length} B |`,
    );
    console.log(rows.at(-1));
  }
} finally {
  work.remove();
}

const text = [
  '',
  `## Runner at scale, local backend — ${today()}`,
  '',
  `\`node --import tsx bench/runner-scale.ts --tasks ${TASKS} --workers ${WORKERS} --scales ${SCALES.join(',')}${TRANSFERS ? ' --transfers' : ''}${values.append ? ' --append' : ''}\`: 2 systems × 3 suites × tasks × 2 variants of ${TRANSFERS ? '`echo hi > out.txt` with that file as artifact and an empty assets manifest in each suite' : '`true`'}, ${2 * WORKERS} local machines. Runner CPU and RSS are the runner process's own (its scripts not counted); per job: the run's wall time (or CPU) over its jobs, the tasks themselves taking no time.`,
  '',
  '| jobs | list | run wall | wall per job | runner CPU | runner peak RSS | scripts\' CPU | run output | report |',
  '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows,
  '',
].join('\n');
console.log(text);
if (values.append) await appendFile(join(REPO_ROOT, 'bench/RESULTS.md'), text);
