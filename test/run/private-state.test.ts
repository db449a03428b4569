// What a run leaves on the controller's disk, ships and prints, against other local users
// and the machines: its data directory (project tars of the base cache, the embedded caches'
// copies of the project and the artifacts, local machines) is its user's alone, whoever made
// it first; the token file it reads is not shipped with the project; a cache URL's
// credentials reach neither the run's log nor its report.
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildCacheServer } from '../../src/cache/server.js';
import { DEFAULT_MAX_SIZE, DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { nobody, tempDirNobodyReaches } from '../helpers/nobody.js';
import { startOrigin } from '../helpers/origin.js';
import { cliArgs } from '../helpers/processes.js';
import { LOCAL, project, run, spreadYaml, writeProject } from './project.js';

/** A project whose tree holds a file only its owner may read (0600), as a key or a .env often is. */
async function projectWithSecret(t: Test): Promise<string> {
  const dir = await project(t, spreadYaml('secretive', LOCAL));
  await writeFile(join(dir, 'credentials.txt'), 'not for other users\n', { mode: 0o600 });
  await chmod(join(dir, 'credentials.txt'), 0o600);
  return dir;
}

/** A fleet file naming `origin` and one cache of region `local` at `cacheUrl`. */
async function fleetFile(dir: string, origin: string, cacheUrl: string): Promise<string> {
  const file = join(dir, '..', 'fleet.yaml');
  await writeFile(file, `origin: ${origin}\nregions:\n  local:\n    caches: [${cacheUrl}]\ndispatchDelay: 0s\n`);
  return file;
}

async function startCache(t: Test, dir: string, upstream: string): Promise<string> {
  const app = await buildCacheServer({ region: 'local', upstream, dataDir: join(dir, '..', 'cache-local'), maxSize: DEFAULT_MAX_SIZE, timeouts: DEFAULT_TIMEOUTS, mirrors: new Map(), logLevel: 'silent' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const addr = app.server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

/** The names in the project tar the run's base cache (`<dir>/cache/bases`) kept: what went to the origin and the machines. */
async function baseTarNames(dir: string): Promise<string[]> {
  const bases = join(dir, 'cache', 'bases');
  const tar = (await readdir(bases)).find((f) => f.endsWith('.tar'))!;
  return execFileSync('tar', ['-tf', join(bases, tar)], { encoding: 'utf8' }).split('\n');
}

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

// One run with a configured fleet for the four checks below, each of its own part of what the
// run kept, printed or shipped: its token files (the flag's overriding the configuration's)
// both kept in the project, its cache's URL holding credentials.
t.test('a run with a configured fleet: its data directory, log, report and shipped project', async (t) => {
  const dir = await projectWithSecret(t);
  // the machine's tree lacks both token files, or the job fails
  await writeFile(join(dir, 's/t/task.yaml'), 'summary: t\nexecute: test ! -e "$SPREAD_PATH/.fleet-token" && test ! -e "$SPREAD_PATH/.override-token" && test -f "$SPREAD_PATH/spread.yaml"\n');
  const origin = await startOrigin(t, { dataDir: join(dir, '..', 'origin') });
  const cacheUrl = (await startCache(t, dir, origin.url)).replace('http://', 'http://alice:hunter2@');
  // the configuration's file (a token being rotated out, say) is still a write token; the
  // flag's (--token-file) overrides it
  await writeFile(join(dir, '.fleet-token'), `${origin.token}\n`, { mode: 0o600 });
  const fleet = await fleetFile(dir, origin.url, cacheUrl);
  await writeFile(fleet, `${await readFile(fleet, 'utf8')}tokenFile: ${join(dir, '.fleet-token')}\n`);
  const tokenFile = join(dir, '.override-token');
  await writeFile(tokenFile, `${origin.token}\n`, { mode: 0o600 });
  const { result, out } = await run(dir, [], { fleetFile: fleet, tokenFile });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'the machine had the project without either token file');
  const data = join(dir, 'cache');

  t.test('it keeps its data directory (the base cache\'s project tars) to its user', async (t) => {
    t.ok((await readdir(join(data, 'bases'))).some((f) => f.endsWith('.tar')), 'the base cache holds the project tar (credentials.txt in it)');
    t.equal(await modeOf(data), 0o700, 'no other user reaches the data directory');
  });

  t.test('the credentials of a cache URL reach neither the run\'s log nor its report', async (t) => {
    t.match(out, /pulls through http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:\d+\/? /, 'the log names the cache, credentials hidden');
    t.notMatch(out, /hunter2/, 'not in the run\'s log');
    t.notMatch(JSON.stringify(result.ledger), /hunter2/, 'not in the ledger');
    const reports = join(data, 'reports');
    for (const f of await readdir(reports)) t.notMatch(await readFile(join(reports, f), 'utf8'), /hunter2/, `not in ${f}`);
  });

  const names = await baseTarNames(dir);
  t.test('a token file kept in the project (--token-file) is not shipped: the write token reaches no machine, no base', async (t) => {
    t.ok(names.includes('spread.yaml'), 'the base holds the project');
    t.notOk(names.includes('.override-token'), 'the base (public at the origin) does not hold the write token');
  });

  t.test("the fleet configuration's token file kept in the project is not shipped when --token-file overrides it either", async (t) => {
    t.notOk(names.includes('.fleet-token'), 'nor the base');
  });
});

// One run on the embedded default for both checks below.
t.test('a run on the embedded default: its data directory and shipped project', async (t) => {
  const dir = await projectWithSecret(t);
  // the job fails if the machine's tree holds either leftover
  await writeFile(join(dir, 's/t/task.yaml'), 'summary: t\nexecute: test ! -e "$SPREAD_PATH/.fleetcache-reuse.json.tmp" && test -z "$(ls -A "$SPREAD_PATH" | grep fleetcache-timings)" && test -f "$SPREAD_PATH/spread.yaml"\n');
  await writeFile(join(dir, '.fleetcache-reuse.json.tmp'), '{"machines":[{"backend":"b","system":"s","address":"h","password":"secret"}]}\n', { mode: 0o600 });
  // named by the process that wrote it (Timings.save): not this run's
  await writeFile(join(dir, '.fleetcache-timings.json.4242.tmp'), '{"version":1,"jobs":{},"seeds":{}}\n');
  const data = join(dir, 'cache');
  // as a run with a fleet left it before, or a directory made by hand (--data)
  await mkdir(data, { mode: 0o755 });
  await chmod(data, 0o755);
  const { result, out } = await run(dir);
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'the machine had the project without the leftovers');

  t.test('the embedded default keeps a data directory an earlier run left open to others to its user', async (t) => {
    // the region cache keeps the project (and artifacts) 0644, as every cache keeps public content
    t.ok((await readdir(join(data, 'region-local'))).length > 0, 'the embedded cache kept its copies');
    t.equal(await modeOf(data), 0o700, 'no other user reaches the embedded caches\' copies of the project');
  });

  t.test('the temp files a run killed mid-write left are not shipped: the reuse file\'s (machines\' passwords in it) and the timings file\'s (between its write and its rename)', async (t) => {
    const names = await baseTarNames(dir);
    t.ok(names.includes('spread.yaml'), 'the base holds the project');
    t.notOk(names.includes('.fleetcache-reuse.json.tmp'), "nor the reuse file's temp file");
    t.notOk(names.includes('.fleetcache-timings.json.4242.tmp'), "nor the timings file's");
  });
});

const user = nobody();
t.test('a data directory of another user\'s is refused by name, nothing put in it', { skip: typeof user === 'string' ? user : false }, async (t) => {
  if (typeof user === 'string') return;
  // where the unprivileged user reaches: the temp directory, not the test's own
  const base = await tempDirNobodyReaches(t, 'fleetcache-private-state-', false);
  const dir = await writeProject(join(base, 'project'), spreadYaml('theirs', LOCAL), { 's/t': 'summary: t\nexecute: echo\n' });
  // root's, open to all (0777): written into, its owner would read the embedded origin's token
  const data = join(base, 'shared');
  await mkdir(data);
  await chmod(data, 0o777);
  const res = spawnSync(process.execPath, cliArgs(['run', '--data', data]), { cwd: dir, uid: user.uid, gid: user.gid, encoding: 'utf8', timeout: 60_000 });
  t.equal(res.status, 3, 'configuration (exit 3), as any data directory that cannot be made or written');
  t.match(res.stderr, `data directory ${data}: permission denied`);
  t.same(await readdir(data), [], 'nothing of the run is in it');
});
