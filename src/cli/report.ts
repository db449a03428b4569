// `fleetcache report`: the transfer ledger of a run (kept by the runner under <data>/reports/).
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { errorMessage, NotFoundError } from '../errors.js';
import { pathError, requireOutput } from '../path-checks.js';
import { DEFAULT_DATA_DIR } from '../run/state-dir.js';
import { checkSegment } from '../store/safe-name.js';
import type { Ledger } from '../report/ledger.js';

interface ReportFlags {
  run?: string;
  json?: boolean;
  html?: string;
  data?: string;
}

/** Where `run` kept its state: DEFAULT_DATA_DIR of the spread project around the current directory, else `cache` (the demo's). */
async function defaultDataDir(): Promise<string> {
  // the spread parser (and the HTML page's charts, below) load once the command runs, not for --help
  const { findProject } = await import('../spread/index.js');
  try {
    return join(findProject(process.cwd()), DEFAULT_DATA_DIR);
  } catch {
    return 'cache';
  }
}

async function readLedger(dataDir: string, run?: string): Promise<Ledger> {
  const dir = join(resolve(dataDir), 'reports');
  let name = run ? `${checkSegment(run, 'run id')}.json` : undefined;
  if (!name) {
    const all = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.json')).sort();
    name = all.at(-1);
  }
  if (!name) throw new NotFoundError(`no run reports in ${dir}: run \`fleetcache run\` first`);
  const file = join(dir, name);
  const { asLedger } = await import('../report/ledger-shape.js');
  try {
    return asLedger(JSON.parse(await readFile(file, 'utf8')));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`no report for run ${run ?? name.slice(0, -'.json'.length)} in ${dir}`);
    // unreadable, or a run cut short while writing it, or a file edited by hand (named by its first wrong field)
    throw new NotFoundError(`${file}: not a readable run report (${errorMessage(err)})`);
  }
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('Show the transfer ledger of a run: bytes per link, actual against naive, and cache hit ratios')
    .option('--run <id>', 'run id (default: the latest)')
    .option('--json', 'print the ledger as JSON')
    .option('--html <file>', 'also write an HTML page with charts')
    .option('--data <dir>', 'the data directory the run used (default: .fleetcache/ of the spread project here, else cache/, the demo\'s)')
    .action(async (flags: ReportFlags) => {
      if (flags.html) await requireOutput(flags.html); // before anything is printed
      const ledger = await readLedger(flags.data ?? (await defaultDataDir()), flags.run);
      const { formatLedger } = await import('../report/ledger.js');
      process.stdout.write(flags.json ? `${JSON.stringify(ledger, null, 2)}\n` : `${formatLedger(ledger)}\n`);
      if (flags.html) await writeFile(flags.html, (await import('../report/html.js')).ledgerHtml(ledger)).catch((err: unknown) => { throw pathError(err, flags.html!, 'output'); });
    });
}
