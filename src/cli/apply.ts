// `fleetcache apply --base BASE.tar FILE -o NEW.tar`: rebuild from a delta (any of our
// compressions, or a plain VCDIFF such as `xdelta3 -e -S none` writes).
import type { Command } from 'commander';
import { deltaChunks } from '../delta/compress.js';
import { decodeVcdiffToFile } from '../delta/vcdiff-decode.js';
import { DigestMismatchError, FleetError, SizeMismatchError } from '../errors.js';
import { formatBytes, parseSizeFlag } from '../config/units.js';
import { formatDigest, parseDigestString } from '../store/digest.js';
import { requireInput, requireOutput } from '../path-checks.js';
import { writeAtomically } from '../project-upload/atomic-file.js';

/**
 * The largest result by default: a few bytes of VCDIFF can stand for gigabytes, and a crafted
 * delta filled the disk. A default origin (limits.maxBlobSize) stores no larger tar.
 */
const DEFAULT_MAX_SIZE = '20GiB';

export function registerApply(program: Command): void {
  program
    .command('apply')
    .description('Apply a delta to BASE (prints the result digest and size)')
    .argument('<delta>', 'delta file')
    .requiredOption('--base <file>', 'the base file the delta was made against')
    .requiredOption('-o, --output <file>', 'file to write')
    .option('--expect <digest>', 'sha256:<hex> or sha512:<hex> the result must have; nothing is written otherwise')
    .option('--max-size <size>', 'the largest result accepted (e.g. 512MiB, 50GiB); past it, the apply stops and nothing is written', DEFAULT_MAX_SIZE)
    // VCDIFF states no total size: a plain one cut between two windows is a whole, shorter delta
    .addHelpText('after', '\nA plain VCDIFF (delta --compression none, xdelta3 -S none) cut at the end of one of its\nwindows reads as a whole, shorter one: without --expect, a truncated plain delta can give a\nshort file and exit 0. A gzip or brotli delta cut anywhere is refused.')
    .action(async (deltaFile: string, flags: { base: string; output: string; expect?: string; maxSize: string }) => {
      const expected = flags.expect === undefined ? undefined : parseDigestString(flags.expect);
      const maxSize = parseSizeFlag('--max-size', flags.maxSize);
      await requireInput(deltaFile, 'file', 'delta');
      await requireInput(flags.base, 'file', 'base');
      await requireOutput(flags.output);
      const digest = await writeAtomically(flags.output, async (partial) => {
        // hashed in the expected digest's own algorithm too (sha512 is accepted)
        const decoded = await decodeVcdiffToFile(flags.base, deltaChunks(deltaFile), partial, expected ? [expected.algo] : [], maxSize).catch((err: unknown) => {
          // the one size this decode is given is the bound, not a size the delta should have
          if (err instanceof SizeMismatchError) throw new FleetError('FC_ERR_TOO_LARGE', `${deltaFile} rebuilds more than ${formatBytes(maxSize)} (--max-size): nothing written`);
          throw err;
        });
        if (expected) {
          const got = decoded.digests[expected.algo];
          if (got !== expected.hex) throw new DigestMismatchError(formatDigest(expected), `${expected.algo}:${got}`);
        }
        return `sha256:${decoded.digests['sha256']}\t${decoded.size}`;
      });
      process.stdout.write(`${digest}\t${flags.output}\n`);
    });
}
