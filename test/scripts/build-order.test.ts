// `npm run build` writes dist/ before it checks the types: a type error (an unused variable,
// which noUnusedLocals makes one) still fails the build, but no longer leaves the dist/ of
// an older source for the tests and commands run after it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { REPO_ROOT } from '../helpers/processes.js';

const BUILD_STEPS = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: { build: string } }).scripts.build.split('&&').map((step) => step.trim());

t.test('the build writes dist/ (CLI, agent, addon) before its type check, which is its last step', async (t) => {
  const typeCheck = BUILD_STEPS.findIndex((step) => step === 'node scripts/check-types.mjs');
  t.equal(typeCheck, BUILD_STEPS.length - 1, `the type check is last: ${BUILD_STEPS.join(' && ')}`);
  for (const script of ['build-cli.mjs', 'build-agent.mjs', 'build-native.mjs']) {
    const at = BUILD_STEPS.findIndex((step) => step === `node scripts/${script}`);
    t.ok(at >= 0 && at < typeCheck, `${script} runs before the type check`);
  }
});
