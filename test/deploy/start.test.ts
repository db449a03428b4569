// The deployment as systemd runs it: each unit's ExecStart, with the environment, the
// credential and the configuration the unit gives it (deploy/origin.yaml against a real S3
// server, each deploy/regions/<region>.yaml as fleetcache-cache@<region>), started with the
// real CLI. It prints `listening`, answers /-/healthz as its role and the scrape of
// OPERATIONS.md's Prometheus configuration, and on systemd's SIGTERM
// (sent to every process of the unit: a cache's workers too) finishes what is in flight and
// exits 0, which Restart=on-failure leaves stopped, within the unit's TimeoutStopSec, past
// which systemd would kill it. The examples in config/ start as their comments run them
// (a cache as one process).
// The schema tests (deploy.test.ts, examples.test.ts) load these files; this starts them.
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { resolveCacheConfig } from '../../src/cache/config.js';
import { loadCacheConfig } from '../../src/cache/config-file.js';
import { originOptionsFrom } from '../../src/cli/origin.js';
import { loadConfigFile } from '../../src/config/load.js';
import { parseDuration } from '../../src/config/units.js';
import { DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../../src/http/server-options.js';
import { OriginConfigSchema } from '../../src/origin/config.js';
import { descendantsOf, REPO_ROOT, startServerProcess, type RunningServer } from '../helpers/processes.js';
import { headOnlyPut } from '../helpers/raw-http.js';
import { S3RVER_CREDENTIALS, startS3rver } from '../helpers/s3rver.js';

// The three tests share nothing (servers, directories and ports of their own): run at once,
// the caches start and stop while the origin's drain waits out the deployed shutdownTimeout
// (20 s of the file's 40 s of wall, idle).
t.jobs = 3;

const DEPLOY = join(REPO_ROOT, 'deploy');
const CONFIG = join(REPO_ROOT, 'config');
const TOKEN = 'a-write-token-of-32-characters!!';

/** The values of every `key=` line of a unit, in order. */
function directives(unit: string, key: string): string[] {
  return [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
}

interface HostPaths {
  /** The unit's instance name (%i). */
  readonly instance?: string;
  /** The credentials directory (%d). */
  readonly credentials?: string;
  /** Where each /etc/fleetcache/<file> the command names is here. */
  readonly etc: (file: string) => string;
  readonly data: string;
}

/** The unit's ExecStart arguments after `fleetcache.js`, its host paths and specifiers replaced by the test's. */
function execStartArgs(t: Test, unit: string, paths: HostPaths): string[] {
  const [command] = directives(unit, 'ExecStart');
  const args = /^\/usr\/bin\/node \/opt\/fleetcache\/bin\/fleetcache\.js (.*)$/.exec(command ?? '')?.[1];
  if (!t.ok(args, `ExecStart runs the CLI with node: ${command}`)) return [];
  const argv = args!.split(' ').map((arg) => arg
    .replaceAll('%i', paths.instance ?? '%i')
    .replace(/^%d\//, paths.credentials === undefined ? '%d/' : `${paths.credentials}/`)
    .replace(/^\/etc\/fleetcache\/(\S+)$/, (_all, file: string) => paths.etc(file))
    .replace(/^\/var\/lib\/\S+$/, paths.data));
  t.notMatch(argv.join(' '), /%|\/etc\/|\/var\//, `every specifier and host path replaced: ${argv.join(' ')}`);
  return argv;
}

/** The environment the unit's Environment= lines give. */
function unitEnvironment(unit: string): Record<string, string> {
  return Object.fromEntries(directives(unit, 'Environment').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/** The unit's TimeoutStopSec, in ms. */
function timeoutStopMs(t: Test, unit: string): number {
  const [value] = directives(unit, 'TimeoutStopSec');
  t.ok(value, `TimeoutStopSec=${value}`);
  return parseDuration(value ?? '0s');
}

async function healthOf(url: string): Promise<unknown> {
  const res = await request(`${url}/-/healthz`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  return res.body.json();
}

/** The path OPERATIONS.md's Prometheus scrape configuration reads. */
const METRICS_PATH = /^\s+metrics_path: (\S+)$/m.exec(readFileSync(join(DEPLOY, 'OPERATIONS.md'), 'utf8'))?.[1] ?? 'none in OPERATIONS.md';

/** Whether `url` answers the scrape of OPERATIONS.md with Prometheus text of fleetcache's series. */
async function scraped(url: string): Promise<boolean> {
  const res = await request(`${url}${METRICS_PATH}`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await res.body.text();
  return res.statusCode === 200 && /^text\/plain/.test(String(res.headers['content-type'])) && /^# TYPE fleetcache_\S+ counter$/m.test(text);
}

/**
 * Sends SIGTERM as systemd's default KillMode=control-group does, to the server and every
 * process under it at once, and resolves with its exit code and how long it took.
 */
async function stopAsSystemd(server: RunningServer): Promise<{ code: number | null; ms: number }> {
  const { child } = server;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = Date.now();
  for (const pid of [child.pid!, ...descendantsOf(child.pid!)]) process.kill(pid, 'SIGTERM');
  const code = await exited;
  return { code, ms: Date.now() - started };
}

t.test('the origin unit with deploy/origin.yaml, its S3 storage on a real S3 server: starts, and on SIGTERM finishes an upload in flight, cuts a stalled one and exits 0 within TimeoutStopSec', async (t) => {
  const unit = readFileSync(join(DEPLOY, 'systemd', 'fleetcache-origin.service'), 'utf8');
  const deployed = readFileSync(join(DEPLOY, 'origin.yaml'), 'utf8');
  const config = loadConfigFile(OriginConfigSchema, join(DEPLOY, 'origin.yaml'));
  if (config.storage.type !== 's3') return t.fail(`deploy/origin.yaml keeps its blobs on S3: ${config.storage.type}`);
  const { accessKeyIdEnv, secretAccessKeyEnv } = config.storage;
  if (!accessKeyIdEnv || !secretAccessKeyEnv) return t.fail('deploy/origin.yaml names the variables of its S3 credentials');
  // LoadCredential=NAME:PATH copies PATH to %d/NAME, readable by the service only.
  const credential = /^([^:]+):\/etc\/fleetcache\/\S+$/.exec(directives(unit, 'LoadCredential')[0] ?? '')?.[1];
  if (!credential) return t.fail(`the token comes as a credential from /etc/fleetcache: ${directives(unit, 'LoadCredential').join(', ')}`);
  const s3 = await startS3rver(t, config.storage.bucket);
  const dir = t.testdir({ conf: {}, credentials: {} });
  // As the host has it, but for the S3 endpoint: the test's server.
  const withEndpoint = deployed.replace(/^(\s+endpoint:\s*)\S+/m, `$1${s3.endpoint}`);
  t.not(withEndpoint, deployed, 'the S3 endpoint pointed at the test server');
  writeFileSync(join(dir, 'conf', 'origin.yaml'), withEndpoint);
  writeFileSync(join(dir, 'credentials', credential), `${TOKEN}\n`);
  chmodSync(join(dir, 'credentials', credential), 0o400);
  // EnvironmentFile= holds the S3 credentials, under the names the configuration gives.
  t.ok(directives(unit, 'EnvironmentFile').length > 0, 'the S3 credentials come from an environment file');
  const s3Env = { [accessKeyIdEnv]: S3RVER_CREDENTIALS.accessKeyId, [secretAccessKeyEnv]: S3RVER_CREDENTIALS.secretAccessKey };
  const argv = execStartArgs(t, unit, { credentials: join(dir, 'credentials'), etc: (file) => join(dir, 'conf', file), data: join(dir, 'data') });
  const stopLimit = timeoutStopMs(t, unit);
  const { options } = originOptionsFrom(config, { tokenFile: join(dir, 'credentials', credential) });
  const shutdownMs = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  t.ok(shutdownMs + 5000 <= stopLimit, `the drain (${shutdownMs} ms) ends well within TimeoutStopSec (${stopLimit} ms)`);

  const origin = await startServerProcess(t, [...argv, '--listen', '127.0.0.1:0'], { ...unitEnvironment(unit), ...s3Env });
  t.same(await healthOf(origin.url), { status: 'ok', role: 'origin' });
  t.ok(await scraped(origin.url), `Prometheus scrapes ${METRICS_PATH}`);
  const upload = async (body: Buffer) => {
    const path = `/cas/sha256/${createHash('sha256').update(body).digest('hex')}`;
    const put = await headOnlyPut(origin.url, path, TOKEN, body.length);
    put.socket.write(body.subarray(0, body.length / 2));
    return { put, path, rest: body.subarray(body.length / 2) };
  };
  const finishing = await upload(Buffer.alloc(64 * 1024, 'a'));
  const stalled = await upload(Buffer.alloc(64 * 1024, 'b'));
  const stopping = stopAsSystemd(origin);
  await sleep(500);
  finishing.put.socket.write(finishing.rest);
  const { code, ms } = await stopping;
  t.match(finishing.put.answer(), /\r\nHTTP\/1\.1 201 /, 'the upload that went on during the drain is stored');
  t.notMatch(stalled.put.answer(), /\r\nHTTP\/1\.1 201 /, 'the stalled one is not');
  finishing.put.socket.destroy();
  stalled.put.socket.destroy();
  t.equal(code, 0, 'exit 0: Restart=on-failure leaves it stopped');
  t.ok(ms >= shutdownMs - 1000 && ms < stopLimit, `stopped after the drain (${shutdownMs} ms) and before systemd would kill it (${stopLimit} ms): ${ms} ms`);
});

t.test('the cache unit, one instance per deploy/regions/<region>.yaml: starts as its region, and exits 0 on SIGTERM to every process of the unit, no worker replaced', async (t) => {
  const unit = readFileSync(join(DEPLOY, 'systemd', 'fleetcache-cache@.service'), 'utf8');
  const stopLimit = timeoutStopMs(t, unit);
  const regions = readdirSync(join(DEPLOY, 'regions')).filter((f) => f.endsWith('.yaml')).map((f) => f.replace(/\.yaml$/, '')).sort();
  t.ok(regions.length > 0, `regions: ${regions.join(', ')}`);
  for (const region of regions) {
    const config = resolveCacheConfig(loadCacheConfig(join(DEPLOY, 'regions', `${region}.yaml`)));
    const shutdownMs = config.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
    t.ok(shutdownMs + 5000 <= stopLimit, `${region}: the drain (${shutdownMs} ms) ends well within TimeoutStopSec (${stopLimit} ms)`);
    const data = join(t.testdir(), 'data');
    // The unit reads /etc/fleetcache/cache-<region>.yaml, which is deploy/regions/<region>.yaml.
    const argv = execStartArgs(t, unit, { instance: region, etc: (file) => join(DEPLOY, 'regions', file.replace(/^cache-/, '')), data });
    const cache = await startServerProcess(t, [...argv, '--listen', '127.0.0.1:0'], unitEnvironment(unit));
    t.same(await healthOf(cache.url), { status: 'ok', role: 'cache', region }, `${region}: answers as its region`);
    t.ok(await scraped(cache.url), `${region}: Prometheus scrapes ${METRICS_PATH}`);
    t.equal(descendantsOf(cache.child.pid!).length, config.workers, `${region}: ${config.workers} workers`);
    const { code, ms } = await stopAsSystemd(cache);
    t.equal(code, 0, `${region}: exit 0`);
    t.ok(ms < stopLimit, `${region}: stopped within TimeoutStopSec: ${ms} ms`);
    t.notMatch(cache.stderr(), /cache worker died|worker .* before listening/, `${region}: no worker taken for dead`);
  }
});

t.test('the examples in config/ start as their comments run them, on the data and token they are given (a cache as one process: --workers 1)', async (t) => {
  const dir = t.testdir({ tokens: `${TOKEN}\n` });
  chmodSync(join(dir, 'tokens'), 0o600);
  const servers: [file: string, args: string[], health: object][] = [
    ['origin.yaml', ['origin', '--token-file', join(dir, 'tokens')], { status: 'ok', role: 'origin' }],
    ...readdirSync(CONFIG).filter((f) => /^cache-.*\.yaml$/.test(f)).map((f): [string, string[], object] =>
      // One process per cache: the examples' `workers: auto` starts a primary and a worker per
      // CPU, each costing a cache start's CPU, which the deploy units above start and stop.
      [f, ['cache', '--workers', '1'], { status: 'ok', role: 'cache', region: resolveCacheConfig(loadCacheConfig(join(CONFIG, f))).region }]),
  ];
  for (const [file, args, health] of servers) {
    const data = join(dir, file.replace(/\.yaml$/, ''));
    mkdirSync(data);
    const server = await startServerProcess(t, [...args, '--config', join(CONFIG, file), '--data', data, '--listen', '127.0.0.1:0']);
    t.same(await healthOf(server.url), health, `config/${file}`);
    t.equal((await stopAsSystemd(server)).code, 0, `config/${file}: exit 0 on SIGTERM`);
  }
});
