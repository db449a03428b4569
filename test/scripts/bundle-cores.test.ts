// The files through which the CLI's bundle takes undici and prom-client (scripts/build-cli.mjs)
// load none of what their index.js runs and a cache does not use; prom-client's default
// metrics (the origin's) load when first asked for. Each is required in a process of its
// own, which reports the files it loaded.
import t from 'tap';
import { execFile } from 'node:child_process';
import { REPO_ROOT } from '../helpers/processes.js';

/** The files of node_modules a fresh process loads to require `core` of scripts/, then to run `then` (code using `core`). */
function loadedBy(core: string, then = ''): Promise<string[]> {
  const script = `const core = require(${JSON.stringify(`${REPO_ROOT}scripts/${core}`)}); ${then}; console.log(JSON.stringify(Object.keys(require.cache)))`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { cwd: REPO_ROOT, timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve((JSON.parse(stdout) as string[]).map((file) => file.replace(/^.*node_modules\//, '')))));
  });
}

t.test("undici-core.cjs loads undici's clients, not its index.js, fetch, WebSocket, cookies, cache stores or mocks", async (t) => {
  const files = await loadedBy('undici-core.cjs');
  t.ok(files.includes('undici/lib/dispatcher/pool.js'), 'it loads the Pool (the check sees undici)');
  t.same(files.filter((file) => /^undici\/(?:index\.js|lib\/(?:mock|cache|web\/(?:websocket|cookies|cache|fetch\/index\.js)))/.test(file)), [], 'none of the rest');
});

t.test("prom-client-core.cjs runs the default metrics, and loads @opentelemetry/api, only when they are asked for", async (t) => {
  const files = await loadedBy('prom-client-core.cjs');
  t.ok(files.includes('prom-client/lib/counter.js'), 'it loads the Counter (the check sees prom-client)');
  t.same(files.filter((file) => /^(?:@opentelemetry\/|prom-client\/(?:index\.js|lib\/defaultMetrics\.js))/.test(file)), [], 'not the default metrics, nor @opentelemetry/api');
  const asked = await loadedBy('prom-client-core.cjs', 'if (typeof core.collectDefaultMetrics !== "function") process.exit(3)');
  t.ok(asked.includes('prom-client/lib/defaultMetrics.js') && asked.some((file) => file.startsWith('@opentelemetry/api/')), 'asked for, they load');
});
