// `fleetcache assets fetch|add|upload`: tooltool-compatible assets. stdout gets one
// tab-separated line per file (parseable); progress bars go to stderr, only on a terminal.
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { fetchAssets, type AssetProgress, type FetchAssetsResult } from '../assets/fetch.js';
import { addToManifest, droppedReason } from '../assets/manifest.js';
import { uploadAssets } from '../assets/upload.js';
import { resolveToken } from '../client/token.js';
import { formatBytes } from '../config/units.js';
import { FleetError, UsageError } from '../errors.js';
import { requireHttpUrl } from './url-flags.js';
import { repeatable } from './repeatable.js';

interface FetchFlags {
  manifest: string;
  url: string[];
  cacheFolder?: string;
  dest?: string;
  tokenFile?: string;
}

interface AddFlags {
  manifest: string;
  visibility: string;
  unpack?: boolean;
  assetVersion?: string;
}

interface UploadFlags {
  manifest: string;
  url: string;
  tokenFile?: string;
}


/** One bar per file on a terminal; nothing otherwise. */
function progressReporter(): { onProgress?: (p: AssetProgress) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { stop: () => undefined };
  const multi = new cliProgress.MultiBar(
    { stream: process.stderr, format: ' {bar} {percentage}% | {filename} | {got} ({source})', hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  return {
    onProgress: (p) => {
      let bar = bars.get(p.filename);
      const payload = { filename: p.filename, got: formatBytes(p.received), source: p.source };
      if (!bar) {
        bar = multi.create(p.total ?? 0, 0, payload);
        bars.set(p.filename, bar);
      }
      bar.update(p.received, payload);
      if (p.done) bar.stop();
    },
    stop: () => multi.stop(),
  };
}

function report(result: FetchAssetsResult, manifest: string): void {
  for (const d of result.dropped) {
    process.stderr.write(`fleetcache: warning: ${manifest}:${d.line}: record ${d.index} ${droppedReason(d)} and is skipped (as tooltool does)\n`);
  }
  for (const f of result.files) {
    for (const w of f.warnings) process.stderr.write(`fleetcache: warning: ${f.filename}: ${w}\n`);
    if (f.error) process.stderr.write(`fleetcache: error: ${f.error.message}\n`);
    const status = f.error ? 'failed' : f.source!;
    process.stdout.write(`${f.filename}\t${status}\t${f.size ?? '-'}\t${f.bytesDownloaded}\t${f.bytesFromCache}\t${f.url ?? '-'}\t${f.unpacked ?? '-'}\n`);
  }
}

export function registerAssets(program: Command): void {
  const assets = program.command('assets').description('Tooltool-compatible assets: fetch by manifest, add to a manifest, upload to the origin');

  assets
    .command('fetch')
    .description(
      'Fetch the files a tooltool manifest names into the current directory (or --dest), verifying size and digest.\n' +
        'Prints: filename, present|cache|download|skipped|failed, size, bytes downloaded, bytes from the cache folder, URL, unpacked format.',
    )
    .argument('[files...]', 'download only these manifest filenames (as tooltool: the others are still checked, copied from the cache folder and unpacked, just not downloaded)')
    .option('-m, --manifest <file>', 'tooltool manifest', 'manifest.tt')
    .addOption(repeatable('--url <url>', 'base URL serving /<algorithm>/<digest>; repeatable, tried in order', 'none: only files present or in the cache folder'))
    .option('-c, --cache-folder <dir>', 'local cache folder shared across runs (tooltool layout)', process.env.TOOLTOOL_CACHE)
    .option('--dest <dir>', 'directory the files appear in (default: current directory)')
    .option('--token-file <file>', 'bearer token for internal assets (default: $FLEETCACHE_TOKEN)')
    .action(async (files: string[], flags: FetchFlags) => {
      requireHttpUrl('--url', ...flags.url);
      const progress = progressReporter();
      let result: FetchAssetsResult;
      try {
        result = await fetchAssets({
          manifestPath: flags.manifest,
          urls: flags.url,
          cacheFolder: flags.cacheFolder,
          dest: flags.dest,
          token: resolveToken(flags.tokenFile),
          files,
          onProgress: progress.onProgress,
        });
      } finally {
        progress.stop();
      }
      report(result, flags.manifest);
      const failed = result.files.find((f) => f.error);
      if (failed) throw new FleetError(failed.error!.code, `${result.failed} of ${result.files.length} files failed`);
    });

  assets
    .command('add')
    .description('Hash files (sha512) and add them to a tooltool manifest, creating it if needed')
    .argument('<files...>', 'files to add (their base names become the manifest filenames)')
    .option('-m, --manifest <file>', 'tooltool manifest', 'manifest.tt')
    .option('--visibility <v>', 'public or internal', 'public')
    .option('--unpack', 'unpack the archive after fetching')
    .option('--asset-version <text>', 'free-form version label (the record\'s "version")')
    .action(async (files: string[], flags: AddFlags) => {
      if (flags.visibility !== 'public' && flags.visibility !== 'internal') {
        throw new UsageError(`--visibility must be public or internal, not "${flags.visibility}"`);
      }
      const added = await addToManifest(flags.manifest, files, { visibility: flags.visibility, unpack: flags.unpack, version: flags.assetVersion });
      for (const r of added) process.stdout.write(`${r.filename}\t${r.size}\t${r.algorithm}:${r.digest}\n`);
    });

  assets
    .command('upload')
    .description(
      "PUT the manifest's files to the origin's /cas/sha512/<hex>, skipping what it already has.\n" +
        'Visibility is fixed at the first upload, as in tooltool: if the manifest asks another visibility for a file ' +
        'the origin already has (internal for one it keeps public, or public for one it keeps internal), ' +
        'nothing is uploaded and the command fails (exit 2).\n' +
        'Prints: filename, uploaded|present, size, visibility.',
    )
    .option('-m, --manifest <file>', 'tooltool manifest', 'manifest.tt')
    .requiredOption('--url <origin>', 'origin base URL')
    .option('--token-file <file>', 'write token (default: $FLEETCACHE_TOKEN)')
    .action(async (flags: UploadFlags) => {
      requireHttpUrl('--url', flags.url);
      const token = resolveToken(flags.tokenFile);
      // Exit 7 (docs/errors.md), as push gets from the origin's 401: a token is missing, not the command line wrong.
      if (!token) throw new FleetError('FC_ERR_UNAUTHORIZED', 'assets upload needs a token: --token-file FILE or $FLEETCACHE_TOKEN');
      await uploadAssets({
        manifestPath: flags.manifest,
        origin: flags.url,
        token,
        onFile: (r) => process.stdout.write(`${r.filename}\t${r.uploaded ? 'uploaded' : 'present'}\t${r.size}\t${r.visibility}\n`),
      });
    });
}
