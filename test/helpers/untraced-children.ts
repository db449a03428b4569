// Loaded into every test process (package.json, tap's node-arg), after tap's own imports.
//
// tap loads @tapjs/processinfo into each test process, and through process-on-spawn into
// every process a test starts, and theirs: a CLI, a cache worker, an agent run by the
// local backend. It records the files each loads, for coverage, which this suite does not
// take (disable-coverage), and costs a node process about 0.4 s of CPU at start, 0.7 s for
// the bundled CLI, whose source maps it reads: most of the time of a short command.
// Children start as a user's would, with the NODE_OPTIONS the test process was given.
import processOnSpawn from 'process-on-spawn';

processOnSpawn.removeAllListeners();
const PROCESSINFO = /@tapjs[\\/]processinfo[\\/]/;
const kept = (process.env.NODE_OPTIONS ?? '').split(/\s+/).filter((option) => option !== '' && !PROCESSINFO.test(option));
if (kept.length > 0) process.env.NODE_OPTIONS = kept.join(' ');
else delete process.env.NODE_OPTIONS;
for (const name of Object.keys(process.env)) if (name.startsWith('_TAPJS_PROCESSINFO_')) delete process.env[name];
