// A command's --help, and the program's, load no more than the command line needs: not the
// servers (fastify), the HTTP client (undici), the configuration's parsers (ajv, yaml), the
// runner's SSH (ssh2), the AWS SDK, the packer (tar-stream). Each start of a one-shot command on a machine, and each
// `--help`, paid for all of them. Nor does a multi-process cache's primary load the server
// its workers run, nor a run on the local backend ssh2 (the runner forks itself for every
// script, at a cost that grows with its RSS), nor a cache undici's fetch and WebSocket,
// nor Node's http2, https and tls, nor fastify's schema compilers' fast-json-stringify and
// JTD ajv, its semver, pino's thread-stream, prom-client's @opentelemetry/api
// (scripts/lazy-modules.mjs).
// The child logs every module Node loads; a
// chunk of the build stands for the modules its source map names. The commands' --help, then
// a cache with a broken --config, a run on the local backend, list and a run on an adhoc
// backend, run one after the other in one process: what one loads stays loaded, so a package
// any of them loads is seen, on the first that loads it; the program's --help, which lists the
// commands, runs first, and the one step meant to load ssh2 (the adhoc run) last.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cliArgs } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { spawnWorkersCache } from '../cache/spawn-workers-cache.js';

/** Packages only the command's work needs, never its usage. */
const NOT_FOR_HELP = ['fastify', 'undici', 'ajv', 'yaml', 'ssh2', '@aws-sdk/client-s3', 'pino', 'prom-client', '@sinclair/typebox', 'tar-stream'];

const LOADED = 'fleetcache-test-loaded ';
const BUILTINS = 'fleetcache-test-builtins ';

/** A module registering a load hook that prints each file's URL on stderr, after the PID of the process loading it. */
function loadLogger(dir: string): string {
  const hooks = `export async function load(url, context, next) { if (url.startsWith('file:')) process._rawDebug(${JSON.stringify(LOADED)} + process.pid + ' ' + url); return next(url, context); }`;
  const file = join(dir, 'log-loads.mjs');
  // and, at exit, the builtins it loaded (their require() passes no load hook)
  const builtins = `process.on('exit', () => process._rawDebug(${JSON.stringify(BUILTINS)} + process.pid + ' ' + process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)).join(' ')));`;
  writeFileSync(file, `import { register } from 'node:module';\nregister(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});\n${builtins}\n`);
  return file;
}

/** The files `pid` loaded, from the lines of loadLogger's hook in `stderr` (every process's, by default). */
function loadedFiles(stderr: string, pid?: number): string[] {
  const lines = stderr.split('\n').filter((line) => line.startsWith(LOADED)).map((line) => line.slice(LOADED.length).split(' '));
  return lines.filter(([by]) => pid === undefined || Number(by) === pid).map(([, url]) => fileURLToPath(url!));
}

