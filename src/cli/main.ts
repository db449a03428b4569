// The CLI: one commander program, one file per command under src/cli/, and one place
// (here) where errors become exit codes.
import { Command, CommanderError } from 'commander';
import { EXIT, FleetError, toFleetError } from '../errors.js';
import { registerOrigin } from './origin.js';
import { normaliseSpreadFlags, registerRun } from './run.js';
import { registerReport } from './report.js';
import { registerDemo } from './demo.js';
import { registerCache } from './cache.js';
import { registerAssets } from './assets.js';
import { registerList } from './list.js';
import { registerArtifacts } from './artifacts.js';
import { registerProjectUpload } from './project-upload.js';

const VERSION = '0.1.0';

export function buildProgram(): Command {
  const program = new Command('fleetcache')
    .version(VERSION)
    .description('Regional caches, a content-addressed artifact service, delta-repacked project uploads and a spread-compatible runner for test fleets.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerDemo(program);
  registerOrigin(program);
  registerRun(program);
  registerReport(program);
  registerCache(program);
  registerAssets(program);
  registerList(program);
  registerArtifacts(program);
  registerProjectUpload(program);
  return program;
}

/** Runs the CLI and resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(normaliseSpreadFlags(argv), { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors were already printed.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const fe = toFleetError(err);
    process.stderr.write(`fleetcache: error: ${fe.message}${fe.code === 'FC_ERR_INTERNAL' && err instanceof Error && err.stack ? `\n${err.stack}` : ''}\n`);
    return fe instanceof FleetError ? fe.exitCode : EXIT.internal;
  }
}
