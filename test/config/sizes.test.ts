// Sizes as deploy/OPERATIONS.md ("Sizing the disk") documents them: binary K/M/G/T as nginx's
// and systemd's, decimal KB/MB/GB/TB, IEC KiB…, any case, a space allowed; anything else refused.
import t from 'tap';
import { join } from 'node:path';
import { loadCacheConfig } from '../../src/cache/config-file.js';
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

t.test('decimals go with a unit: a fraction of a byte (a unit left out, "1.5" for 1.5GiB) is refused, not taken as 1 byte', async (t) => {
  for (const text of ['1.5', '1.5B', '4096.0', '0.5 b']) t.throws(() => parseSize(text), { code: 'FC_ERR_USAGE', message: /a number of bytes is whole; a fraction needs a unit/ }, text);
  t.same(['1.5K', '0.5 KiB', '2.25MB'].map(parseSize), [1536, 512, 2_250_000], 'with a unit, decimals are taken');
  const file = join(t.testdir({ 'cache.yaml': 'upstream: http://127.0.0.1:9\nfillMemory: "1.5"\n' }), 'cache.yaml');
  t.throws(() => loadCacheConfig(file), { code: 'FC_ERR_CONFIG', message: `${file}:2: fillMemory: must be a size (e.g. 4096, 512MiB, 50GiB)` }, 'a configuration\'s field: refused at start, naming file, line and field');
});