function runLogged(logger: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // every command's --help and a run in one process: ~10 s on a loaded machine, 2 minutes at most
    execFile(process.execPath, ['--import', logger, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${args.join(' ')}: ${err.message}\n${stderr}`));
      resolve({ stdout, stderr });
    });
  });
}

const STEP = 'fleetcache-test-step ';
const EXIT = 'fleetcache-test-exit ';

/** A command line run after the helps, in `cwd` (the driver's directory by default). */
interface Step { readonly name: string; readonly args: readonly string[]; readonly cwd?: string }

/** What one step loaded first, wrote (stdout, then stderr: not interleaved) and exited with. */
interface StepResult { readonly files: string[]; readonly out: string; readonly code: number }

/**
 * `fleetcache --help`, then `fleetcache <command> --help` for each command it lists, then
 * `steps`, one after the other in one process (the CLI's entry module imported anew for each,
 * its chunks once); each one's result, by name ('--help': the program's, a command's name for
 * its --help).
 */
async function stepsInOneProcess(dir: string, logger: string, steps: readonly Step[]): Promise<Map<string, StepResult>> {
  const [bin] = cliArgs([]);
  const driver = join(dir, 'steps.mjs');
  writeFileSync(driver, `const run = async (name, args, cwd) => {
  process._rawDebug(${JSON.stringify(STEP)} + name);
  process.stdout.write(${JSON.stringify(STEP)} + name + '\\n');
  process.chdir(cwd);
  process.argv = [process.argv[0], ${JSON.stringify(bin)}, ...args];
  await import(${JSON.stringify(pathToFileURL(bin!).href)} + '?' + encodeURIComponent(name));
  process._rawDebug(${JSON.stringify(EXIT)} + (process.exitCode ?? 0));
  process.exitCode = 0;
};
const out = [];
const write = process.stdout.write;
process.stdout.write = (chunk, ...rest) => { out.push(String(chunk)); return write.call(process.stdout, chunk, ...rest); };
await run('--help', ['--help'], process.cwd());
process.stdout.write = write;
const commands = [...out.join('').split('\\nCommands:\\n')[1].matchAll(/^  ([a-z]+)\\b/gm)].map((m) => m[1]).filter((name) => name !== 'help');
for (const command of commands) await run(command, [command, '--help'], process.cwd());
for (const { name, args, cwd } of ${JSON.stringify(steps.map((step) => ({ ...step, cwd: step.cwd ?? dir })))}) await run(name, args, cwd);
`);
  const { stdout, stderr } = await runLogged(logger, [driver]);
  const outOf = new Map(stdout.split(STEP).slice(1).map((part) => [part.slice(0, part.indexOf('\n')), part.slice(part.indexOf('\n') + 1)]));
  const results = new Map<string, StepResult>();
  for (const part of stderr.split(STEP).slice(1)) {
    const name = part.slice(0, part.indexOf('\n'));
    const lines = part.split('\n');
    const exit = lines.find((line) => line.startsWith(EXIT));
    const written = lines.slice(1).filter((line) => !line.startsWith(LOADED) && !line.startsWith(BUILTINS) && !line.startsWith(EXIT)).join('\n');
    results.set(name, { files: loadedFiles(part), out: `${outOf.get(name) ?? ''}\n${written}`, code: Number(exit?.slice(EXIT.length) ?? NaN) });
  }
  return results;
}

const mapSources = new Map<string, string[]>();

/** `files`, each chunk of the bundle as the sources its source map names. */
function sourcesOf(files: readonly string[]): string[] {
  return files.flatMap((file) => {
    if (!file.includes('/dist/cli/')) return [file];
    let sources = mapSources.get(file);
    if (!sources) mapSources.set(file, (sources = (JSON.parse(readFileSync(`${file}.map`, 'utf8')) as { sources: string[] }).sources));
    return sources;
  });
}

/** The packages of node_modules among `files`, or among the sources of the bundle's chunks. */
function packagesOf(files: readonly string[]): Set<string> {
  const packages = new Set<string>();
  for (const source of sourcesOf(files)) {
    const name = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(source)?.[1];
    if (name) packages.add(name);
  }
  return packages;
}

/** A project at `dir` of one task on one backend (`backend`: its fields, lines of YAML). */
function writeProject(dir: string, backend: string): void {
  mkdirSync(join(dir, 'tests', 't1'), { recursive: true });
  writeFileSync(join(dir, 'spread.yaml'), `project: small\npath: /home/small\nbackends:\n  machines:\n${backend}    systems:\n      - alpha-1:\n          workers: 1\nsuites:\n  tests/:\n    summary: tasks\n`);
  writeFileSync(join(dir, 'tests', 't1', 'task.yaml'), 'summary: t1\nexecute: |\n  echo ok\n');
}

const CACHE_CONFIG = 'cache --config (a syntax error)';
const LOCAL_RUN = 'run (a local backend)';
const LIST = 'list (an adhoc backend)';
const ADHOC_RUN = 'run (an adhoc backend)';

/** The one logged process of the helps and the steps below, in a directory of the file's own. */
const logged = (() => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetcache-start-modules-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'cache.yaml'), 'upstream: [unclosed\n');
  writeProject(join(dir, 'local'), '    type: local\n');
  writeProject(join(dir, 'adhoc'), '    type: adhoc\n    allocate: FATAL no machines here\n');
  return stepsInOneProcess(dir, loadLogger(dir), [
    // the file's syntax error stops the cache once the file is parsed: no server to stop
    { name: CACHE_CONFIG, args: ['cache', '--config', join(dir, 'cache.yaml'), '--data', join(dir, 'data')] },
    { name: LOCAL_RUN, args: ['run'], cwd: join(dir, 'local') },
    // list checks the backends' options (those of adhoc too) and creates none
    { name: LIST, args: ['list'], cwd: join(dir, 'adhoc') },
    // last, the one step that loads ssh2; a failed run is an answer too: what it loaded is asked all the same
    { name: ADHOC_RUN, args: ['run'], cwd: join(dir, 'adhoc') },
  ]);
})();
void logged.catch(() => undefined); // the tests report it

/** What the step `name` of the logged process did; a step that did not run fails every check. */
const stepOf = async (name: string): Promise<StepResult> => (await logged).get(name) ?? { files: [], out: '', code: NaN };

t.test("--help, and each command's --help, load none of what the commands' work needs", async (t) => {
  const each = await logged;
  const steps = new Set([CACHE_CONFIG, LOCAL_RUN, LIST, ADHOC_RUN]);
  const commands = [...each.keys()].filter((name) => name !== '--help' && !steps.has(name));
  t.ok(commands.length > 1, `commands listed: ${commands.join(' ')}`);
  const runs: Array<[string, string[]]> = [['--help', each.get('--help')?.files ?? []], ...commands.map((command): [string, string[]] => [`${command} --help`, each.get(command)?.files ?? []])];
  for (const [what, files] of runs) {
    t.ok(files.length > 0, `${what}: loads were logged`);
    const loaded = packagesOf(files);
    t.same(NOT_FOR_HELP.filter((name) => loaded.has(name)), [], `${what} loads none of ${NOT_FOR_HELP.join(', ')}`);
  }
});

/** What a server's packages require at load and src/ never uses, each handed a stand-in. */
const LAZY_IN_SERVERS = ['semver/index.js', 'fast-json-stringify/index.js', 'ajv/dist/jtd.js', 'thread-stream/index.js', '@opentelemetry/api/dist/index.cjs'];

/** The cache's server: its routes, its fills, its dashboard, what only a process that serves runs. */
const SERVER_SOURCES = ['cache/server.ts', 'cache/fills.ts', 'cache/fill.ts', 'cache/context.ts', 'ui/dashboard.ts', 'cli/listen.ts'];

t.test("a --workers cache's primary, which serves nothing, loads none of the server, nor fastify; its workers do", async (t) => {
  const dir = t.testdir();
  const logger = loadLogger(dir);
  const { child, stop, stdout, stderr } = spawnWorkersCache(t, '127.0.0.1:0', join(dir, 'data'), ['--import', logger]);
  await eventually('the cache listening', () => {
    if (child.exitCode !== null) throw new Error(`the cache exited (${child.exitCode}): ${stderr().slice(-2000)}`);
    return stdout().startsWith('listening ');
  }, 60_000);
  await stop();
  const serverIn = (pid?: number) => SERVER_SOURCES.filter((name) => sourcesOf(loadedFiles(stderr(), pid)).some((source) => source.endsWith(`src/${name}`)));
  t.same(serverIn(), SERVER_SOURCES, 'the workers load the server (the check sees it)');
  t.same(serverIn(child.pid), [], 'the primary loads none of it');
  t.ok(packagesOf(loadedFiles(stderr())).has('fastify'), 'the workers load fastify');
  t.notOk(packagesOf(loadedFiles(stderr(), child.pid)).has('fastify'), 'the primary does not');
  // started from flags alone: no file to parse, so no YAML parser (the next test shows the check sees it)
  t.notOk(packagesOf(loadedFiles(stderr())).has('yaml'), 'no process of a cache started from flags loads yaml');
  // undici's clients, not its index.js, which runs fetch, WebSocket, cookies and the mocks (scripts/undici-core.cjs)
  const undici = sourcesOf(loadedFiles(stderr())).filter((source) => /node_modules\/undici\//.test(source));
  t.ok(undici.some((source) => source.endsWith('undici/lib/dispatcher/pool.js')), 'the cache loads undici\'s Pool (the check sees undici)');
  const notNeeded = /undici\/(?:index\.js|lib\/(?:mock|cache|web\/(?:websocket|cookies|cache|fetch\/index\.js)))/;
  t.same(undici.filter((source) => notNeeded.test(source)), [], 'nor undici\'s index.js, its fetch, WebSocket, cookies, cache stores or mocks');
  // fastify's HTTP/2 and HTTPS servers, undici's HTTP/2 client: loaded when used (scripts/lazy-modules.mjs)
  const builtins = stderr().split('\n').filter((line) => line.startsWith(BUILTINS)).map((line) => line.split(' ').slice(2));
  t.ok(builtins.length > 1 && builtins.every((names) => names.includes('http')), 'every process logged its builtins, http among them (the check sees them)');
  t.same([...new Set(builtins.flat())].filter((name) => ['http2', 'https', 'tls'].includes(name)), [], 'none loads http2, https or tls');
  // what fastify, pino and prom-client require at load for what src/ never uses (response
  // schemas, JTD schemas, plugins naming fastify versions, transports, exemplars; the
  // origin's default metrics share the cache's chunk of prom-client): a stand-in in their place, which
  // evaluates the package on first use (scripts/lazy-modules.mjs)
  const standIns = sourcesOf(loadedFiles(stderr())).filter((source) => source.startsWith('lazy-modules:'));
  t.ok(standIns.some((source) => source.endsWith('/undici/lib/dispatcher/client-h2.js')), "undici's HTTP/2 client is a stand-in (the check sees them)");
  for (const lazy of LAZY_IN_SERVERS) t.ok(standIns.some((source) => source.endsWith(`/node_modules/${lazy}`)), `${lazy} is a stand-in, evaluated when first used`);
});

t.test('a cache given a --config file loads yaml to read it', async (t) => {
  const cache = await stepOf(CACHE_CONFIG);
  t.equal(cache.code, 3, 'the configuration error exits 3');
  t.ok(packagesOf(cache.files).has('yaml'), 'yaml is loaded');
});

t.test('a run on the local backend, and list, load no ssh2; a run on a backend reached over SSH does', async (t) => {
  const local = await stepOf(LOCAL_RUN);
  t.match(local.out, /Successful tasks: 1\b/, 'the local run ran its task');
  t.notOk(packagesOf(local.files).has('ssh2'), 'the local run loads no ssh2');
  const list = await stepOf(LIST);
  t.match(list.out, /t1/, 'list listed the task');
  t.notOk(packagesOf(list.files).has('ssh2'), 'list loads no ssh2, even for an adhoc backend');
  const adhoc = await stepOf(ADHOC_RUN);
  t.match(adhoc.out, /no machines here/, 'the adhoc run created its backend');
  t.ok(packagesOf(adhoc.files).has('ssh2'), 'the adhoc run loads ssh2 (the check sees it)');
});
