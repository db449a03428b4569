// `fleetcache pack DIR -o FILE.tar`: the deterministic project tar, with spread's rules.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { PackRules } from '../pack/rules.js';
import { DEFAULT_DATA_DIR, runnerState } from '../run/state-dir.js';
import { sha256File } from '../store/hashing.js';
import { requireInput, requireOutput } from '../path-checks.js';
import { tempNameFor, writeAtomically } from '../project-upload/atomic-file.js';
import { removeIfProcessEnds } from '../project-upload/signal-cleanup.js';
import { repeatable } from './repeatable.js';

export interface RuleFlags {
  include: string[];
  exclude: string[];
  rename: string[];
}

/** Adds spread's include/exclude/rename options to a command. */
export function withRuleOptions(command: Command): Command {
  return command
    .addOption(repeatable('--include <glob>', 'path or glob relative to DIR to pack; repeatable', 'every entry of DIR'))
    .addOption(repeatable('--exclude <pattern>', "tar --exclude pattern (.spread-reuse.* always excluded, and `fleetcache run`'s own .fleetcache/, .fleetcache-timings.json and .fleetcache-reuse.json); repeatable", 'none'))
    .addOption(repeatable('--rename <expr>', 'tar --transform expression such as s,^,proj/,; repeatable', 'none'));
}

/**
 * The rules of the flags, leaving out what `fleetcache run` keeps in a project it ran, as its
 * own pack does (its data directory holds copies of the project and the embedded origin's
 * write token): a tar of DIR is the same whichever command packs it.
 */
export function rulesFrom(flags: RuleFlags, dir: string): PackRules {
  return { include: flags.include, exclude: flags.exclude, rename: flags.rename, ...runnerState(dir, join(dir, DEFAULT_DATA_DIR)) };
}

export function registerPack(program: Command): void {
  withRuleOptions(
    program
      .command('pack')
      .description('Pack a project tree into a deterministic tar (prints digest, size, file)')
      .argument('<dir>', 'project root')
      .requiredOption('-o, --output <file>', 'tar file to write')
      .option('--repack <script>', "spread's repack script: packed tar on fd 3, final tar on fd 4"),
  ).action(async (dir: string, flags: RuleFlags & { output: string; repack?: string }) => {
    await requireInput(dir, 'directory', 'project directory');
    await requireOutput(flags.output);
    // the packer (tar-stream) loads once the command runs, not for --help
    const [{ packToFile }, { checkRepackOutput, runRepack }] = await Promise.all([import('../pack/packer.js'), import('../pack/repack.js')]);
    // written under temporary names and renamed on success: a failed run leaves no tar; the
    // output's final name is never packed either (a tar left there by the last run)
    const { packed, digest, size } = await writeAtomically(flags.output, async (out) => {
      if (!flags.repack) {
        const packed = await packToFile(dir, out, rulesFrom(flags, dir), undefined, [flags.output]);
        return { packed, digest: `sha256:${packed.sha256}`, size: packed.size };
      }
      const repack = flags.repack;
      const packFile = tempNameFor(`${flags.output}.packed`);
      const forget = removeIfProcessEnds(packFile);
      try {
        const packed = await packToFile(dir, packFile, rulesFrom(flags, dir), undefined, [out, flags.output]);
        await runRepack(repack, packFile, out, { cwd: dir });
        await checkRepackOutput(repack, out);
        return { packed, ...(await sha256File(out)) };
      } finally {
        await rm(packFile, { force: true });
        forget();
      }
    });
    process.stdout.write(`${digest}\t${size}\t${flags.output}\n`);
    reportSkipped(packed.skipped);
  });
}

/** Says on stderr which paths of the tree were not packed (pack, push). */
export function reportSkipped(skipped: readonly string[]): void {
  for (const path of skipped) process.stderr.write(`fleetcache: skipped ${path} (not a file, directory or symlink)\n`);
}
