// `fleetcache assets add | upload | fetch`: a fetch as a real child process (stdout and
// stderr not a TTY: no progress bar, one tab-separated line per file) and one on a
// pseudo-terminal; the other runs through main() in this process, as the process runs it.
import t from 'tap';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { formatBytes } from '../../src/config/units.js';
import { cliArgs } from '../helpers/processes.js';
import { startOrigin } from '../helpers/origin.js';
import { pacedProxy } from '../helpers/paced-proxy.js';
import { compress, makeTar, runCli, runHere, sha512 } from './helpers.js';

t.test('add, upload, fetch with a cache folder, then a failing fetch', async (t) => {
  const root = t.testdir({ work: {}, origin: {}, dest: {}, dest2: {} });
  const work = join(root, 'work');
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  const tgz = compress(await makeTar([{ name: 'sdk/VERSION', body: '1.2.3\n' }]), 'gz');
  await writeFile(join(work, 'sdk.tar.gz'), tgz);
  await writeFile(join(work, 'notes.txt'), 'internal notes');
  await writeFile(join(work, 'token'), `${origin.token}\n`);

  const add1 = await runHere(['assets', 'add', 'notes.txt', '-m', 'manifest.tt', '--visibility', 'internal'], work);
  t.equal(add1.code, 0, add1.stderr);
  const add2 = await runHere(['assets', 'add', 'sdk.tar.gz', '-m', 'manifest.tt', '--unpack', '--asset-version', 'sdk 1.2.3', '--visibility', 'public'], work);
  t.equal(add2.code, 0, add2.stderr);
  t.equal(add2.stdout, `sdk.tar.gz\t${tgz.length}\tsha512:${sha512(tgz)}\n`);
  const manifest = JSON.parse(readFileSync(join(work, 'manifest.tt'), 'utf8')) as Record<string, unknown>[];
  t.match(manifest, [{ filename: 'sdk.tar.gz', unpack: true, version: 'sdk 1.2.3', visibility: 'public' }, { filename: 'notes.txt', visibility: 'internal' }], 'the last added first');

  const noToken = await runHere(['assets', 'upload', '-m', 'manifest.tt', '--url', origin.url], work);
  t.equal(noToken.code, 7, 'upload without a token: the missing-token exit code, as push (docs/errors.md)');
  t.match(noToken.stderr, /^fleetcache: error: assets upload needs a token: --token-file FILE, --authentication-file FILE or \$FLEETCACHE_TOKEN\n$/);
  const up = await runHere(['assets', 'upload', '-m', 'manifest.tt', '--url', origin.url, '--token-file', 'token'], work);
  t.equal(up.code, 0, up.stderr);
  t.equal(up.stdout, `sdk.tar.gz\tuploaded\t${tgz.length}\tpublic\nnotes.txt\tuploaded\t14\tinternal\n`);

  const args = ['assets', 'fetch', '-m', join(work, 'manifest.tt'), '--url', origin.url, '--cache-folder', join(root, 'cache')];
  const fetched = await runCli(t, [...args, '--token-file', join(work, 'token')], join(root, 'dest'));
  t.equal(fetched.code, 0, fetched.stderr);
  t.equal(fetched.stdout, `sdk.tar.gz\tdownload\t${tgz.length}\t${tgz.length}\t0\t${origin.url}\ttar.gz\nnotes.txt\tdownload\t14\t14\t0\t${origin.url}\t-\n`);
  t.equal(readFileSync(join(root, 'dest', 'sdk', 'VERSION'), 'utf8'), '1.2.3\n', 'unpacked in the current directory');
  t.notMatch(fetched.stderr, /\x1b\[/, 'no progress bar when stderr is not a terminal');

  const warm = await runHere(['assets', 'fetch', '-m', join(work, 'manifest.tt'), '--cache-folder', join(root, 'cache')], join(root, 'dest2'));
  t.equal(warm.code, 0, 'a warm cache folder needs neither the network (nor a --url) nor the token');
  t.match(warm.stdout, /^sdk\.tar\.gz\tcache\t/m);
  t.match(warm.stdout, /^notes\.txt\tcache\t/m);

  const denied = await runHere(['assets', 'fetch', '-m', join(work, 'manifest.tt'), '--url', origin.url, '--dest', join(root, 'dest3')], root);
  t.equal(denied.code, 1, 'an internal file without a token: exit 1, as tooltool (not the catalogue\'s 7)');
  t.match(denied.stdout, /^notes\.txt\tfailed\t/m);
  t.match(denied.stderr, /HTTP 401/);
  t.ok(existsSync(join(root, 'dest3', 'sdk.tar.gz')), 'the public file still arrived');
  t.notOk(existsSync(join(root, 'dest3', 'notes.txt')));

  const offline = await runHere(['assets', 'fetch', '-m', join(work, 'manifest.tt')], join(root, 'dest3'));
  t.equal(offline.code, 1, 'no --url for a file not present: exit 1, as any failure of fetch');
  t.match(offline.stdout, /^sdk\.tar\.gz\tpresent\t/m, 'what is present needs no --url');
  t.match(offline.stderr, /notes\.txt: not present and no --url to fetch it from/);
});

t.test('fetch gives up on a --url that trickles (a cache) at the machines\' speed floor, for the next URL: --cache-timeout sets its window', async (t) => {
  const root = t.testdir({ work: {}, origin: {}, dest: {} });
  const work = join(root, 'work');
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  await writeFile(join(work, 'big.bin'), randomBytes(64 * 1024));
  await writeFile(join(work, 'token'), `${origin.token}\n`);
  t.equal((await runHere(['assets', 'add', 'big.bin', '-m', 'manifest.tt', '--visibility', 'public'], work)).code, 0);
  const up = await runHere(['assets', 'upload', '-m', 'manifest.tt', '--url', origin.url, '--token-file', 'token'], work);
  t.equal(up.code, 0, up.stderr);
  // a byte every 100 ms: never silent for the 1 s timeout, 10 bytes/s (64 KiB in almost two hours)
  const cache = await pacedProxy(t, origin.url, () => true, { bytes: 1, everyMs: 100 });
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const fetched = await Promise.race([
    runHere(['assets', 'fetch', '-m', join(work, 'manifest.tt'), '--url', cache, '--url', origin.url, '--cache-timeout', '1s'], join(root, 'dest')),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('still fetching after 20 s')), 20_000))),
  ]).finally(() => clearTimeout(timer)); // a pending timer would keep the file's process alive
  t.equal(fetched.code, 0, fetched.stderr);
  // bytes downloaded: the file's, and the few the cache trickled before it was given up on
  t.match(fetched.stdout, new RegExp(`^big\\.bin\\tdownload\\t${64 * 1024}\\t\\d+\\t0\\t${origin.url.replace(/\./g, '\\.')}\\t-\\n$`), 'from the origin, the last URL');
  t.match(fetched.stderr, /slower than 16 KiB\/s over 2 s/, 'the floor named');
  t.ok(Date.now() - started < 12_000, `within seconds (${Date.now() - started} ms)`);
});

