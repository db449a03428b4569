// `fleetcache delta --base BASE.tar NEW.tar -o FILE`: a VCDIFF (xdelta3), compressed.
import { join } from 'node:path';
import type { Command } from 'commander';
import { compressDelta, DEFAULT_COMPRESSION, isCompression } from '../delta/compress.js';
import { DEFAULT_LEVEL_HELP, encodeDelta } from '../delta/xdelta.js';
import { UsageError } from '../errors.js';
import { decimalWhole } from './decimal-flag.js';
import { requireInput, requireOutput } from '../path-checks.js';
import { writeAtomically } from '../project-upload/atomic-file.js';
import { withTempDir } from '../project-upload/temp-dir.js';

/** The --level flag: undefined when not given (the encoder then uses defaultLevel()). */
export function parseLevel(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const level = decimalWhole(text);
  if (level === undefined || level < 1 || level > 9) throw new UsageError(`--level must be 1-9, got "${text}"`);
  return level;
}

export function registerDelta(program: Command): void {
  program
    .command('delta')
    .description('Encode NEW against BASE as a VCDIFF delta (prints level, VCDIFF size, file size)')
    .argument('<new>', 'the new file')
    .requiredOption('--base <file>', 'the base file')
    .requiredOption('-o, --output <file>', 'delta file to write')
    .option('--compression <c>', 'none (plain VCDIFF, readable by xdelta3 -d), gzip or brotli', DEFAULT_COMPRESSION)
    .option('--level <n>', DEFAULT_LEVEL_HELP)
    .action(async (target: string, flags: { base: string; output: string; compression: string; level?: string }) => {
      if (!isCompression(flags.compression)) throw new UsageError(`--compression must be none, gzip or brotli, got "${flags.compression}"`);
      const level = parseLevel(flags.level);
      await requireInput(flags.base, 'file', 'base');
      await requireInput(target, 'file', 'new file');
      await requireOutput(flags.output);
      const compression = flags.compression;
      const { encoded, size } = await withTempDir('fleetcache-delta-', async (work) => {
        const vcdiff = join(work, 'delta.vcdiff');
        const encoded = await encodeDelta({ path: flags.base }, { path: target }, vcdiff, level === undefined ? {} : { level });
        return { encoded, size: await writeAtomically(flags.output, async (tmp) => (await compressDelta(vcdiff, tmp, compression)).size) };
      });
      process.stdout.write(`level ${encoded.level}\tvcdiff ${encoded.size}\t${compression} ${size}\t${flags.output}\n`);
    });
}
