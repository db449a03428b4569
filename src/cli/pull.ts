// `fleetcache pull --project NAME --run RUN --from URL DIR`: rebuild a run's tree, verified.
import type { Command } from 'commander';
import { resolveToken } from '../client/token.js';
import { requireInput } from '../path-checks.js';
import { FleetError, isDamagedBytes } from '../errors.js';
import { transferBars } from './progress.js';
import { requireBaseUrl } from './url-flags.js';

export function registerPull(program: Command): void {
  program
    .command('pull')
    .description('Fetch base and delta of a run (through a cache or the origin), verify, unpack into DIR')
    .argument('<dir>', 'target directory (missing or empty)')
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--run <id>', 'run id')
    .requiredOption('--from <url>', 'cache or origin base URL')
    .option('--token-file <file>', 'token, when the server requires one for reads (default: $FLEETCACHE_TOKEN)')
    .option('--recheck', "ask for the blobs with Cache-Control: no-cache: a cache hashes its copy again and fetches a damaged one anew")
    .action(async (dir: string, flags: { project: string; run: string; from: string; tokenFile?: string; recheck?: boolean }) => {
      requireBaseUrl('--from', flags.from);
      await requireInput(dir, 'directory', 'target directory', { missingOk: true });
      const token = resolveToken(flags.tokenFile);
      const { pullProject } = await import('../project-upload/pull.js'); // not loaded for --help
      const bars = transferBars();
      const result = await pullProject({
        project: flags.project,
        run: flags.run,
        from: flags.from,
        dir,
        ...(token ? { token } : {}),
        ...(flags.recheck ? { recheck: true } : {}),
        ...(bars.progress ? { progress: bars.progress } : {}),
      })
        .catch((err: unknown) => {
          if (flags.recheck || !isDamagedBytes(err)) throw err;
          throw new FleetError(err.code, `${err.message} (from a cache, a damaged copy may be to blame: pull again with --recheck)`, { cause: err });
        })
        .finally(bars.stop);
      process.stdout.write(`${result.manifest.result.digest}\t${result.entries} ${result.entries === 1 ? 'entry' : 'entries'}\t${result.bytesReceived} bytes received\t${dir}\n`);
    });
}