t.test('a record tooltool would skip is named by manifest file, line and record', async (t) => {
  const root = t.testdir({ work: {} });
  const work = join(root, 'work');
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  await writeFile(join(work, 'manifest.tt'), `[\n  {"filename": "nosize.bin", "algorithm": "sha512", "digest": "${sha512('x')}"}\n]\n`);
  const res = await runHere(['assets', 'fetch', '-m', 'manifest.tt', '--url', origin.url], work);
  t.equal(res.code, 0, 'skipped, as tooltool does');
  t.equal(res.stdout, '');
  t.match(res.stderr, /^fleetcache: warning: manifest\.tt:2: record 0 lacks size and is skipped \(as tooltool does\)\n$/);

  // Elements that are not objects are dropped the same way, and a version that is not a string is no error.
  await writeFile(join(work, 'here.txt'), 'here');
  const record = { filename: 'here.txt', size: 4, algorithm: 'sha512', digest: sha512('here'), version: 2 };
  await writeFile(join(work, 'lenient.tt'), `[\n  "not a record",\n  null,\n  ${JSON.stringify(record)}\n]\n`);
  const lenient = await runHere(['assets', 'fetch', '-m', 'lenient.tt', '--url', origin.url], work);
  t.equal(lenient.code, 0, lenient.stderr);
  t.equal(lenient.stdout, `here.txt\tpresent\t4\t0\t0\t-\t-\n`);
  t.equal(lenient.stderr, 'fleetcache: warning: lenient.tt:2: record 0 is not an object and is skipped (as tooltool does)\nfleetcache: warning: lenient.tt:3: record 1 is not an object and is skipped (as tooltool does)\n');
});

t.test('fetch on a terminal draws a bar per file with its size, known from the manifest', async (t) => {
  const root = t.testdir({ dest: {} });
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  const content = randomBytes(192 * 1024);
  await writeFile(join(root, 'big.bin'), content);
  await writeFile(join(root, 'token'), `${origin.token}\n`);
  t.equal((await runHere(['assets', 'add', 'big.bin', '-m', 'manifest.tt', '--visibility', 'public'], root)).code, 0);
  t.equal((await runHere(['assets', 'upload', '-m', 'manifest.tt', '--url', origin.url, '--token-file', 'token'], root)).code, 0);
  // util-linux script: the CLI on a pseudo-terminal, what it draws on our stdout
  const command = [process.execPath, ...cliArgs(['assets', 'fetch', '-m', join(root, 'manifest.tt'), '--url', origin.url, '--dest', join(root, 'dest')])]
    .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
    .join(' ');
  const { stdout } = await promisify(execFile)('script', ['-qec', command, '/dev/null'], { env: { ...process.env, FLEETCACHE_LOG_LEVEL: 'warn' }, timeout: 60_000 });
  t.match(stdout, `100% | ${formatBytes(content.length)} of ${formatBytes(content.length)}`);
});
