// `fleetcache run [FILTER...]`: spread's run, with every machine pulling through its region's cache.
// The runner, its backends and ssh2 are loaded once the command runs: `run --help` and
// usage errors need none of them.
import { Option, type Command } from 'commander';
import { readTokenFile } from '../client/token.js';
import { parseSizeFlag } from '../config/units.js';
import { EXIT, UsageError } from '../errors.js';
import { DEFAULT_BASE_CACHE_SIZE } from '../project-upload/base-cache.js';
import { DEFAULT_DATA_DIR } from '../run/state-dir.js';
import { INT64_MAX, INT64_MIN, parseGoInt } from '../spread/go-int.js';
import { decimalWhole } from './decimal-flag.js';
import type { ShellModes } from '../run/shell.js';

interface RunFlags {
  fleet?: string;
  workers?: string;
  failLogs?: string;
  tokenFile?: string;
  seed?: string;
  artifacts?: string;
  verbose: number;
  vv?: boolean;
  data?: string;
  baseCacheSize?: string;
  repeat?: string;
  abend?: boolean;
  pass?: string;
  reuse?: boolean;
  resend?: boolean;
  discard?: boolean;
  restore?: boolean;
  list?: boolean;
  order?: boolean;
  debug?: boolean;
  shell?: boolean;
  shellBefore?: boolean;
  shellAfter?: boolean;
  reusePid?: string;
  gc?: boolean;
  report?: boolean;
}

/** spread flags fleetcache cannot honour: each with why, and what to use instead. */
const UNSUPPORTED: Array<[keyof RunFlags, string, string]> = [
  ['reusePid', 'reuse-pid', "the machines of a run that was killed are on record in its data directory, and -discard releases them whichever runner process kept them. Use -reuse to keep a run's machines and take them back in the next -reuse run"],
  ['gc', 'gc', 'there are no leftover backend resources to collect: every run discards its machines at the end. Use -discard to release machines kept with -reuse'],
  ['report', 'report', "it writes no spread_report.xml or spread_report.json. The summary at the end lists every failed and aborted job, and --fail-logs DIR keeps the output of each failed one"],
];

function refuseUnsupported(flags: RunFlags): void {
  for (const [key, flag, why] of UNSUPPORTED) {
    if (flags[key] !== undefined) throw new UsageError(`fleetcache run does not support -${flag}: ${why}`);
  }
}

/** spread's modes exclude each other (main.go): at most one, whether fleetcache runs it or not. */
function refuseModeMix(flags: RunFlags): void {
  const modes = [flags.debug, flags.shell, flags.shellBefore || flags.shellAfter, flags.abend, flags.restore];
  if (modes.filter(Boolean).length > 1) throw new UsageError('cannot have more than one of -debug, -shell, -shell-before/after, -abend, and -restore');
}

/** spread's interactive modes, when one is asked for (-shell-before and -shell-after go together). */
function shellModes(flags: RunFlags): ShellModes | undefined {
  const modes = { shell: flags.shell === true, before: flags.shellBefore === true, after: flags.shellAfter === true, debug: flags.debug === true };
  return Object.values(modes).some(Boolean) ? modes : undefined;
}

/** --workers: a whole number of at least 1, in decimal digits (decimal-flag.ts). */
function workersOf(text: string): number {
  const n = decimalWhole(text);
  if (n === undefined || n < 1) throw new UsageError(`--workers needs a whole number of at least 1, in decimal digits, not "${text}"`);
  return n;
}

/**
 * spread's -seed, an int64 read as Go's flag package reads it (0x10, 0o17, 0b11, 010 octal,
 * 1_000), negative ones too; anything else would silently run as seed 0.
 */
