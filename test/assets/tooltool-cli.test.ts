// `fleetcache assets` in tooltool.py's place (shared/tooltool.md §2, §3.4): mozharness's
// exact invocation against a real origin, --region, --authentication-file, the commands
// list, validate and purge on real files, and exit status 1 for any failure, 2 for a bad
// option, as tooltool's optparse gives. mozharness's invocation, a failure (1) and a bad
// option (2) run the CLI as a child process, whose exit status a caller sees; the other
// tests run the same main() in this process (a process each cost 0.3 s of CPU, 76 of them).
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join, relative } from 'node:path';
import { formatManifest, type ManifestRecord } from '../../src/assets/manifest.js';
import { uploadAssets } from '../../src/assets/upload.js';
import { startOrigin } from '../helpers/origin.js';
import { mountTmpfs } from '../helpers/tmpfs.js';
import { BlobServer, compress, makeTar, runCli, runHere, sha512 } from './helpers.js';

const PUBLIC = Buffer.from('a public tool\n');
const INTERNAL = randomBytes(70_000);

function record(filename: string, data: Buffer, visibility: 'public' | 'internal' = 'public'): ManifestRecord {
  return { filename, size: data.length, algorithm: 'sha512', digest: sha512(data), unpack: false, visibility };
}

/** A BlobServer holding `blobs`, stopped in teardown; resolves to it and its URL. */
async function blobServer(t: Test, blobs: Buffer[] = []): Promise<{ server: BlobServer; url: string }> {
  const server = new BlobServer();
  for (const b of blobs) server.blobs.set(sha512(b), b);
  const url = await server.start();
  t.teardown(() => server.stop());
  return { server, url };
}

t.test("mozharness's invocation: options before the command, two URLs, a token file under ~", async (t) => {
  const root = t.testdir({ home: {}, src: {}, work: {}, origin: {} });
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  const records = [record('public.txt', PUBLIC), record('internal.bin', INTERNAL, 'internal')];
  writeFileSync(join(root, 'src', 'public.txt'), PUBLIC);
  writeFileSync(join(root, 'src', 'internal.bin'), INTERNAL);
  const manifest = join(root, 'src', 'manifest.tt');
  writeFileSync(manifest, formatManifest(records));
  await uploadAssets({ manifestPath: manifest, origin: origin.url, token: origin.token, dir: join(root, 'src') });
  // The first URL has nothing (404), as a mirror that has not got the files yet.
  const empty = await blobServer(t);
  writeFileSync(join(root, 'home', 'tooltool-token'), `  ${origin.token}\n`);
  const cache = join(root, 'tooltool-cache');

  const res = await runCli(
    t,
    ['assets', '--url', `${empty.url}/`, '--url', `${origin.url}/`, '--authentication-file', '~/tooltool-token', 'fetch', '-m', manifest, '-o', '-c', cache],
    join(root, 'work'),
    { HOME: join(root, 'home') },
  );
  t.equal(res.code, 0, res.stderr);
  t.ok(readFileSync(join(root, 'work', 'public.txt')).equals(PUBLIC));
  t.ok(readFileSync(join(root, 'work', 'internal.bin')).equals(INTERNAL), 'the internal file: the origin got the token');
  t.equal(res.stdout, `public.txt\tdownload\t${PUBLIC.length}\t${PUBLIC.length}\t0\t${origin.url}/\t-\ninternal.bin\tdownload\t${INTERNAL.length}\t${INTERNAL.length}\t0\t${origin.url}/\t-\n`);
  t.same(readdirSync(cache).sort(), records.map((r) => r.digest).sort(), 'both in the cache folder, by digest');
  t.same(
    empty.server.requests.map((r) => [r.url, r.headers.authorization]),
    records.map((r) => [`/sha512/${r.digest}`, `Bearer ${origin.token}`]),
    'each URL in order, the token file stripped and sent as a bearer token',
  );
});

t.test('-r appends the region as given, not percent-encoded: the query tooltool sends', async (t) => {
  const root = t.testdir({ work: {} });
  const { server, url } = await blobServer(t, [PUBLIC]);
  writeFileSync(join(root, 'manifest.tt'), formatManifest([record('public.txt', PUBLIC)]));
  // tooltool appends "?region=" + R to the URL string (shared/tooltool.md §2): "/", "&", "=" stay as they are
  const res = await runHere(['assets', 'fetch', '-m', '../manifest.tt', '--url', url, '-r', 'eu/west&tier=2'], join(root, 'work'));
  t.equal(res.code, 0, res.stderr);
  t.same(server.requests.map((r) => r.url), [`/sha512/${sha512(PUBLIC)}?region=eu/west&tier=2`]);
});

