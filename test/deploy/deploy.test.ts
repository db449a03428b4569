// The files in deploy/ are what operators copy: the configurations must load with the
// real schemas, and the units must keep their hardening.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfigFile } from '../../src/config/load.js';
import { resolveCacheConfig } from '../../src/cache/config.js';
import { loadCacheConfig } from '../../src/cache/config-file.js';
import { OriginConfigSchema } from '../../src/origin/config.js';
import { createBlobStore } from '../../src/cli/origin.js';
import { S3BlobStore } from '../../src/store/s3.js';
import { parseDuration } from '../../src/config/units.js';
import { EXIT } from '../../src/errors.js';
import { deadUrl, serveOnLoopback } from '../helpers/loopback-server.js';
import { startOrigin } from '../helpers/origin.js';
import { cliArgs, REPO_ROOT, startServerProcess, stopWithTest } from '../helpers/processes.js';

const DEPLOY = join(REPO_ROOT, 'deploy');

t.test('the origin configuration loads and selects the S3 store with credentials from the environment', async (t) => {
  const config = loadConfigFile(OriginConfigSchema, join(DEPLOY, 'origin.yaml'));
  t.equal(config.storage.type, 's3');
  await t.rejects(createBlobStore(config.storage, t.testdir(), {}, 'deploy/origin.yaml'), { code: 'FC_ERR_CONFIG', message: /^deploy\/origin\.yaml: storage\.accessKeyIdEnv names/ }, 'refuses to start without the credentials: a configuration error, naming the file');
  const store = await createBlobStore(config.storage, t.testdir(), { FLEETCACHE_S3_ACCESS_KEY_ID: 'k', FLEETCACHE_S3_SECRET_ACCESS_KEY: 's' });
  t.ok(store instanceof S3BlobStore);
});

t.test('three regional caches, one origin', async (t) => {
  const files = readdirSync(join(DEPLOY, 'regions')).filter((f) => f.endsWith('.yaml')).sort();
  t.equal(files.length, 3);
  const resolved = files.map((f) => resolveCacheConfig(loadCacheConfig(join(DEPLOY, 'regions', f))));
  t.same(resolved.map((c) => c.region), files.map((f) => f.replace(/\.yaml$/, '')), 'each file is named after its region');
  t.equal(new Set(resolved.map((c) => c.upstream)).size, 1, 'one origin');
  for (const c of resolved) t.ok(c.maxSize >= 1024 ** 3, `${c.region}: a real disk budget`);
});

t.test('systemd units are hardened and write only their data directory', async (t) => {
  for (const unit of ['fleetcache-origin.service', 'fleetcache-cache@.service']) {
    const text = readFileSync(join(DEPLOY, 'systemd', unit), 'utf8');
    for (const line of ['DynamicUser=yes', 'ProtectSystem=strict', 'NoNewPrivileges=yes', 'PrivateTmp=yes', 'ProtectHome=yes', 'CapabilityBoundingSet=\n']) {
      t.ok(text.includes(line), `${unit}: ${line.trim()}`);
    }
    const writable = [...text.matchAll(/^ReadWritePaths=(.*)$/gm)].map((m) => m[1]);
    const state = /^StateDirectory=(\S+)$/m.exec(text)?.[1];
    t.same(writable, [`/var/lib/${state}`], `${unit}: only the data directory is writable`);
    t.match(text, new RegExp(`--data /var/lib/${state!.replace(/[%@.]/g, '\\$&')}`), `${unit}: the data flag names that directory`);
    // A stopping signal ends a server with exit 0, which Restart=on-failure leaves stopped:
    // `systemctl reload` must not send one.
    t.notMatch(text, /^ExecReload=.*kill\b.*-(TERM|INT|KILL|15|2|9)\b/m, `${unit}: a reload does not stop the service`);
  }
});