function seedOf(text: string): bigint {
  const n = parseGoInt(text);
  if (n === undefined) throw new UsageError(`--seed needs an integer from ${INT64_MIN} to ${INT64_MAX} (spread's int64), not "${text}"`);
  return n;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * spread's -repeat, an int read as Go reads it; fleetcache refuses a negative one, and one past
 * 2^53 - 1 (spread takes up to 2^63 - 1), which a JavaScript number does not hold exactly.
 */
function repeatOf(text: string): number {
  const n = parseGoInt(text);
  if (n === undefined || n < 0n || n > MAX_SAFE) throw new UsageError(`--repeat needs a whole number from 0 to ${MAX_SAFE}, not "${text}"`);
  return Number(n);
}

/**
 * The files named on the command line that -list and -discard do not use, read all the same:
 * one that is missing or invalid is refused (exit 3) in every mode, as a run refuses it.
 */
async function checkNamedFiles(flags: RunFlags): Promise<void> {
  if (flags.fleet) (await import('../run/fleet.js')).loadFleetFile(flags.fleet);
  if (flags.tokenFile) readTokenFile(flags.tokenFile);
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('Run the jobs of the spread project in the current directory (spread-compatible)')
    .argument('[filter...]', 'job filters, as spread matches them')
    .option('--fleet <file>', 'fleet configuration (default: the fleetcache: key of spread.yaml, else the embedded default)')
    .option('--token-file <file>', "the fleet origin's write token (default: the fleet configuration's tokenFile:, else $FLEETCACHE_TOKEN); the embedded default makes its own (a file named must still be readable)")
    .option('--seed <n>', "seed for the job order, an integer (negative too, as spread's int64 -seed) read as Go reads it (0x10, 0o10 or 010 octal, 0b10); the same seed replays an order (spread -seed)")
    .option('--artifacts <dir>', 'fetch task artifacts into DIR/<job name>/ (spread -artifacts)')
    .option('--data <dir>', `local state: embedded servers, machines, base cache, run reports; left out of the shipped project (default <project>/${DEFAULT_DATA_DIR})`)
    .option('--base-cache-size <size>', `bound of the base cache under the data directory: the least recently used bases past it are removed after the upload (default ${DEFAULT_BASE_CACHE_SIZE})`)
    .option('--repeat <n>', 'run each job N more times, stopping at the first failure; N read as Go reads it (spread -repeat)')
    .option('--workers <n>', "machines per system, in place of each system's workers: (at most one per job); 1 runs each system's jobs on one machine")
    .option('--fail-logs <dir>', 'write the error and debug output of each failed job to DIR/<job name>.log (a "/" of the name as "_")')
    .option('--pass <password>', 'session password for machines whose system sets none (spread -pass; default random)')
    .option('--reuse', 'take back machines kept by an earlier --reuse run, and keep them at the end (spread -reuse)')
    .option('--resend', 'with --reuse, send the project again to reused machines (spread -resend)')
    .option('--restore', 'run only the restore scripts, e.g. on machines kept with --reuse (spread -restore)')
    .option('--discard', 'discard the machines kept by --reuse runs, running nothing (spread -discard)')
    .option('--abend', 'stop at the first failure without running restore scripts; keep the machines (spread -abend)')
    .option('-v, --verbose', 'more output: the keys of spread.yaml and task.yaml fleetcache ignores; twice (or --vv), script output streamed too', (_v: string, n: number) => n + 1, 0)
    .option('--vv', 'stream script output (spread -vv)')
    .option('--list', 'print the jobs that would run, as `fleetcache list` does, and exit (spread -list)')
    .option('--order', 'run the jobs in the order the filters name them, without priorities or shuffling (fleetcache\'s own: spread has no such flag)')
    .option('--debug', 'open a shell on the machine after a script fails, once its debug output is printed (spread -debug)')
    .option('--shell', "open a shell on the machine instead of each task's execute script (spread -shell)")
    .option('--shell-before', "open a shell on the machine before each task's execute script (spread -shell-before)")
    .option('--shell-after', "open a shell on the machine after each task's execute script, and after a script fails (spread -shell-after)")
    .addOption(new Option('--reuse-pid <pid>').hideHelp())
    .addOption(new Option('--gc').hideHelp())
    .addOption(new Option('--report').hideHelp())
    .addHelpText('after', "\nspread's single-dash spellings (-seed=N, -artifacts DIR, -repeat N, -abend, -pass P, -reuse, -resend, -discard, -restore, -vv, -list, -debug, -shell, -shell-before, -shell-after, -help) are accepted too, a boolean one with a value as Go takes it (-reuse=true, -v=false), and so are -order, -fleet and -data; -reuse-pid, -gc and -report are refused with what to use instead.\nShells (--debug, --shell, --shell-before, --shell-after) run bash on the machine with the job's environment in the directory its scripts run in (the task's; the project's for a project or backend script), one at a time, on this terminal: interactive when stdin is a terminal (a pty over SSH), else reading commands from stdin. The run goes on when the shell exits; the other machines go on meanwhile, their log lines held until it closes.\nExit status: 0 when every job succeeded, 1 when any failed or aborted; other errors use fleetcache's codes (2 command line, 3 spread.yaml or selection, 6 network, ...; docs/errors.md), where spread ends them all with 1.")
    .action(async (filters: string[], flags: RunFlags) => {
      refuseModeMix(flags);
      refuseUnsupported(flags);
      const seed = flags.seed === undefined ? undefined : seedOf(flags.seed);
      const repeat = flags.repeat === undefined ? undefined : repeatOf(flags.repeat);
      const workers = flags.workers === undefined ? undefined : workersOf(flags.workers);
      const shell = shellModes(flags);
      if (flags.list || flags.discard) await checkNamedFiles(flags);
      if (flags.list) {
        const { printJobs } = await import('./list.js');
        await printJobs(filters, false, flags.verbose > 0 || flags.vv === true);
        return;
      }
      const { RunLog } = await import('../run/report.js');
      const log = new RunLog(undefined, flags.vv ? 2 : flags.verbose);
      if (flags.discard) {
        const { discardKeptMachines } = await import('../run/discard.js');
        await discardKeptMachines({ cwd: process.cwd(), log, ...(flags.data ? { dataRoot: flags.data } : {}) });
        return;
      }
      const [{ ensureAgentBundle }, { runProject }, { formatLedger }] = await Promise.all([import('../agent/paths.js'), import('../run/runner.js'), import('../report/ledger.js')]);
      const result = await runProject({
        cwd: process.cwd(),
        filters,
        agentBundle: await ensureAgentBundle(),
        log,
        ...(flags.fleet ? { fleetFile: flags.fleet } : {}),
        ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}),
        ...(seed !== undefined ? { seed } : {}),
        ...(flags.order ? { order: true } : {}),
        ...(flags.artifacts ? { artifactsDir: flags.artifacts } : {}),
        ...(flags.data ? { dataRoot: flags.data } : {}),
        ...(flags.baseCacheSize !== undefined ? { baseCacheSize: parseSizeFlag('--base-cache-size', flags.baseCacheSize) } : {}),
        ...(repeat !== undefined ? { repeat } : {}),
        ...(workers !== undefined ? { workers } : {}),
        ...(flags.failLogs ? { failLogsDir: flags.failLogs } : {}),
        ...(flags.abend ? { abend: true } : {}),
        ...(flags.pass !== undefined ? { password: flags.pass } : {}),
        ...(flags.reuse ? { reuse: true } : {}),
        ...(flags.resend ? { resend: true } : {}),
        ...(flags.restore ? { restoreOnly: true } : {}),
        ...(shell ? { shell } : {}),
      });
      // timestamped like every other line of the run, as spread logs them (spec §16)
      for (const line of result.tally.summaryLines()) log.line(line);
      process.stdout.write(`${formatLedger(result.ledger)}\n`);
      // a signal ends the run unsuccessful even when every job had passed: it killed what ran
      // then (the last restores) and skipped the rest (docs/run.md)
      if (!result.tally.ok || result.interrupted) {
        process.stderr.write('error: unsuccessful run\n');
        process.exitCode = EXIT.failure;
      }
    });
}
