// `fleetcache verify`: hashes every blob of an origin's store again (origin/verify.ts). Reading
// needs no lock, so it runs beside a live origin; --remove takes the data directory, as the
// origin does, so it refuses while one runs there.
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { FleetError, NotFoundError } from '../errors.js';

interface VerifyFlags {
  config?: string;
  data?: string;
  remove?: boolean;
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description("Hash every blob of an origin's store again and list those that do not match their digest")
    .option('-c, --config <file>', "the origin's YAML configuration (its storage and data directory)")
    .option('--data <dir>', "the origin's data directory (default: the configuration's, else cache/origin)")
    .option('--remove', 'delete each damaged blob (read whole, another digest), so that its next upload stores it again; one that cannot be read is kept (not while an origin runs on the data directory)')
    .addHelpText('after', [
      '',
      'Prints one tab-separated line per damaged blob: digest, size, what it hashes to (or why it cannot',
      'be read), removed|kept; then a summary. Exit 0: every blob matches; 5: some do not; 3: the data',
      'directory is in use (--remove while an origin runs), or the S3 bucket does not exist or refuses the',
      'credentials (naming the field); 4: there is no data directory at that path.',
      'A blob deleted between the listing and its read (a live origin pruning) is skipped, counted in the summary.',
    ].join('\n'))
    .action(async (flags: VerifyFlags) => {
      // the configuration's parser and the stores load once the command runs, not for --help
      const [{ createBlobStore, loadOriginConfig }, { verifyStore }, { lockDataDir }] = await Promise.all([import('./origin.js'), import('../origin/verify.js'), import('../store/dir-lock.js')]);
      const config = await loadOriginConfig(flags.config);
      const dataDir = resolve(flags.data ?? config.data);
      // A mistyped path would otherwise check 0 blobs and pass: an origin's data directory has its store (cas.v1, made at its first start).
      if (config.storage.type === 'disk' && !(await stat(join(dataDir, 'cas.v1')).catch(() => undefined))?.isDirectory()) {
        throw new NotFoundError(`no origin data directory at ${dataDir} (no cas.v1 in it)`);
      }
      const lock = flags.remove ? await lockDataDir(dataDir) : undefined;
      try {
        const store = await createBlobStore(config.storage, dataDir, process.env, flags.config);
        const result = await verifyStore(store, {
          remove: flags.remove === true,
          onDamaged: (b) => process.stdout.write(`${b.digest}\t${b.size}\t${b.found}\t${b.removed ? 'removed' : 'kept'}\n`),
        });
        const removed = result.damaged.filter((b) => b.removed).length;
        const gone = result.gone > 0 ? `; ${result.gone} deleted since listed, skipped` : '';
        process.stdout.write(`checked ${result.checked} blobs, ${result.bytes} bytes: ${result.damaged.length} damaged${flags.remove ? `, ${removed} removed` : ''}${gone}\n`);
        if (result.damaged.length > 0) throw new FleetError('FC_ERR_DIGEST_MISMATCH', `${result.damaged.length} of ${result.checked} blobs do not match their digest`);
      } finally {
        await lock?.release();
      }
    });
}
