// The origin's token file: one write token per line, blank lines and # comments skipped (a
// comment line was a token anyone could send), short tokens refused by line, and a warning
// when the file is readable by others.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { exposedSecretWarning, readTokenFile, readTokenLines, resolveToken } from '../../src/client/token.js';
import { resolveOriginTokens } from '../../src/cli/origin.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

const TOKEN = 'a-long-enough-write-token-1234';

t.test('tokens, comments and short lines', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'tokens');
  writeFileSync(file, `# rotated 2026-12\n${TOKEN}\n\n  # old one below, remove after the 15th\n  ${TOKEN}-2  \n`);
  t.same(readTokenLines(file), [TOKEN, `${TOKEN}-2`]);
  writeFileSync(file, `${TOKEN}\nsecret\n`);
  t.throws(() => readTokenLines(file), { code: 'FC_ERR_CONFIG', message: `${file}:2: a write token must be at least 16 characters` }, 'named by line, not by its text');
  writeFileSync(file, '# nothing here\n');
  t.throws(() => readTokenLines(file), { code: 'FC_ERR_CONFIG', message: /has no token/ });
  chmodSync(file, 0o600);
  t.equal(exposedSecretWarning(file), undefined);
  chmodSync(file, 0o644);
  t.equal(exposedSecretWarning(file), `${file} can be read by others than its owner (mode 0644): chmod 600 it`);
});

// One origin process for both: what it checks of its token file and what it stores do not meet.
t.test('a real origin: a comment is no token, a readable token file is warned of, and what it stores is not readable by other local users, whatever the umask it was started with', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'tokens');
  writeFileSync(file, `#comment\n${TOKEN}\n`, { mode: 0o644 });
  chmodSync(file, 0o644);
  const previous = process.umask(0o022); // the children inherit it
  t.teardown(() => void process.umask(previous));
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', join(dir, 'data'), '--token-file', file]);
  const put = (token: string) => request(`${origin.url}/artifacts/r/j/f.txt`, { method: 'PUT', body: 'x', headers: { authorization: `Bearer ${token}` } }).then((r) => r.body.dump().then(() => r.statusCode));
  t.equal(await put('#comment'), 403, 'a comment line is not a token');
  t.equal(await put(TOKEN), 201);
  await eventually('the warning', () => /can be read by others than its owner \(mode 0644\)/.test(origin.stderr()));
  t.notMatch(origin.stderr(), new RegExp(TOKEN), 'the token is not logged');
  const body = 'an internal asset';
  const hex = createHash('sha256').update(body).digest('hex');
  const res = await request(`${origin.url}/cas/sha256/${hex}?visibility=internal`, { method: 'PUT', body, headers: { authorization: `Bearer ${TOKEN}` } });
  await res.body.dump();
  t.equal(res.statusCode, 201);
  const modes = execFileSync('find', [join(dir, 'data'), '-newer', file, '-printf', '%m %p\n'], { encoding: 'utf8' }).trim().split('\n');
  t.ok(modes.length > 2, `${modes.length} files and directories made`);
  t.same(modes.filter((line) => (parseInt(line, 8) & 0o007) !== 0), [], 'none readable by others');
});

t.test('FLEETCACHE_TOKEN is held to the same length as a token file line, and never printed', async (t) => {
  const { resolveOriginTokens } = await import('../../src/cli/origin.js');
  const dir = t.testdir();
  const before = process.env.FLEETCACHE_TOKEN;
  t.teardown(() => {
    if (before === undefined) delete process.env.FLEETCACHE_TOKEN;
    else process.env.FLEETCACHE_TOKEN = before;
  });
  process.env.FLEETCACHE_TOKEN = 'short-secret';
  t.throws(() => resolveOriginTokens(undefined, dir), { code: 'FC_ERR_CONFIG', message: 'FLEETCACHE_TOKEN: a write token must be at least 16 characters' });
  process.env.FLEETCACHE_TOKEN = TOKEN;
  t.same(resolveOriginTokens(undefined, dir).tokens, [TOKEN]);
});

