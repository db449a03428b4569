// `fleetcache pack DIR -o FILE.tar`: the deterministic project tar, with spread's rules.
import type { Command } from 'commander';
import { packToFile } from '../pack/packer.js';
import type { PackRules } from '../pack/rules.js';

export interface RuleFlags {
  include: string[];
  exclude: string[];
  rename: string[];
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Adds spread's include/exclude/rename options to a command. */
export function withRuleOptions(command: Command): Command {
  return command
    .option('--include <glob>', 'path or glob relative to DIR to pack (default: every entry of DIR); repeatable', collect, [])
    .option('--exclude <pattern>', 'tar --exclude pattern (.spread-reuse.* always excluded); repeatable', collect, [])
    .option('--rename <expr>', 'tar --transform expression such as s,^,proj/,; repeatable', collect, []);
}

export function rulesFrom(flags: RuleFlags): PackRules {
  return { include: flags.include, exclude: flags.exclude, rename: flags.rename };
}

export function registerPack(program: Command): void {
  withRuleOptions(
    program
      .command('pack')
      .description('pack a project tree into a deterministic tar (prints digest, size, file)')
      .argument('<dir>', 'project root')
      .requiredOption('-o, --output <file>', 'tar file to write'),
  ).action(async (dir: string, flags: RuleFlags & { output: string }) => {
    const packed = await packToFile(dir, flags.output, rulesFrom(flags));
    process.stdout.write(`sha256:${packed.sha256}\t${packed.size}\t${flags.output}\n`);
    for (const skipped of packed.skipped) process.stderr.write(`fleetcache: skipped ${skipped} (not a file, directory or symlink)\n`);
  });
}
