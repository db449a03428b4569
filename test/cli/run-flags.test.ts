// spread's single-dash flags reach commander, and bad values are usage errors (exit 2).
import t from 'tap';
import { normaliseSpreadFlags } from '../../src/cli/run.js';
import { runCli } from '../helpers/cli.js';
import { EXIT } from '../../src/errors.js';

t.test("spread's spellings", async (t) => {
  t.same(normaliseSpreadFlags(['run', '-seed=3', '-vv', '-artifacts', 'out', '-repeat', '2', '-abend', '-pass', 'pw', 'tests/', '-v']), [
    'run', '--seed=3', '--vv', '--artifacts', 'out', '--repeat', '2', '--abend', '--pass', 'pw', 'tests/', '-v',
  ]);
  // a filter that happens to start with a dash is left alone unless it is one of spread's flags
  t.same(normaliseSpreadFlags(['run', '-seedless']), ['run', '-seedless']);
});

t.test('a bad --repeat is a usage error', async (t) => {
  const { code, stderr } = await runCli(['run', '--repeat', 'lots']);
  t.equal(code, EXIT.usage);
  t.match(stderr, /--repeat needs a whole number, not "lots"/);
});

t.test('a --seed that is not a whole number is a usage error, not seed 0', async (t) => {
  for (const args of [['--seed', 'abc'], ['-seed=abc'], ['--seed', '1.5'], ['--seed=']]) {
    const { code, stderr } = await runCli(['run', ...normaliseSpreadFlags(args)]);
    t.equal(code, EXIT.usage, args.join(' '));
    t.match(stderr, /--seed needs a whole number, not "/, args.join(' '));
  }
});
