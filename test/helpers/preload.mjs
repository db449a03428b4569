// Loaded into every test process (package.json, tap's node-arg), after tap's own imports.
//
// tap hands each test process an import of @tapjs/processinfo in NODE_OPTIONS, for the
// processes a test starts (a CLI, a cache worker, an agent run by the local backend) to
// record the files they load, for coverage. This suite takes none (disable-coverage), and
// patches/@tapjs+processinfo*.patch has the import record nothing then, but a process
// still loads it: children start as a user's would, with the NODE_OPTIONS the test process
// was given and none of processinfo's variables.
//
// `npm test` runs the suite compiled to JavaScript (scripts/build-tests.mjs); a test file
// run from its source (`npx tap test/x.test.ts`) gets tsx's loader here. A compiled one is
// refused when a source or an input of the build was saved after the compiled tree was
// built (one walk of src/ and test/ mtimes: about 12 ms of CPU for 485 files, under 4 s over
// a run of 300 test files).
import { staleTestBuild } from '../../scripts/test-build-stamp.mjs';

const PROCESSINFO = /@tapjs[\\/]processinfo[\\/]/;
const kept = (process.env.NODE_OPTIONS ?? '').split(/\s+/).filter((option) => option !== '' && !PROCESSINFO.test(option));
if (kept.length > 0) process.env.NODE_OPTIONS = kept.join(' ');
else delete process.env.NODE_OPTIONS;
for (const name of Object.keys(process.env)) if (name.startsWith('_TAPJS_PROCESSINFO_')) delete process.env[name];

if (process.argv[1]?.endsWith('.ts')) await import('tsx');
else if (process.argv[1] !== undefined) {
  const stale = staleTestBuild(process.argv[1]);
  // TAP's "Bail out!" ends the whole tap run with the reason in its summary: every other
  // compiled file would check old code too.
  if (stale !== undefined) {
    process.stdout.write(`Bail out! ${stale}\n`);
    process.exit(1);
  }
}
