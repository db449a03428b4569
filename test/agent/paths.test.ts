// A build's freshness against the repository's src/, from wherever the tests run: through
// tsx from test/, or compiled under .test-build/ (scripts/build-tests.mjs, what `npm test`
// and CI run), whose own src/ holds no .ts file to compare with.
import { statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { olderThanSources } from '../../src/agent/paths.js';
import { REPO_ROOT } from '../helpers/processes.js';

t.test('a build older than a file of src/ is stale; one newer than all of them is not', async (t) => {
  const built = join(t.testdir(), 'built.js');
  writeFileSync(built, '');
  const sourceAt = statSync(`${REPO_ROOT}src/agent/paths.ts`).mtimeMs / 1000;
  utimesSync(built, sourceAt - 1, sourceAt - 1);
  t.ok(await olderThanSources(built), 'built a second before src/agent/paths.ts: stale');
  const afterAll = Date.now() / 1000 + 3600;
  utimesSync(built, afterAll, afterAll);
  t.notOk(await olderThanSources(built), 'built after every source: current');
});
