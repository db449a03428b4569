// `fleetcache assets fetch|list|validate|purge|add|upload`: tooltool-compatible assets, and
// a drop-in for tooltool.py's command line (shared/tooltool.md §2): its options belong to
// `assets`, so they go before or after the command (`assets --url U/ fetch -m M -o -c C`,
// as mozharness calls tooltool), and fetch, list, validate and purge end every failure
// with exit status 1, as tooltool does. stdout gets one tab-separated line per file
// (parseable); messages go to stderr; progress bars too, only on a terminal.
import cliProgress from 'cli-progress';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { readAuthenticationFile, taskclusterNotSent } from '../assets/auth.js';
import { checkManifestFiles, type FileCheck } from '../assets/check.js';
import type { AssetProgress, FetchAssetsResult } from '../assets/fetch.js';
import { addToManifest, manifestNotices, type DroppedRecord, type Visibility } from '../assets/manifest.js';
import { purgeCacheFolder } from '../assets/purge.js';
import { resolveToken } from '../client/token.js';
import { formatBytes, parsePositiveDuration, parseTimerDuration } from '../config/units.js';
import { ConfigError, errorMessage, FleetError, UsageError } from '../errors.js';
import { redactUrl } from '../redact-url.js';
import { exitOneOnError } from './exit-one.js';
import { pythonFloat } from './python-float.js';
import { barSize, terminalBars, type BarStream } from './progress.js';
import { requireHttpUrl } from './url-flags.js';
import { repeatable } from './repeatable.js';

type LogLevel = 'error' | 'warning' | 'debug';

/** The options of `assets`, tooltool's (and fleetcache's spellings), given before or after the command. */
interface AssetsFlags {
  manifest: string;
  url: string[];
  cacheFolder?: string;
  dest?: string;
  tokenFile?: string;
  authenticationFile?: string;
  region?: string;
  size?: number;
  /** Set by -v and -q, the last one given winning, as tooltool's optparse does. */
  logLevel?: LogLevel;
  /** add's: the new records' visibility, unpack flag and version label. */
  visibility?: Visibility;
  unpack?: boolean;
  assetVersion?: string;
  /** fetch: how long each --url but the last may keep silent (ms), and the floor under its rate (parseCacheTimeout). */
  cacheTimeout: number;
}

const EXIT_ONE = '\nExit status: 0 on success, 1 on any failure (as tooltool), 2 for an unknown option or a missing option value.';

