// The cache's request ids (serve.ts newRequestId) name one request among all the
// processes of a multi-process cache: each worker numbers its requests from 1, so the
// numbers alone repeat from worker to worker, and a log line's reqId would not say which.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { newRequestId } from '../../src/cache/serve.js';
import { REPO_ROOT } from '../helpers/processes.js';

const run = promisify(execFile);

/** The first request ids of a new process, as a worker takes them. */
async function firstIdsOfAProcess(): Promise<string[]> {
  const script = "const { newRequestId } = await import('./src/cache/serve.ts'); console.log(JSON.stringify([newRequestId(), newRequestId()]))";
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT });
  return JSON.parse(stdout) as string[];
}

t.test('request ids differ between processes, and within one', async (t) => {
  const [a, b] = await Promise.all([firstIdsOfAProcess(), firstIdsOfAProcess()]);
  t.equal(new Set([...a!, ...b!]).size, 4, `two processes: ${[...a!, ...b!].join(', ')}`);
  const here = Array.from({ length: 1000 }, () => newRequestId());
  t.equal(new Set(here).size, here.length, 'one process: each its own');
  for (const id of [...a!, ...b!, here[0]!]) t.match(id, /^req-[0-9a-z]+-[0-9a-z]+$/, `${id}: req-<process>-<number>`);
});