t.test('-r puts ?region= on every download URL; --authentication-file after the command too', async (t) => {
  const root = t.testdir({ work: {}, plain: {}, 'token.txt': 'opaque-token-42\n\n' });
  const { server, url } = await blobServer(t, [PUBLIC, INTERNAL]);
  writeFileSync(join(root, 'manifest.tt'), formatManifest([record('public.txt', PUBLIC), record('internal.bin', INTERNAL)]));
  const res = await runHere(['assets', 'fetch', '-m', '../manifest.tt', '--url', url, '-r', 'us-west-2', '--authentication-file', join(root, 'token.txt')], join(root, 'work'));
  t.equal(res.code, 0, res.stderr);
  t.same(
    server.requests.map((r) => [r.url, r.headers.authorization]),
    [[`/sha512/${sha512(PUBLIC)}?region=us-west-2`, 'Bearer opaque-token-42'], [`/sha512/${sha512(INTERNAL)}?region=us-west-2`, 'Bearer opaque-token-42']],
  );
  server.requests.length = 0;
  const plain = await runHere(['assets', '--region', 'eu-central-1', 'fetch', '-m', '../manifest.tt', '--url', url, 'public.txt'], join(root, 'plain'));
  t.equal(plain.code, 0, plain.stderr);
  t.same(server.requests.map((r) => [r.url, r.headers.authorization]), [[`/sha512/${sha512(PUBLIC)}?region=eu-central-1`, undefined]], '--region before the command; no token, no Authorization');
});

t.test('--authentication-file ~user/…: that user\'s home from the user database, as expanduser, not $HOME', async (t) => {
  const root = t.testdir({ work: {}, home: {}, 'token.txt': 'user-token\n' });
  const { url, server } = await blobServer(t, [PUBLIC]);
  writeFileSync(join(root, 'manifest.tt'), formatManifest([record('public.txt', PUBLIC)]));
  // The token file by way of the user's home (`~root/../tmp/…`): nothing is written outside the test's directory.
  const me = userInfo();
  const viaHome = `~${me.username}/${relative(me.homedir, join(root, 'token.txt'))}`;
  const res = await runHere(['assets', '--url', url, '--authentication-file', viaHome, 'fetch', '-m', '../manifest.tt'], join(root, 'work'), { HOME: join(root, 'home') });
  t.equal(res.code, 0, res.stderr);
  t.same(server.requests.map((r) => r.headers.authorization), ['Bearer user-token']);
  const unknown = await runHere(['assets', '--url', url, '--authentication-file', '~no-such-user-here/token.txt', 'fetch', '-m', '../manifest.tt'], join(root, 'work'));
  t.equal(unknown.code, 1, 'an unknown user: the path as it is, as expanduser leaves it');
  t.match(unknown.stderr, /~no-such-user-here\/token\.txt/);
});

t.test('a JSON (Taskcluster) credential is never sent: fetch goes on without it (public files come, internal ones are refused), upload refuses it', async (t) => {
  const root = t.testdir({ work: {}, src: {}, origin: {}, 'tc.json': '{"clientId": "project/x", "accessToken": "secret"}\n', token: 't' });
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  writeFileSync(join(root, 'src', 'public.txt'), PUBLIC);
  writeFileSync(join(root, 'src', 'internal.bin'), INTERNAL);
  const both = [record('public.txt', PUBLIC), record('internal.bin', INTERNAL, 'internal')];
  writeFileSync(join(root, 'src', 'manifest.tt'), formatManifest(both));
  await uploadAssets({ manifestPath: join(root, 'src', 'manifest.tt'), origin: origin.url, token: origin.token, dir: join(root, 'src') });
  const tc = join(root, 'tc.json');
  const warning = `fleetcache: warning: ${tc}: the authentication file holds JSON, which tooltool takes for Taskcluster credentials (Hawk authentication); fleetcache sends only bearer tokens: fetching without credentials (a file kept internal is refused)\n`;

  writeFileSync(join(root, 'public.tt'), formatManifest([both[0]!]));
  const pub = await runHere(['assets', '--url', `${origin.url}/`, '--authentication-file', tc, 'fetch', '-m', '../public.tt'], join(root, 'work'));
  t.equal(pub.code, 0, 'a public file needs no credentials, as with tooltool');
  t.equal(pub.stderr, warning, 'said once, naming the file; the secret is not printed');
  t.ok(readFileSync(join(root, 'work', 'public.txt')).equals(PUBLIC));

  writeFileSync(join(root, 'internal.tt'), formatManifest([both[1]!]));
  const internal = await runHere(['assets', '--url', `${origin.url}/`, '--authentication-file', tc, 'fetch', '-m', '../internal.tt'], join(root, 'work'));
  t.equal(internal.code, 1);
  t.match(internal.stderr, /internal\.bin.*HTTP 40[13]/);
  t.notOk(existsSync(join(root, 'work', 'internal.bin')));

  const up = await runHere(['assets', 'upload', '-m', '../src/manifest.tt', '--url', origin.url, '--authentication-file', tc], join(root, 'work'));
  t.equal(up.code, 3, 'a configuration error: no token to upload with');
  t.match(up.stderr, new RegExp(`^fleetcache: error: ${tc}: the authentication file holds JSON, .*Hawk.*bearer tokens: put the token itself in the file`));
  t.notMatch(pub.stderr + internal.stderr + up.stderr, /secret/);

  const twice = await runHere(['assets', '--url', origin.url, '--authentication-file', join(root, 'token'), '--token-file', join(root, 'token'), 'fetch', '-m', '../public.tt'], join(root, 'work'));
  t.equal(twice.code, 1);
  t.match(twice.stderr, /--authentication-file and --token-file both name the token file: give one/);
});