t.test("a client reads a token file as the origin does: the server's own file works as it is", async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'tokens');
  writeFileSync(file, `# rotated 2026-12\n\n  ${TOKEN}  \n${TOKEN}-2\n`);
  t.equal(readTokenFile(file), TOKEN, 'the first token, comments and blank lines skipped');
  writeFileSync(file, `${TOKEN} and more\n`);
  t.throws(() => readTokenFile(file), { code: 'FC_ERR_CONFIG', message: `${file}:1: a token is one word of visible characters (no spaces, ASCII or Latin-1; a comment line starts with #)` }, 'not sent as a header undici refuses (exit 6)');
  writeFileSync(file, `tökenabcdefghijklmnop\n`);
  t.equal(readTokenFile(file), 'tökenabcdefghijklmnop', 'Latin-1, which a header carries, as before');
  writeFileSync(file, '\n');
  t.throws(() => readTokenFile(file), { code: 'FC_ERR_CONFIG', message: `${file}: token file has no token (it is empty)` });
  const saved = process.env.FLEETCACHE_TOKEN;
  t.teardown(() => (saved === undefined ? delete process.env.FLEETCACHE_TOKEN : (process.env.FLEETCACHE_TOKEN = saved)));
  process.env.FLEETCACHE_TOKEN = `${TOKEN}\nsecond`;
  t.throws(() => resolveToken(), { code: 'FC_ERR_USAGE', message: /^\$FLEETCACHE_TOKEN is not one word/ });
  t.throws(() => resolveOriginTokens(undefined, dir), { code: 'FC_ERR_CONFIG', message: /^\$FLEETCACHE_TOKEN is not one word/ }, 'the origin refuses it alike');
});

/** Milliseconds between two tries: each child is back waiting well before the next one. */
const TRY_INTERVAL_MS = 10;

/** Spun, not slept, before each try: a sleeper wakes that much late at most (on an idle core). */
const SPIN_MS = 2;

/**
 * Runs resolveOriginTokens on each of `dataDirs` in turn in a process of its own, the i-th
 * once the clock reaches `startAt` + i tries' interval (each sleeps until SPIN_MS before,
 * then spins: two such processes call it within microseconds, and a child does not spin
 * through the whole interval, most of a core for two seconds). One line of JSON per directory.
 */
function tokensInChild(dataDirs: string[], startAt: number): Promise<string[]> {
  const module = new URL('../../src/cli/origin.js', import.meta.url).href;
  const script = `const { resolveOriginTokens } = await import(${JSON.stringify(module)});
const dataDirs = ${JSON.stringify(dataDirs)};
const asleep = new Int32Array(new SharedArrayBuffer(4));
for (let i = 0; i < dataDirs.length; i++) {
  const at = ${startAt} + i * ${TRY_INTERVAL_MS};
  const sleep = at - ${SPIN_MS} - Date.now();
  if (sleep > 0) Atomics.wait(asleep, 0, 0, sleep);
  while (Date.now() < at);
  try { console.log(JSON.stringify(resolveOriginTokens(undefined, dataDirs[i]).tokens)); }
  catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); }
}`;
  const env = { ...process.env };
  delete env.FLEETCACHE_TOKEN;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { env, timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim().split('\n'))));
  });
}

t.test('two origins making the token of one new data directory at once agree on it', async (t) => {
  const root = t.testdir();
  const tries = 200;
  const dataDirs = Array.from({ length: tries }, (_, i) => join(root, `data-${i}`));
  const startAt = Date.now() + 600; // after both children have loaded the module
  const [a, b] = await Promise.all([tokensInChild(dataDirs, startAt), tokensInChild(dataDirs, startAt)]);
  t.equal(a.length, tries, 'one answer per try');
  for (let i = 0; i < tries; i++) {
    const token = JSON.parse(a[i] ?? 'null') as unknown;
    if (!Array.isArray(token) || token[0]?.length < 16 || a[i] !== b[i]) {
      t.fail(`try ${i}: ${a[i]} and ${b[i]}`);
      return;
    }
  }
  t.pass('each pair read one whole token');
});