interface Log {
  error(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

/** stderr messages at tooltool's levels: -q errors only, -v also debug. */
function makeLog(level: LogLevel = 'warning'): Log {
  const write = (kind: string) => (message: string) => void process.stderr.write(`fleetcache: ${kind}: ${message}\n`);
  const none = (): void => undefined;
  return { error: write('error'), warn: level === 'error' ? none : write('warning'), debug: level === 'debug' ? write('debug') : none };
}

/**
 * One bar per file on a terminal (`stream`); nothing otherwise. The file's name comes first
 * and the bar takes what the terminal's width leaves (barSize), as a transfer's bar does.
 */
export function progressReporter(quiet: boolean, stream: BarStream = process.stderr): { onProgress?: (p: AssetProgress) => void; stop: () => void } {
  const multi = terminalBars(' {filename} {bar} {percentage}% | {got} of {size} ({source})', quiet, stream);
  if (!multi) return { stop: () => undefined };
  const bars = new Map<string, cliProgress.SingleBar>();
  return {
    onProgress: (p) => {
      let bar = bars.get(p.filename);
      const payload = { filename: p.filename, got: formatBytes(p.received), size: p.total === null ? '?' : formatBytes(p.total), source: p.source };
      if (!bar) {
        // "download": the longer of the sources a file's bar may show
        bar = multi.create(p.total ?? 0, 0, payload, { barsize: barSize(stream, p.filename, payload.size, ' (download)') });
        bars.set(p.filename, bar);
      }
      bar.update(p.received, payload);
      if (p.done) bar.stop();
    },
    stop: () => multi.stop(),
  };
}

/** Warns of the records tooltool skips and of the values it accepts that are likely mistakes. */
function warnManifest(result: { dropped: readonly DroppedRecord[]; manifestWarnings: readonly string[] }, manifest: string, log: Log): void {
  for (const notice of manifestNotices(result, manifest)) log.warn(notice);
}

function report(result: FetchAssetsResult, manifest: string, log: Log): void {
  warnManifest(result, manifest, log);
  for (const name of result.unknownFiles) log.warn(`${manifest}: no record named "${name}": ignored (as tooltool does)`);
  for (const f of result.files) {
    for (const w of f.warnings) log.warn(`${f.filename}: ${w}`);
    if (f.error) log.error(f.error.message);
    const status = f.error ? 'failed' : f.source!;
    process.stdout.write(`${f.filename}\t${status}\t${f.size ?? '-'}\t${f.bytesDownloaded}\t${f.bytesFromCache}\t${f.url ?? '-'}\t${f.unpacked ?? '-'}\n`);
  }
}

/**
 * The bearer token: --authentication-file (tooltool's) or --token-file, else $FLEETCACHE_TOKEN;
 * and where it came from. Taskcluster credentials (a JSON authentication file) are not sent:
 * a fetch (which gives its `fetchLog`) goes on without credentials and says so (public files
 * need none), an upload is refused.
 */
function assetsToken(flags: AssetsFlags, fetchLog?: Log): { token: string | undefined; from: string } {
  if (flags.authenticationFile !== undefined && flags.tokenFile !== undefined) {
    throw new UsageError('--authentication-file and --token-file both name the token file: give one');
  }
  if (flags.authenticationFile !== undefined) {
    const auth = readAuthenticationFile(flags.authenticationFile);
    if ('token' in auth) return { token: auth.token, from: `--authentication-file ${flags.authenticationFile}` };
    if (!fetchLog) throw new ConfigError(taskclusterNotSent(auth.taskcluster, 'put the token itself in the file'), auth.taskcluster);
    fetchLog.warn(taskclusterNotSent(auth.taskcluster, 'fetching without credentials (a file kept internal is refused)'));
    return { token: undefined, from: `none (--authentication-file ${flags.authenticationFile} holds Taskcluster credentials)` };
  }
  const token = resolveToken(flags.tokenFile);
  return { token, from: flags.tokenFile !== undefined ? `--token-file ${flags.tokenFile}` : token ? '$FLEETCACHE_TOKEN' : 'none' };
}

/**
 * --cache-timeout: a duration longer than 0 (0 would be no timeout), within a timer's reach;
 * the speed floor's window is twice it.
 */
function parseCacheTimeout(value: string): number {
  try {
    parsePositiveDuration(value);
    return parseTimerDuration(value);
  } catch (err) {
    throw new InvalidArgumentError(errorMessage(err));
  }
}

function parseGigabytes(value: string): number {
  const n = pythonFloat(value);
  if (n === undefined) throw new InvalidArgumentError("expected gigabytes, a number as tooltool's optparse reads it (Python's float(): e.g. 20, 2.5, 1e3, 1_000)");
  // no free space reaches nan or inf: tooltool deletes every file, as with 0
  return Number.isNaN(n) || n === Infinity ? 0 : n;
}

/** tooltool's options, on `assets` itself (add's too): commander then takes them before and after the command. */
function addTooltoolOptions(assets: Command): void {
  assets
    .option('-m, --manifest <file>', 'tooltool manifest', 'manifest.tt')
    .addOption(repeatable('--url <url>', 'base URL serving /<algorithm>/<digest>; repeatable, tried in order (upload: the one origin)', 'none: only files present or in the cache folder'))
    .addOption(new Option('-c, --cache-folder <dir>', 'local cache folder shared across runs, tooltool\'s layout (fetch; purge: the folder to purge, never taken from $TOOLTOOL_CACHE)').env('TOOLTOOL_CACHE'))
    .option('--dest <dir>', 'directory of the manifest\'s files (fetch, list, validate; default: the current directory)')
    .option('--authentication-file <file>', 'tooltool\'s token file (~ and ~user expanded, as Python\'s expanduser), sent as a bearer token; a JSON (Taskcluster, Hawk) credential is not sent: fetch goes on without it, upload refuses it')
    .option('--token-file <file>', 'bearer token file, fleetcache\'s spelling: read as it is, no ~, no JSON check (default: $FLEETCACHE_TOKEN)')
    .addOption(new Option('--cache-timeout <duration>', 'fetch: each --url but the last (a cache; the last is the origin) is given up on, for the next, when it keeps silent this long, takes this long (10 s at most) to accept the connection, or sends slower than 16 KiB/s over twice this, as a machine\'s fetch (the fleet\'s cacheTimeout:, docs/run.md)').default(30_000, '30s').argParser(parseCacheTimeout))
    .option('-r, --region <region>', 'append ?region=<region> to every download URL (fetch)')
    .option('-o, --overwrite', 'accepted, unused (as in tooltool)')
    .option('--message <text>', 'accepted, unused: tooltool\'s upload message (the origin keeps none)')
    .option('--digest <hex>', 'accepted, unused: for tooltool\'s change-visibility and delete, which fleetcache does not have (exit 1)')
    .option('-s, --size <GB>', 'purge: gigabytes (GiB) to make free on the cache folder\'s filesystem, a number as tooltool reads it (Python\'s float(): 2.5, 1e3); 0, inf or nan: delete every file; a negative one: none (default: 0)', parseGigabytes)
    .addOption(new Option('--visibility <v>', 'add: the records\' visibility (default: none, as tooltool; upload refuses a record without one)').choices(['public', 'internal']))
    .option('--unpack', 'add: unpack the archive after fetching')
    .option('--asset-version <text>', 'add: free-form version label (the record\'s "version")')
    .option('--version <text>', 'add: tooltool\'s spelling of --asset-version')
    .addOption(new Option('-d, --algorithm <name>', 'add: the hash (tooltool allows only sha512 too)').choices(['sha512']).default('sha512'))
    .option('-v, --verbose', 'also debug messages on stderr')
    .option('-q, --quiet', 'only errors on stderr (no warnings, no progress bars)');
  // tooltool's -v and -q set one log level: the last one given wins.
  assets.on('option:verbose', () => assets.setOptionValue('logLevel', 'debug'));
  assets.on('option:quiet', () => assets.setOptionValue('logLevel', 'error'));
  // --version and --asset-version set one label, the last one given winning, as optparse's shared dest.
  assets.on('option:version', (text: string) => assets.setOptionValue('assetVersion', text));
}

/** The manifest's records checked against the files (list, validate), after warning of the records tooltool skips. */
async function checkFiles(flags: AssetsFlags, log: Log): Promise<readonly FileCheck[]> {
  const check = await checkManifestFiles(flags.manifest, flags.dest ?? '.');
  warnManifest(check, flags.manifest, log);
  return check.files;
}

/**
 * A command tooltool has: its options are those of `assets` (before or after the command),
 * its messages at -v/-q's level, and any failure ends it with exit status 1, as tooltool.
 */
function tooltoolCommand(assets: Command, name: string, description: string, run: (flags: AssetsFlags, log: Log, cmd: Command) => Promise<void>): Command {
  return assets
    .command(name)
    .description(description)
    .addHelpText('after', EXIT_ONE)
    // tooltool's list, validate and purge never read their arguments: extra ones are not an error
    .allowExcessArguments()
    .action((...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command; // commander passes the command last
      return exitOneOnError('fleetcache: error: ', () => {
        const flags = cmd.optsWithGlobals<AssetsFlags>();
        const log = makeLog(flags.logLevel);
        if (cmd.registeredArguments.length === 0) for (const extra of cmd.args) log.warn(`${name}: argument "${extra}" ignored (as tooltool does)`);
        return run(flags, log, cmd);
      });
    });
}

export function registerAssets(program: Command): void {
  const assets = program
    .command('assets')
    .description('Tooltool-compatible assets, and a drop-in for tooltool.py\'s command line: fetch, list, validate and purge as tooltool does them; add to a manifest, upload to the origin')
    // The subcommands' help lists the options of `assets`, not fleetcache's -V: it goes before `assets` only.
    .configureHelp({ showGlobalOptions: true, visibleGlobalOptions: (cmd) => (cmd.parent?.parent ? cmd.parent.options.filter((o) => !o.hidden) : []) })
    .addHelpText(
      'after',
      '\nThe options go before or after the command, as tooltool.py\'s do, e.g.\n' +
        '  fleetcache assets --url https://cache.example/ --authentication-file ~/token fetch -m manifest.tt -o -c /builds/tooltool-cache\n' +
        'fetch, list, validate, purge: exit status 0 on success, 1 on any failure (as tooltool), 2 for an unknown option.\n' +
        'An unknown command: exit status 1, as tooltool; no command: 2.\n' +
        'add, upload: the exit codes of docs/errors.md.',
    );
  addTooltoolOptions(assets);

  tooltoolCommand(
    assets,
    'fetch',
    'Fetch the files a tooltool manifest names into the current directory (or --dest), verifying size and digest.\n' +
      'A file that fails (not found, wrong bytes, a record whose size, algorithm or digest is malformed) does not stop the others: ' +
      'every other file is fetched, each failure is named, and the exit status is 1 at the end, as tooltool.\n' +
      'Unpacks as tooltool, except that an archive with an entry or link that would land outside the directory (../, an absolute path) fails its file, zips included ' +
      '(tooltool\'s zip unpack strips the .. and unpacks it anyway), and so does a link whose target has .. after a name (bin/../lib; ../lib is taken).\n' +
      'Prints: filename, present|cache|download|skipped|failed, size, bytes downloaded, bytes from the cache folder, URL, unpacked format.',
    async (flags, log, cmd) => {
      requireHttpUrl('--url', ...flags.url);
      const auth = assetsToken(flags, log);
      log.debug(`manifest ${flags.manifest}; base URLs ${flags.url.map(redactUrl).join(' ') || '(none)'}; region ${flags.region ?? '(none)'}; cache folder ${flags.cacheFolder ?? '(none)'}; token: ${auth.from}`);
      if (!flags.authenticationFile && process.env.TASKCLUSTER_CLIENT_ID && process.env.TASKCLUSTER_ACCESS_TOKEN) {
        log.debug('$TASKCLUSTER_CLIENT_ID and $TASKCLUSTER_ACCESS_TOKEN are set: tooltool would sign with Hawk; fleetcache does not use them');
      }
      const progress = progressReporter(flags.logLevel === 'error');
      let result: FetchAssetsResult;
      try {
        // the HTTP client (undici) and the unpackers load once a command needs them, not for --help
        const { fetchAssets } = await import('../assets/fetch.js');
        result = await fetchAssets({
          manifestPath: flags.manifest,
          urls: flags.url,
          cacheFolder: flags.cacheFolder,
          dest: flags.dest,
          token: auth.token,
          region: flags.region,
          files: cmd.args,
          onProgress: progress.onProgress,
          cacheTimeoutMs: flags.cacheTimeout,
        });
      } finally {
        progress.stop();
      }
      report(result, flags.manifest, log);
      const failed = result.files.find((f) => f.error);
      if (failed) throw new FleetError(failed.error!.code, `${result.failed} of ${result.files.length} files failed`);
    },
  ).argument('[files...]', 'download only these manifest filenames (as tooltool: the others are still checked, copied from the cache folder and unpacked, just not downloaded)');

  tooltoolCommand(
    assets,
    'list',
    "Print the manifest's records as tooltool's list does, one tab-separated line each:\n" +
      'P if the file is in the current directory (or --dest) else -, V if it is there and matches its size and digest else -, filename.',
    async (flags, log) => {
      for (const f of await checkFiles(flags, log)) {
        if (f.reason) log.debug(f.reason);
        process.stdout.write(`${f.state === 'missing' ? '-' : 'P'}\t${f.state === 'valid' ? 'V' : '-'}\t${f.filename}\n`);
      }
    },
  );

  tooltoolCommand(
    assets,
    'validate',
    "Check the manifest's files in the current directory (or --dest) without fetching or deleting anything: " +
      'fails if any is missing or does not match its size and digest, naming each on stderr. Prints nothing on stdout.',
    async (flags, log) => {
      const files = await checkFiles(flags, log);
      const bad = files.filter((f) => f.state !== 'valid');
      for (const f of bad) log.error(f.reason!);
      if (bad.length > 0) {
        throw new FleetError(bad.some((f) => f.state === 'missing') ? 'FC_ERR_NOT_FOUND' : 'FC_ERR_DIGEST_MISMATCH', `${bad.length} of ${files.length} files missing or invalid`);
      }
    },
  );

  tooltoolCommand(
    assets,
    'purge',
    'Delete the files of the cache folder (-c, required), oldest modification time first, until -s GB are free on its filesystem; ' +
      'without -s, or with -s 0, delete them all. Sub-directories are left alone.\n' +
      'Prints: name and size of each deleted file.',
    async (flags, log, cmd) => {
      // Not $TOOLTOOL_CACHE: a forgotten -c must not empty the cache fetch uses (tooltool asks for -c too).
      if (cmd.getOptionValueSourceWithGlobals('cacheFolder') !== 'cli') throw new UsageError('purge needs -c DIR, the cache folder to purge');
      const folder = flags.cacheFolder!;
      const result = await purgeCacheFolder({ folder, gigabytes: flags.size });
      for (const f of result.removed) process.stdout.write(`${f.name}\t${f.size}\n`);
      for (const f of result.failed) log.error(`cannot delete ${f.name} from ${folder}: ${f.message}`);
      if (result.freeAfter !== null) {
        const free = `${formatBytes(result.freeAfter)} free`;
        const wanted = `${formatBytes(result.wanted)} wanted`;
        if (result.freeAfter < result.wanted) log.warn(`${folder}: ${free} after deleting every file it could, ${wanted}`);
        else log.debug(`${folder}: ${free}, ${wanted}${result.removed.length === 0 ? ': nothing to delete' : ''}`);
      }
      if (result.failed.length > 0) throw new UsageError(`${result.failed.length} files of ${folder} could not be deleted`);
    },
  );

  assets
    .command('add')
    .description('Hash files (sha512) and add them to a tooltool manifest (-m), creating it if needed, with --visibility, --unpack and --asset-version; '
      + 'as tooltool, the new records come first, before the manifest\'s others, and without --visibility they have none (upload then asks for one); '
      + 'a file under a name the manifest has (identical, or another file, visibility or version there) is not added and makes the exit status 1, the others given still added, as tooltool')
    .argument('<files...>', 'files to add (their base names become the manifest filenames)')
    .action(async (files: string[], _flags: unknown, cmd: Command) => {
      const flags = cmd.optsWithGlobals<AssetsFlags>();
      const { added, notAdded } = await addToManifest(flags.manifest, files, { visibility: flags.visibility, unpack: flags.unpack, version: flags.assetVersion });
      for (const r of added) process.stdout.write(`${r.filename}\t${r.size}\t${r.algorithm}:${r.digest}\n`);
      // tooltool's add: a file whose name the manifest has is not added, and not every file added is a failure
      // an error as its other messages are (the exit status says a failure): shown with -q too
      const log = makeLog(flags.logLevel);
      for (const why of notAdded) log.error(why);
      if (notAdded.length > 0) process.exitCode = 1;
    });

  assets
    .command('upload')
    .description(
      "PUT the manifest's (-m) files to the origin's (--url, one) /cas/<algorithm>/<hex>, skipping what it already has " +
        '(except a sha256 file, sent again: the origin may have those bytes as an artifact, which retention deletes, and keeps them as an asset once uploaded); ' +
        'needs a write token (--token-file, --authentication-file or $FLEETCACHE_TOKEN).\n' +
        'Visibility is fixed at the first upload, as in tooltool: if the manifest asks another visibility for a file ' +
        'the origin already has (internal for one it keeps public, or public for one it keeps internal), ' +
        'nothing is uploaded and the command fails (exit 2).\n' +
        'Prints: filename, uploaded|present, size, visibility.',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const flags = cmd.optsWithGlobals<AssetsFlags>();
      if (flags.url.length !== 1) throw new UsageError(`assets upload needs one --url, the origin (${flags.url.length} given)`);
      const origin = flags.url[0]!;
      requireHttpUrl('--url', origin);
      const { token } = assetsToken(flags);
      // Exit 7 (docs/errors.md), as push gets from the origin's 401: a token is missing, not the command line wrong.
      if (!token) throw new FleetError('FC_ERR_UNAUTHORIZED', 'assets upload needs a token: --token-file FILE, --authentication-file FILE or $FLEETCACHE_TOKEN');
      const { uploadAssets } = await import('../assets/upload.js');
      await uploadAssets({
        manifestPath: flags.manifest,
        origin,
        token,
        onFile: (r) => process.stdout.write(`${r.filename}\t${r.uploaded ? 'uploaded' : 'present'}\t${r.size}\t${r.visibility}\n`),
      });
    });

  // tooltool logs `command "X" is not implemented` and exits 1 (its own change-visibility
  // and delete are not ours): an unknown command is a failure here, not commander's exit 2.
  // Only a bad option, which optparse refuses first, stays a usage error.
  assets.on('command:*', (operands: string[], unknown: string[]) => {
    if (unknown.length > 0) throw new UsageError(`unknown option '${unknown[0]}'`);
    const names = assets.commands.map((c) => c.name()).join(', ');
    process.stderr.write(`fleetcache: error: unknown command '${operands[0]}' (the commands of assets: ${names})\n`);
    process.exitCode = 1;
  });
}