t.test('fetch exits 1 for a file no URL has (404), as tooltool, not 4', async (t) => {
  const root = t.testdir({ work: {} });
  const { url } = await blobServer(t);
  writeFileSync(join(root, 'manifest.tt'), formatManifest([record('public.txt', PUBLIC)]));
  const res = await runCli(t, ['assets', '--url', `${url}/`, 'fetch', '-m', '../manifest.tt', '-o'], join(root, 'work'));
  t.equal(res.code, 1);
  t.equal(res.stdout, `public.txt\tfailed\t${PUBLIC.length}\t0\t0\t-\t-\n`);
  t.match(res.stderr, /HTTP 404/);
  t.match(res.stderr, /fleetcache: error: 1 of 1 files failed\n$/);
  const bad = await runCli(t, ['assets', '--url', `${url}/`, 'fetch', '-m', 'no-such-manifest.tt'], join(root, 'work'));
  t.equal(bad.code, 1, 'a manifest that cannot be read: 1, not 3');
});

t.test('a record with a malformed digest, size or algorithm fails that file only: the others are fetched, exit 1 at the end, as tooltool', async (t) => {
  const root = t.testdir({ work: {} });
  const other = randomBytes(2000);
  const { server, url } = await blobServer(t, [PUBLIC, other]);
  const good = [record('public.txt', PUBLIC), record('other.bin', other)];
  // tooltool takes each of these, asks the server for it, and fails that file alone
  const text = JSON.stringify([
    good[0],
    { ...record('upper.bin', other), digest: sha512(other).toUpperCase() },
    { ...record('sized.bin', other), size: String(other.length) },
    { ...record('algo.bin', other), algorithm: 'sha513' },
    good[1],
  ], null, 2);
  writeFileSync(join(root, 'manifest.tt'), text);
  const res = await runHere(['assets', '--url', `${url}/`, 'fetch', '-m', '../manifest.tt'], join(root, 'work'));
  t.equal(res.code, 1);
  t.ok(readFileSync(join(root, 'work', 'public.txt')).equals(PUBLIC), 'the file before the bad records is fetched');
  t.ok(readFileSync(join(root, 'work', 'other.bin')).equals(other), 'and the file after them');
  t.same(readdirSync(join(root, 'work')).sort(), ['other.bin', 'public.txt'], 'nothing else is written');
  const lineOf = (name: string): number => text.split('\n').findIndex((l) => l.includes(`"${name}"`));
  t.match(res.stderr, `manifest.tt:${lineOf('upper.bin')}: record 1: digest must be 128 lowercase hex characters`);
  t.match(res.stderr, `manifest.tt:${lineOf('sized.bin')}: record 2: size must be a non-negative integer`);
  t.match(res.stderr, `manifest.tt:${lineOf('algo.bin')}: record 3: algorithm "sha513" is not a known hash algorithm`);
  t.same(res.stdout.split('\n').map((l) => l.split('\t').slice(0, 2).join(' ')), ['public.txt download', 'upper.bin failed', 'sized.bin failed', 'algo.bin failed', 'other.bin download', ''], 'in manifest order');
  t.match(res.stderr, /fleetcache: error: 3 of 5 files failed\n$/);
  t.equal(server.requests.length, 2, 'one GET per good file');
  // `fetch FILE...`: a malformed record not named is skipped as the others are, with its error as a warning
  const named = await runHere(['assets', '--url', `${url}/`, 'fetch', '-m', '../manifest.tt', 'public.txt'], join(root, 'work'));
  t.equal(named.code, 0, named.stderr);
  t.match(named.stdout, /^upper\.bin\tskipped\t/m);
  t.match(named.stderr, /warning: upper\.bin: \.\.\/manifest\.tt:\d+: record 1: digest must be/);
});

