// fleetcache's own numeric options take decimal digits only: a value Number() would have read
// as some other number (1e1 as 10, 0x2 as 2, " 3 " as 3) is a usage error naming the option.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { EXIT } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'fc-decimal-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const NOT_DECIMAL = ['1e1', '0x2', '0b11', '0o7', ' 3 ', '3.0', '+3', '3_0', '', '99999999999999999999'];

const options: Array<[string, string[], RegExp]> = [
  ['run --workers', ['run', '--workers'], /--workers needs a whole number of at least 1, in decimal digits, not "/],
  ['cache --workers', ['cache', '--upstream', 'http://127.0.0.1:9', '--data', path.join(dir, 'data'), '--workers'], /--workers: expected a number from 1 to \d+ in decimal digits, or "auto", got "/],
  ['delta --level', ['delta', path.join(dir, 'new'), '--base', path.join(dir, 'base'), '-o', path.join(dir, 'out'), '--level'], /--level must be 1-9, got "/],
  ['push --level', ['push', dir, '--project', 'p', '--origin', 'http://127.0.0.1:9', '--level'], /--level must be 1-9, got "/],
];

for (const [name, args, message] of options) {
  t.test(`${name}: only decimal digits`, async (t) => {
    for (const bad of NOT_DECIMAL) {
      const { code, stderr } = await runCli([...args, bad]);
      t.equal(code, EXIT.usage, JSON.stringify(bad));
      t.match(stderr, message, JSON.stringify(bad));
      t.match(stderr, `"${bad}"`, `the value as given: ${JSON.stringify(bad)}`);
    }
  });
}
