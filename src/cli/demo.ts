// `fleetcache demo`: the README's first command. On the embedded default (an origin and
// two region caches on loopback ports, data under cache/, the local backend) it runs the
// bundled example project twice with a small change between the runs, prints spread's
// summary and the savings report of each run, and fetches one artifact back through a cache.
import { createCipheriv, createHash } from 'node:crypto';
import { appendFile, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { FleetError } from '../errors.js';
import { commandLine, pathForUser } from '../invoked-as.js';
import { makeDataDir } from '../path-checks.js';
import { lockDataDir } from '../store/dir-lock.js';
import type { RunResult } from '../run/runner.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/fleet-demo', import.meta.url));
const REGIONS = ['region-a', 'region-b'];

interface DemoFlags {
  data: string;
  verbose?: boolean;
}

/**
 * A deterministic 2 MiB "toolchain" and its tooltool manifest, declared by one task. Its bytes
 * are a fixed AES-CTR keystream: incompressible like a real binary, the same at every demo (a
 * re-run finds it on the origin), and made in milliseconds, where a chain of 65,536 SHA-256
 * digests took most of a CPU second of every demo.
 */
async function addAsset(projectDir: string, assetDir: string): Promise<string> {
  const key = createHash('sha256').update('fleetcache demo toolchain').digest();
  const body = createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(2 * 1024 * 1024));
  await mkdir(assetDir, { recursive: true });
  await writeFile(join(assetDir, 'toolchain.bin'), body);
  const manifest = [{ filename: 'toolchain.bin', size: body.length, algorithm: 'sha512', digest: createHash('sha512').update(body).digest('hex'), visibility: 'public', unpack: false }];
  const manifestPath = join(projectDir, 'tests/hello/toolchain.tt');
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(join(assetDir, 'toolchain.tt'), `${JSON.stringify(manifest, null, 2)}\n`);
  await appendFile(join(projectDir, 'tests/hello/task.yaml'), 'assets: toolchain.tt\n');
  return join(assetDir, 'toolchain.tt');
}

/**
 * A deterministic vendored tree of ~1.5 MB of source-like text, so that the example has
 * the proportions of a real project: a small change between runs, a large unchanged rest.
 */
async function addVendorTree(projectDir: string): Promise<void> {
  const words = ['const', 'let', 'return', 'function', 'value', 'index', 'buffer', 'length', 'result', 'error', 'stream', 'await', 'if', 'else', 'for', 'of'];
  let seed = 42;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
  for (let f = 0; f < 150; f++) {
    const lines: string[] = [];
    for (let l = 0; l < 200; l++) lines.push(`  ${Array.from({ length: 6 + (next() % 6) }, () => words[next() % words.length]).join(' ')};`);
    const dir = join(projectDir, 'vendor', `pkg${f % 15}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `mod${f}.js`), `// generated module ${f}\nexport function m${f}() {\n${lines.join('\n')}\n}\n`);
  }
}

async function runDemo(flags: DemoFlags): Promise<void> {
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const started = Date.now();
  // loaded as the demo starts, not with this module: `--help` lists the command without them
  const [{ ensureAgentBundle }, { fetchArtifacts }, { uploadAssets }, { formatLedger }, { startEmbeddedFleet }, { RunLog }, { runProject }] = await Promise.all([
    import('../agent/paths.js'),
    import('../artifacts/download.js'),
    import('../assets/upload.js'),
    import('../report/ledger.js'),
    import('../run/embedded.js'),
    import('../run/report.js'),
    import('../run/runner.js'),
  ]);
  const dataRoot = resolve(flags.data);
  const demoDir = join(dataRoot, 'demo');
  const projectDir = join(demoDir, 'project');
  // A --data that cannot be a directory (a file there, /proc) is refused by name, exit 3, as
  // run's: the copy below failed with exit 70, or under /proc never returned (node's cp).
  makeDataDir(dataRoot);
  // A second demo on the same data would copy the project afresh under the first one's
  // running jobs. Runs share the data with it as with each other (local machines' directories
  // are each their own, named by PID): nothing of theirs is touched, so none is locked out.
  const lock = await lockDataDir(demoDir).catch((err: unknown) => {
    if (!(err instanceof FleetError) || err.code !== 'FC_ERR_DIR_IN_USE') throw err;
    const pid = err.details?.pid;
    throw new FleetError('FC_ERR_DIR_IN_USE', `${dataRoot} is in use by another demo${typeof pid === 'number' ? ` (pid ${pid})` : ''}: wait for it to end, or give it another --data`, { cause: err, details: err.details });
  });
  try {
    // The project copy is fresh each time; the servers' data persists, so a re-run starts warm.
    await rm(projectDir, { recursive: true, force: true });
    await cp(EXAMPLE, projectDir, { recursive: true });
    await addVendorTree(projectDir);
    const manifest = await addAsset(projectDir, join(demoDir, 'assets'));

    const fleet = await startEmbeddedFleet(dataRoot, REGIONS);
    try {
      say(`origin ${fleet.fleet.origin}; caches ${REGIONS.map((r) => `${r} ${fleet.fleet.regions[r]!.caches[0]}`).join(', ')} (data in ${dataRoot})`);
      const uploaded = await uploadAssets({ manifestPath: manifest, origin: fleet.fleet.origin, token: fleet.token, dir: join(demoDir, 'assets') });
      say(`asset toolchain.bin ${uploaded[0]?.uploaded ? 'uploaded to' : 'already on'} the origin`);
      const fleetFile = join(demoDir, 'fleet.yaml');
      const tokenFile = join(demoDir, 'token');
      await writeFile(tokenFile, fleet.token, { mode: 0o600 });
      await writeFile(fleetFile, `${JSON.stringify({ ...fleet.fleet }, null, 2)}\n`);

      const agentBundle = await ensureAgentBundle();
      const run = async (title: string): Promise<RunResult> => {
        say(`\n== ${title} ==`);
        const log = flags.verbose ? new RunLog() : new RunLog(() => undefined);
        const result = await runProject({ cwd: projectDir, filters: [], fleetFile, tokenFile, agentBundle, log, dataRoot });
        say(result.tally.summary());
        say(formatLedger(result.ledger));
        return result;
      };
      const first = await run('run 1');
      await appendFile(join(projectDir, 'src/app.sh'), '# a small change between the runs\n');
      const second = await run('run 2 (after a small change to src/app.sh)');

      const job = 'local:beta-1:tests/artifacts';
      const cacheB = fleet.fleet.regions['region-b']!.caches[0]!;
      const { files } = await fetchArtifacts({ from: cacheB, run: second.run, job, dest: join(demoDir, 'artifacts'), token: fleet.token });
      const report = files[0] ? (await readFile(files[0].file, 'utf8')).trim() : '';
      say(`\nartifact ${job}/report.txt fetched back through the region-b cache: "${report}"`);
      say(`demo finished in ${((Date.now() - started) / 1000).toFixed(1)} s; \`${commandLine(['report', '--data', pathForUser(flags.data)])}\` shows the last run again`);
      if (!first.tally.ok || !second.tally.ok) throw new FleetError('FC_ERR_TASK_FAILED', 'a demo run was unsuccessful');
    } finally {
      await fleet.close();
    }
  } finally {
    await lock.release();
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('Run the bundled example project twice on the embedded default (origin + two region caches on loopback) and show the savings')
    .option('--data <dir>', 'where the demo keeps its data', 'cache')
    .option('-v, --verbose', "print spread's log lines of each run")
    .action(runDemo);
}
