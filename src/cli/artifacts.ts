// `fleetcache artifacts get RUN/JOB[/PATH] --from URL [-o DIR]`: a job's artifacts (or one
// file or directory of them) from any cache or the origin into DIR/<job name>/, as spread's
// -artifacts does. stdout gets one tab-separated line per file: path, size, local file.
import type { Command } from 'commander';
import { resolveToken } from '../client/token.js';
import { transferBars } from './progress.js';
import { requireBaseUrl } from './url-flags.js';

/** For the runner's -artifacts DIR. */

interface GetFlags {
  from: string;
  output: string;
  tokenFile?: string;
}

export function registerArtifacts(program: Command): void {
  const artifacts = program.command('artifacts').description('Task artifacts uploaded by machines');
  artifacts
    .command('get')
    .description('Fetch RUN/JOB[/PATH] into DIR/<job name>/ (verified against the job index)')
    .argument('<ref>', 'RUN/JOB or RUN/JOB/PATH (job names may contain slashes)')
    .requiredOption('--from <url>', 'cache or origin base URL')
    .option('-o, --output <dir>', 'target directory', '.')
    .option('--token-file <file>', 'token, when the server requires one for reads (default: $FLEETCACHE_TOKEN)')
    .action(async (ref: string, flags: GetFlags) => {
      requireBaseUrl('--from', flags.from);
      const token = resolveToken(flags.tokenFile);
      const { downloadArtifacts, resolveArtifactRef } = await import('../artifacts/download.js'); // not loaded for --help
      const http = token ? { token } : {};
      const resolved = await resolveArtifactRef(flags.from, ref, http);
      const bars = transferBars();
      const files = await downloadArtifacts(flags.from, resolved, flags.output, { ...http, ...(bars.progress ? { progress: bars.progress } : {}) }).finally(bars.stop);
      for (const file of files) {
        process.stdout.write(`${file.path}\t${file.size}\t${file.file}\n`);
      }
    });
}