t.test("a configuration error stops the unit instead of restarting it every 2 s: the unit's own command, with a misspelt field, exits with a status the unit does not restart on", async (t) => {
  for (const [unit, misspelt] of [['fleetcache-origin.service', 'listne: 127.0.0.1:0\n'], ['fleetcache-cache@.service', 'upstream: http://127.0.0.1:9\nmaxSzie: 1GiB\n']] as const) {
    const text = readFileSync(join(DEPLOY, 'systemd', unit), 'utf8');
    t.match(text, /^Restart=on-failure$/m, `${unit}: restarts on a failure`);
    const noRestart = [...text.matchAll(/^RestartPreventExitStatus=(.*)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/)).map(Number);
    t.ok(noRestart.includes(EXIT.config), `${unit}: not on a configuration error (exit ${EXIT.config}): RestartPreventExitStatus=${noRestart.join(' ')}`);
    // The unit's ExecStart, with the host's paths (/etc, /var/lib, /opt, the credentials) in a test directory.
    const dir = t.testdir({ tokens: 'a-write-token-of-32-characters!\n' });
    const argv = /^ExecStart=\S+ \/opt\/fleetcache\/bin\/fleetcache\.js (.*)$/m.exec(text)![1]!.split(' ').map((arg) => arg
      .replace(/^\/etc\/fleetcache\/\S+\.yaml$/, join(dir, 'config.yaml'))
      .replace(/^\/var\/lib\/\S+$/, join(dir, 'data'))
      .replace(/^%d\//, `${dir}/`));
    t.notMatch(argv.join(' '), /%|\/etc\/|\/var\//, `${unit}: every host path replaced: ${argv.join(' ')}`);
    writeFileSync(join(dir, 'config.yaml'), misspelt);
    const run = spawnSync(process.execPath, cliArgs(argv), { encoding: 'utf8', timeout: 30_000 });
    t.match(run.stderr, /unknown field/, `${unit}: the error names the field`);
    t.ok(run.status !== null && noRestart.includes(run.status), `${unit}: exit ${run.status}, which the unit does not restart on`);
  }
});

t.test('systemd-analyze verify finds no unknown key or bad value in the units', { skip: spawnSync('systemd-analyze', ['--version']).status === 0 ? false : 'no systemd-analyze here' }, async (t) => {
  // The template is checked as an instance of itself, as systemctl enable would start it.
  const dir = t.testdir();
  for (const [unit, as] of [['fleetcache-origin.service', 'fleetcache-origin.service'], ['fleetcache-cache@.service', 'fleetcache-cache@eu-west.service']] as const) {
    writeFileSync(join(dir, unit), readFileSync(join(DEPLOY, 'systemd', unit)));
    const run = spawnSync('systemd-analyze', ['verify', join(dir, as)], { encoding: 'utf8', timeout: 30_000 });
    t.notMatch(run.stderr, /Unknown (key|section)|Failed to parse|Invalid|[Ii]gnoring/, `${unit}: ${run.stderr.trim() || 'clean'}`);
  }
});

t.test('the container image runs in its volume, which the user it runs as owns: relative paths (the demo\'s cache/) are writable', async (t) => {
  const text = readFileSync(join(DEPLOY, 'Containerfile'), 'utf8');
  const runtime = text.slice(text.lastIndexOf('\nFROM '));
  const last = (instruction: string) => [...runtime.matchAll(new RegExp(`^${instruction} (.+)$`, 'gm'))].at(-1)?.[1];
  const user = last('USER');
  const volume = (JSON.parse(last('VOLUME') ?? '[]') as string[])[0];
  t.ok(user && volume, `runs as ${user}, keeps data on ${volume}`);
  t.equal(last('WORKDIR'), volume, 'the working directory is the volume');
  t.match(runtime, new RegExp(`^RUN .*\\bchown ${user}(:${user})? ${volume}\\b`, 'm'), `${user} owns ${volume}`);
});

t.test("the container image's health check passes while its server answers /-/healthz, and fails on a 404, a dead port or a server that does not answer (its own timeout, shorter than docker's)", async (t) => {
  const text = readFileSync(join(DEPLOY, 'Containerfile'), 'utf8');
  const runtime = text.slice(text.lastIndexOf('\nFROM ')).replace(/\\\n/g, ' ');
  const check = /^HEALTHCHECK (.*?)\bCMD (\[.*\])$/m.exec(runtime);
  if (!check) return t.fail('the runtime stage has a HEALTHCHECK');
  const [program, ...args] = JSON.parse(check[2]!) as string[];
  t.equal(program, 'node', 'run by the image\'s node: the slim image has no curl');
  const dockerTimeoutMs = parseDuration(/--timeout=(\S+)/.exec(check[1]!)?.[1] ?? '30s'); // docker's default
  // Past docker's, the check counts as failed without saying why; node's own start comes first.
  const ownTimeoutMs = Number(/AbortSignal\.timeout\((\d+)\)/.exec(args.join(' '))?.[1]);
  t.ok(ownTimeoutMs <= dockerTimeoutMs / 2, `its request gives up after ${ownTimeoutMs} ms, well within docker's --timeout (${dockerTimeoutMs} ms)`);
  const byDefault = /^ENV FLEETCACHE_HEALTH_URL=(\S+)$/m.exec(runtime)?.[1];
  const exposed = /^EXPOSE (.*)$/m.exec(runtime)?.[1]?.split(/\s+/) ?? [];
  t.ok(byDefault && exposed.includes(new URL(byDefault).port) && new URL(byDefault).pathname === '/-/healthz', `by default, /-/healthz on a port the image exposes: ${byDefault}`);
  const origin = await startOrigin(t);
  const silent = await serveOnLoopback(t, createServer(() => undefined));
  const cases: [url: string, healthy: boolean][] = [[`${origin.url}/-/healthz`, true], [`${origin.url}/-/health`, false], [`${await deadUrl()}/-/healthz`, false], [`${silent}/-/healthz`, false]];
  for (const [url, healthy] of cases) {
    // Not spawnSync: the origin answers from this process. A check that hangs is killed (no exit status).
    const child = spawn(process.execPath, args, { env: { ...process.env, FLEETCACHE_HEALTH_URL: url }, stdio: 'ignore' });
    const stop = stopWithTest(t, child, 'SIGKILL');
    const timer = setTimeout(() => void stop(), 60_000);
    const [status] = await once(child, 'exit') as [number | null];
    clearTimeout(timer);
    t.equal(status, healthy ? 0 : 1, `${url}: ${healthy ? 'healthy' : 'unhealthy'}`);
  }
});

t.test('the install step of OPERATIONS.md builds once: npm ci runs the prepare script, which builds', async (t) => {
  const guide = readFileSync(join(DEPLOY, 'OPERATIONS.md'), 'utf8');
  const command = /`(npm ci\b[^`]*)`/.exec(guide.slice(guide.indexOf('## Installing')))?.[1];
  t.ok(command, `the install command: ${command}`);
  const scripts = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const buildsIn = (step: string): number => {
    if (/^npm run build\b/.test(step)) return 1;
    if (/^npm ci\b/.test(step) && !step.includes('--ignore-scripts')) return /\bnpm run build\b/.test(scripts.prepare ?? '') ? 1 : 0;
    return 0;
  };
  const builds = command!.split('&&').map((step) => buildsIn(step.trim())).reduce((a, b) => a + b, 0);
  t.equal(builds, 1, 'the package is built exactly once');
});

/** The threads of a process (/proc/PID/task). */
const threadsOf = (pid: number): number => readdirSync(`/proc/${pid}/task`).length;

t.test("a cache of one process started with the systemd unit's environment has the thread pool the unit sizes: the cache cannot size it once running", async (t) => {
  const unit = readFileSync(join(DEPLOY, 'systemd', 'fleetcache-cache@.service'), 'utf8');
  const env = Object.fromEntries([...unit.matchAll(/^Environment=([A-Z_]+)=(\S*)$/gm)].map((m) => [m[1]!, m[2]!]));
  const poolSize = Number(env.UV_THREADPOOL_SIZE);
  t.ok(poolSize > 4, `the unit sets a thread pool larger than libuv's 4: ${env.UV_THREADPOOL_SIZE}`);
  const dir = t.testdir();
  const start = (name: string, size: string) => startServerProcess(t, ['cache', '--upstream', 'http://127.0.0.1:9', '--listen', '127.0.0.1:0', '--data', join(dir, name), '--workers', '1'], { ...env, UV_THREADPOOL_SIZE: size });
  const [asUnit, oneThread] = await Promise.all([start('unit', String(poolSize)), start('one', '1')]);
  // Every other thread (V8's, the main one) is the same in both: the difference is the pool's.
  t.equal(threadsOf(asUnit.child.pid!) - threadsOf(oneThread.child.pid!), poolSize - 1, `${poolSize} pool threads, where a pool of 1 has 1`);
});
