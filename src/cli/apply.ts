// `fleetcache apply --base BASE.tar FILE -o NEW.tar`: rebuild from a delta (any of our
// compressions, or a plain VCDIFF such as `xdelta3 -e -S none` writes).
import { readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { Command } from 'commander';
import { decompressDelta } from '../delta/compress.js';
import { decodeDelta } from '../delta/xdelta.js';
import { DigestMismatchError } from '../errors.js';
import { formatDigest, parseDigestString } from '../store/digest.js';
import { requireInput, requireOutput } from './paths.js';
import { writeAtomically } from '../project-upload/atomic-file.js';

export function registerApply(program: Command): void {
  program
    .command('apply')
    .description('Apply a delta to BASE (prints the result digest and size)')
    .argument('<delta>', 'delta file')
    .requiredOption('--base <file>', 'the base file the delta was made against')
    .requiredOption('-o, --output <file>', 'file to write')
    .option('--expect <digest>', 'sha256:<hex> or sha512:<hex> the result must have; nothing is written otherwise')
    .action(async (deltaFile: string, flags: { base: string; output: string; expect?: string }) => {
      const expected = flags.expect === undefined ? undefined : parseDigestString(flags.expect);
      await requireInput(deltaFile, 'file', 'delta');
      await requireInput(flags.base, 'file', 'base');
      await requireOutput(flags.output);
      const vcdiff = decompressDelta(await readFile(deltaFile));
      const digest = await writeAtomically(flags.output, (partial) =>
        decodeDelta({ path: flags.base }, vcdiff, async (result) => {
          const hex = createHash('sha256').update(result).digest('hex');
          if (expected) {
            // compared in the expected digest's own algorithm (sha512 is accepted too)
            const got = expected.algo === 'sha256' ? hex : createHash(expected.algo).update(result).digest('hex');
            if (got !== expected.hex) throw new DigestMismatchError(formatDigest(expected), `${expected.algo}:${got}`);
          }
          await writeFile(partial, result);
          return `sha256:${hex}\t${result.length}`;
        }),
      );
      process.stdout.write(`${digest}\t${flags.output}\n`);
    });
}