t.test('list shows a record with a malformed digest as present or not, never valid, exit 0; validate names it and fails: as tooltool', async (t) => {
  const good = Buffer.from('good\n');
  const root = t.testdir({ work: { 'good.bin': good, 'upper.bin': good } });
  const work = join(root, 'work');
  const text = JSON.stringify([
    record('good.bin', good),
    { ...record('upper.bin', good), digest: sha512(good).toUpperCase() },
    record('later.bin', good),
    { ...record('absent.bin', good), size: -1 },
  ], null, 2);
  writeFileSync(join(work, 'manifest.tt'), text);
  const list = await runHere(['assets', 'list', '-v'], work);
  t.equal(list.code, 0, list.stderr);
  t.equal(list.stdout, 'P\tV\tgood.bin\nP\t-\tupper.bin\n-\t-\tlater.bin\n-\t-\tabsent.bin\n', 'in manifest order');
  t.match(list.stderr, /debug: manifest\.tt:\d+: record 1: digest must be 128 lowercase hex/);
  const validate = await runHere(['assets', 'validate'], work);
  t.equal(validate.code, 1);
  t.match(validate.stderr, /error: manifest\.tt:\d+: record 1: digest must be 128 lowercase hex/);
  t.match(validate.stderr, /error: manifest\.tt:\d+: record 3: size must be a non-negative integer/);
  t.match(validate.stderr, /fleetcache: error: 3 of 4 files missing or invalid\n$/);
});

