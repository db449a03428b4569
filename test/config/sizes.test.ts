// Sizes as deploy/OPERATIONS.md ("Sizing the disk") documents them: binary K/M/G/T as nginx's
// and systemd's, decimal KB/MB/GB/TB, IEC KiB…, any case, a space allowed; anything else refused.
import t from 'tap';
import { parseSize } from '../../src/config/units.js';

t.test('the documented size forms', async (t) => {
  const GiB = 1024 ** 3;
  const forms: Array<[string, number]> = [
    ['4096', 4096], ['512B', 512],
    ['50g', 50 * GiB], ['50G', 50 * GiB], ['50GiB', 50 * GiB], ['50gib', 50 * GiB], ['512M', 512 * 1024 ** 2], ['1T', 1024 ** 4],
    ['50GB', 50e9], ['50 GB', 50e9], ['1.5GB', 1.5e9], ['64kb', 64_000],
  ];
  for (const [text, bytes] of forms) t.equal(parseSize(text), bytes, text);
  for (const text of ['50 gigs', '50GBs', '-1G', '50Gi', '1,5G']) t.throws(() => parseSize(text), { code: 'FC_ERR_USAGE', message: `invalid size "${text}" (examples: 4096, 512MiB, 50GiB, 1TB)` }, text);
});