t.test('list and validate check the files in the current directory against the manifest', async (t) => {
  const good = Buffer.from('good\n');
  const bad = Buffer.from('bad!\n');
  const missing = Buffer.from('missing\n');
  const root = t.testdir({ work: { 'good.bin': good, 'bad.bin': 'BAD?\n' } });
  const work = join(root, 'work');
  const manifest = formatManifest([record('good.bin', good), record('bad.bin', bad), record('missing.bin', missing)]);
  // A record without size: tooltool skips it silently; we warn.
  writeFileSync(join(work, 'manifest.tt'), manifest.replace(/^\[/, `[\n  {"filename": "nosize.bin", "algorithm": "sha512", "digest": "${sha512('x')}"},`));

  const list = await runHere(['assets', 'list'], work);
  t.equal(list.code, 0, list.stderr);
  t.equal(list.stdout, 'P\tV\tgood.bin\nP\t-\tbad.bin\n-\t-\tmissing.bin\n', "tooltool's columns: present, valid, filename");
  t.match(list.stderr, /^fleetcache: warning: manifest\.tt:2: record 0 lacks size and is skipped/);
  t.equal((await runHere(['assets', '-q', 'list'], work)).stderr, '', '-q: errors only');
  const verbose = await runHere(['assets', '-q', 'list', '-v'], work);
  t.match(verbose.stderr, /debug: bad\.bin has sha512 [0-9a-f]+, the manifest says/, 'the last of -q and -v wins');

  const invalid = await runHere(['assets', '-m', 'manifest.tt', 'validate'], work);
  t.equal(invalid.code, 1);
  t.equal(invalid.stdout, '');
  t.match(invalid.stderr, /fleetcache: error: bad\.bin has sha512 /);
  t.match(invalid.stderr, /fleetcache: error: missing\.bin does not exist/);
  t.match(invalid.stderr, /fleetcache: error: 2 of 3 files missing or invalid\n$/);
  t.ok(existsSync(join(work, 'bad.bin')), 'validate deletes nothing');

  writeFileSync(join(work, 'bad.bin'), bad);
  writeFileSync(join(work, 'missing.bin'), missing);
  const valid = await runHere(['assets', 'validate'], work);
  t.equal(valid.code, 0, valid.stderr);
  t.equal(valid.stdout, '');
  const elsewhere = await runHere(['assets', 'validate', '-m', join(work, 'manifest.tt'), '--dest', work], root);
  t.equal(elsewhere.code, 0, `--dest: ${elsewhere.stderr}`);

  writeFileSync(join(work, 'broken.tt'), '[{');
  for (const command of ['list', 'validate']) {
    const broken = await runHere(['assets', command, '-m', 'broken.tt'], work);
    t.equal(broken.code, 1, `${command}: a manifest that is not JSON: 1, as tooltool (not 3)`);
    t.match(broken.stderr, /broken\.tt.*invalid manifest/);
  }
});

/** Files in `dir`, name → mtime (seconds); `size` bytes each. */
function filesWithMtimes(dir: string, mtimes: Record<string, number>, size: number): void {
  for (const [name, mtime] of Object.entries(mtimes)) {
    writeFileSync(join(dir, name), randomBytes(size));
    utimesSync(join(dir, name), mtime, mtime);
  }
}

t.test('purge -c DIR deletes every file of the folder, oldest first; sub-directories stay', async (t) => {
  const root = t.testdir({ cache: { sub: { 'inner.bin': 'kept' } }, work: {} });
  const cache = join(root, 'cache');
  for (const size of [[], ['-s', '0']]) {
    filesWithMtimes(cache, { aaa: 3000, bbb: 1000, ccc: 2000 }, 10);
    const res = await runHere(['assets', 'purge', '-c', cache, ...size], join(root, 'work'));
    t.equal(res.code, 0, res.stderr);
    t.equal(res.stdout, 'bbb\t10\nccc\t10\naaa\t10\n', `${size.join(' ') || 'no -s'}: oldest mtime first`);
    t.same(readdirSync(cache), ['sub']);
    t.ok(existsSync(join(cache, 'sub', 'inner.bin')));
  }
  filesWithMtimes(cache, { aaa: 3000 }, 10);
  const noFolder = await runHere(['assets', 'purge'], join(root, 'work'), { TOOLTOOL_CACHE: cache });
  t.equal(noFolder.code, 1, 'no -c: refused, even with $TOOLTOOL_CACHE set');
  t.match(noFolder.stderr, /purge needs -c DIR/);
  t.ok(existsSync(join(cache, 'aaa')));
  const missing = await runHere(['assets', '-c', join(root, 'nope'), 'purge'], join(root, 'work'));
  t.equal(missing.code, 1);
  t.match(missing.stderr, /cache folder .*nope does not exist/);
  for (const size of ['lots', '0x10', '', '1__0', '5GB']) {
    const badSize = await runHere(['assets', 'purge', '-c', cache, '-s', size], join(root, 'work'));
    t.equal(badSize.code, 2, `-s ${JSON.stringify(size)}: no number to Python's float(), a usage error (exit 2), as optparse`);
    t.match(badSize.stderr, /argument .* is invalid\. expected gigabytes, a number as tooltool's optparse reads it/);
  }
  t.ok(existsSync(join(cache, 'aaa')));
});

t.test("purge -s takes what tooltool's float() takes: a negative size deletes nothing, nan and inf every file", async (t) => {
  const root = t.testdir({ cache: {}, work: {} });
  const cache = join(root, 'cache');
  for (const size of ['-1', '-inf', '-1e3']) {
    filesWithMtimes(cache, { aaa: 3000 }, 10);
    const res = await runHere(['assets', 'purge', '-c', cache, '-s', size], join(root, 'work'));
    t.equal(res.code, 0, `-s ${size}: ${res.stderr}`);
    t.same(readdirSync(cache), ['aaa'], `-s ${size}: any free space is enough, nothing is deleted`);
  }
  for (const size of ['nan', 'inf', 'Infinity', ' 0 ', '0_0', '0e5', '1e-400']) {
    filesWithMtimes(cache, { aaa: 3000, bbb: 1000 }, 10);
    const res = await runHere(['assets', 'purge', '-c', cache, '-s', size], join(root, 'work'));
    t.equal(res.code, 0, `-s ${JSON.stringify(size)}: ${res.stderr}`);
    t.equal(res.stdout, 'bbb\t10\naaa\t10\n', `-s ${JSON.stringify(size)}: every file, oldest first`);
    t.notMatch(res.stderr, /warning/, `-s ${JSON.stringify(size)}: asked for, no warning`);
  }
});

t.test('purge -s GB deletes the oldest files until that much is free on the filesystem', { skip: process.getuid?.() !== 0 && 'mounting a tmpfs needs root' }, async (t) => {
  const { dir, unmount } = mountTmpfs('8m', 'purge');
  t.teardown(unmount);
  const work = t.testdir();
  const MiB = 1024 * 1024;
  // Six files of 1 MiB, newest first by name: 2 MiB of the 8 stay free.
  filesWithMtimes(dir, { f1: 6000, f2: 5000, f3: 4000, f4: 3000, f5: 2000, f6: 1000 }, MiB);
  await mkdir(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'old'), 'kept');
  utimesSync(join(dir, 'sub', 'old'), 1, 1);

  const enough = await runHere(['assets', 'purge', '-c', dir, '-s', String(1 / 1024)], work);
  t.equal(enough.code, 0, enough.stderr);
  t.equal(enough.stdout, '', '1 MiB wanted, 2 MiB free: nothing to delete');
  t.equal(readdirSync(dir).length, 7);

  const some = await runHere(['assets', 'purge', '-c', dir, '-s', String(3.5 / 1024)], work);
  t.equal(some.code, 0, some.stderr);
  t.equal(some.stdout, `f6\t${MiB}\nf5\t${MiB}\n`, '3.5 MiB wanted: the two oldest (3 MiB free after one, 4 after two)');
  t.same(readdirSync(dir).sort(), ['f1', 'f2', 'f3', 'f4', 'sub']);

  const all = await runHere(['assets', 'purge', '-c', dir, '-s', '1'], work);
  t.equal(all.code, 0, 'more than the filesystem holds: every file goes, a warning, not a failure');
  t.equal(all.stdout, `f4\t${MiB}\nf3\t${MiB}\nf2\t${MiB}\nf1\t${MiB}\n`);
  t.match(all.stderr, /warning: .* free after deleting every file it could, 1\.0 GiB wanted/);
  t.same(readdirSync(dir), ['sub']);
});

t.test('an unknown option is a usage error (exit 2), as optparse gives', async (t) => {
  const res = await runCli(t, ['assets', '--bogus', 'fetch'], t.testdir());
  t.equal(res.code, 2);
  t.match(res.stderr, /unknown option '--bogus'/);
});

t.test('list, validate and purge ignore extra arguments with a warning, as tooltool (which never reads them); an unknown option is still exit 2', async (t) => {
  const work = t.testdir({ 'tool.bin': 'tool\n', cache: { old: 'x' } });
  writeFileSync(join(work, 'manifest.tt'), formatManifest([record('tool.bin', Buffer.from('tool\n'))]));
  const list = await runHere(['assets', 'list', 'tool.bin'], work);
  t.equal(list.code, 0, list.stderr);
  t.equal(list.stdout, 'P\tV\ttool.bin\n');
  t.match(list.stderr, /list: argument "tool\.bin" ignored \(as tooltool does\)/);
  const validate = await runHere(['assets', 'validate', 'tool.bin', 'other'], work);
  t.equal(validate.code, 0, validate.stderr);
  const purge = await runHere(['assets', 'purge', '-c', 'cache', 'now'], work);
  t.equal(purge.code, 0, purge.stderr);
  t.same(readdirSync(join(work, 'cache')), [], 'purged');
  t.equal((await runHere(['assets', 'list', 'tool.bin', '--bogus'], work)).code, 2);
});

t.test('fetch of a name no record has: a warning, exit 0, as tooltool ignores it', async (t) => {
  const work = t.testdir({ 'manifest.tt': '[]\n' });
  const res = await runHere(['assets', 'fetch', '-m', 'manifest.tt', 'nope.bin'], work);
  t.equal(res.code, 0, res.stderr);
  t.equal(res.stdout, '');
  t.match(res.stderr, /manifest\.tt: no record named "nope\.bin": ignored \(as tooltool does\)/);
});

t.test('add of a file the manifest has already, identical, exits 1 as tooltool\'s add does; the others given are added', async (t) => {
  const work = t.testdir({ 'tool.bin': 'tool\n', 'other.bin': 'other\n' });
  t.equal((await runHere(['assets', 'add', 'tool.bin', '-m', 'm.tt'], work)).code, 0, 'the first add');
  const manifest = readFileSync(join(work, 'm.tt'), 'utf8');
  const again = await runHere(['assets', 'add', 'tool.bin', '-m', 'm.tt'], work);
  t.equal(again.code, 1, 'tooltool: "file already in old_manifest", not all files added');
  t.equal(again.stderr, 'fleetcache: error: tool.bin: already in m.tt, not added\n', 'said as the command\'s other errors are');
  const quiet = await runHere(['assets', '-q', 'add', 'tool.bin', '-m', 'm.tt'], work);
  t.same([quiet.code, quiet.stderr], [1, again.stderr], 'with -q too: a failure');
  t.equal(readFileSync(join(work, 'm.tt'), 'utf8'), manifest, 'the manifest as it was');
  const both = await runHere(['assets', 'add', 'tool.bin', 'other.bin', '-m', 'm.tt'], work);
  t.equal(both.code, 1);
  t.match(JSON.parse(readFileSync(join(work, 'm.tt'), 'utf8')), [{ filename: 'other.bin' }, { filename: 'tool.bin' }], 'the new one is added');
});

t.test('add of a file under a name the manifest has for other content or another visibility: not added, exit 1, the others given still added, as tooltool\'s add', async (t) => {
  const work = t.testdir({ 'tool.bin': 'tool\n', 'other.bin': 'other\n', 'third.bin': 'third\n', v2: { 'tool.bin': 'tool, version 2\n' } });
  t.equal((await runHere(['assets', 'add', '--visibility', 'internal', 'tool.bin', '-m', 'm.tt'], work)).code, 0, 'the first add');
  const changed = await runHere(['assets', 'add', '--visibility', 'internal', 'v2/tool.bin', 'other.bin', '-m', 'm.tt'], work);
  t.equal(changed.code, 1, 'tooltool: "manifest already contains a different file", not all files added');
  t.match(changed.stderr, /^fleetcache: error: m\.tt: already has a different file named "tool\.bin" \(digest [0-9a-f]{16}…\), not added\n$/, 'said as the command\'s other errors are');
  const visibility = await runHere(['assets', 'add', '--visibility', 'public', 'tool.bin', 'third.bin', '-m', 'm.tt'], work);
  t.equal(visibility.code, 1, 'another visibility: not added either');
  t.match(visibility.stderr, /already has "tool\.bin" with visibility internal, version \(none\), not visibility public, version \(none\), not added/);
  const written = JSON.parse(readFileSync(join(work, 'm.tt'), 'utf8')) as Array<{ filename: string; digest: string; visibility: string }>;
  t.same(written.map((r) => [r.filename, r.visibility]), [['third.bin', 'public'], ['other.bin', 'internal'], ['tool.bin', 'internal']], 'the others given are added, new ones first');
  t.equal(written[2]!.digest, sha512('tool\n'), 'tool.bin\'s record as it was');
});

t.test('add without --visibility writes none, as tooltool\'s add; upload then refuses the manifest and sends nothing', async (t) => {
  const root = t.testdir({ work: { 'tool.bin': 'tool\n' }, origin: {} });
  const work = join(root, 'work');
  const origin = await startOrigin(t, { dataDir: join(root, 'origin') });
  const add = await runHere(['assets', 'add', 'tool.bin', '-m', 'm.tt'], work);
  t.equal(add.code, 0, add.stderr);
  const [written] = JSON.parse(readFileSync(join(work, 'm.tt'), 'utf8')) as Record<string, unknown>[];
  t.notOk(written && 'visibility' in written, 'no visibility chosen for the user: tooltool writes none');
  const up = await runHere(['assets', 'upload', '-m', 'm.tt', '--url', origin.url], work, { FLEETCACHE_TOKEN: origin.token });
  t.equal(up.code, 2, up.stderr);
  t.match(up.stderr, /tool\.bin: visibility \(public or internal\) is required to upload/);
  const head = await fetch(`${origin.url}/sha512/${sha512('tool\n')}`, { method: 'HEAD' });
  t.equal(head.status, 404, 'nothing uploaded, so nothing made public for good');
});

t.test("add writes the new records first, in the order given, then the manifest's others, as tooltool's add", async (t) => {
  const work = t.testdir({ 'a.bin': 'a\n', 'b.bin': 'b\n', 'c.bin': 'c\n', 'd.bin': 'd\n' });
  t.equal((await runHere(['assets', 'add', 'a.bin', 'b.bin', '-m', 'm.tt'], work)).code, 0);
  const res = await runHere(['assets', 'add', 'd.bin', 'c.bin', '-m', 'm.tt'], work);
  t.equal(res.code, 0, res.stderr);
  const names = (JSON.parse(readFileSync(join(work, 'm.tt'), 'utf8')) as { filename: string }[]).map((r) => r.filename);
  t.same(names, ['d.bin', 'c.bin', 'a.bin', 'b.bin'], 'the manifest tooltool.py add would write (and so the order fetch takes)');
});

t.test("add's options before or after the command, as optparse takes them; a bad --visibility is a usage error", async (t) => {
  const work = t.testdir({ 'tool.tar.gz': 'not really a tarball\n', 'notes.txt': 'notes\n' });
  const before = await runHere(['assets', '--visibility', 'internal', '--unpack', '--asset-version', 'tool 2', '-m', 'm.tt', 'add', 'tool.tar.gz'], work);
  t.equal(before.code, 0, before.stderr);
  const after = await runHere(['assets', 'add', 'notes.txt', '-m', 'm.tt', '--visibility', 'internal'], work);
  t.equal(after.code, 0, after.stderr);
  t.match(JSON.parse(readFileSync(join(work, 'm.tt'), 'utf8')), [
    { filename: 'notes.txt', visibility: 'internal' },
    { filename: 'tool.tar.gz', unpack: true, version: 'tool 2', visibility: 'internal' },
  ]);
  const bad = await runHere(['assets', '--visibility', 'secret', 'add', 'notes.txt', '-m', 'bad.tt'], work);
  t.equal(bad.code, 2, 'as optparse refuses a value not among its choices');
  t.match(bad.stderr, /'secret' is invalid\. Allowed choices are public, internal/);
  t.notOk(existsSync(join(work, 'bad.tt')));
});

t.test("add takes tooltool's --version STR and -d sha512; fleetcache's own -V/--version go before 'assets' only", async (t) => {
  const work = t.testdir({ 'tool.bin': 'tool\n', 'other.bin': 'other\n' });
  const add = await runHere(['assets', 'add', '-d', 'sha512', '--version', 'gcc 4.9.4', 'tool.bin'], work);
  t.equal(add.code, 0, add.stderr);
  t.equal(add.stdout, `tool.bin\t5\tsha512:${sha512('tool\n')}\n`, 'the file added, not the program version printed');
  const last = await runHere(['assets', '--asset-version', 'one', 'add', 'other.bin', '--version', 'two'], work);
  t.equal(last.code, 0, last.stderr);
  t.match(JSON.parse(readFileSync(join(work, 'manifest.tt'), 'utf8')), [{ filename: 'other.bin', version: 'two' }, { filename: 'tool.bin', version: 'gcc 4.9.4' }], 'the last label given wins');
  const sha256 = await runHere(['assets', '-d', 'sha256', 'add', 'tool.bin', '-m', 'other.tt'], work);
  t.equal(sha256.code, 2, 'tooltool allows only sha512 (a usage error)');
  t.notOk(existsSync(join(work, 'other.tt')));
  const version = await runHere(['--version'], work);
  t.equal(version.code, 0);
  t.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
});

t.test('an unknown command fails with exit 1, as tooltool ("not implemented"); no command, or a bad option, is a usage error', async (t) => {
  const work = t.testdir({ 'manifest.tt': '[]\n' });
  const bogus = await runHere(['assets', '-m', 'manifest.tt', 'fecth'], work);
  t.equal(bogus.code, 1);
  t.equal(bogus.stderr, "fleetcache: error: unknown command 'fecth' (the commands of assets: fetch, list, validate, purge, add, upload)\n");
  // tooltool's own commands that fleetcache lacks, with tooltool's options for them.
  const visibility = await runHere(['assets', '--url', 'http://127.0.0.1:1/', 'change-visibility', '--digest', sha512('x'), '--visibility', 'public'], work);
  t.equal(visibility.code, 1, visibility.stderr);
  t.match(visibility.stderr, /unknown command 'change-visibility'/);
  const badOption = await runHere(['assets', 'fecth', '--bogus'], work);
  t.equal(badOption.code, 2, 'optparse refuses the option first');
  t.match(badOption.stderr, /unknown option '--bogus'/);
  const none = await runHere(['assets', '-m', 'manifest.tt'], work);
  t.equal(none.code, 2, 'no command: a usage error, as optparse\'s "You must specify a command"');
});

t.test('a manifest with "unpack": "yes" and "visibility": "Internal": fetched and unpacked with warnings, as tooltool; upload refuses it', async (t) => {
  const root = t.testdir({ work: {}, up: {} });
  const tgz = compress(await makeTar([{ name: 'tool/VERSION', body: '2\n' }]), 'gz');
  const { url } = await blobServer(t, [tgz]);
  const manifest = `[{"filename": "tool.tar.gz", "size": ${tgz.length}, "algorithm": "sha512", "digest": "${sha512(tgz)}", "unpack": "yes", "visibility": "Internal"}]\n`;
  writeFileSync(join(root, 'manifest.tt'), manifest);
  const res = await runHere(['assets', '--url', url, 'fetch', '-m', '../manifest.tt'], join(root, 'work'));
  t.equal(res.code, 0, res.stderr);
  t.equal(res.stdout, `tool.tar.gz\tdownload\t${tgz.length}\t${tgz.length}\t0\t${url}\ttar.gz\n`);
  t.equal(readFileSync(join(root, 'work', 'tool', 'VERSION'), 'utf8'), '2\n');
  t.match(res.stderr, /warning: \.\.\/manifest\.tt:1: record 0: unpack "yes" is not true or false: taken as true/);
  t.match(res.stderr, /warning: \.\.\/manifest\.tt:1: record 0: visibility "Internal" is neither "public" nor "internal"/);
  const list = await runHere(['assets', 'list', '-m', '../manifest.tt'], join(root, 'work'));
  t.equal(list.code, 0, list.stderr);
  t.equal(list.stdout, 'P\tV\ttool.tar.gz\n');

  writeFileSync(join(root, 'up', 'tool.tar.gz'), tgz);
  const up = await runHere(['assets', 'upload', '-m', '../manifest.tt', '--url', url], join(root, 'up'), { FLEETCACHE_TOKEN: 'token' });
  t.equal(up.code, 2, 'never uploaded as some default visibility');
  t.match(up.stderr, /tool\.tar\.gz: visibility \(public or internal\) is required to upload, not "Internal"/);
});
