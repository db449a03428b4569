import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { EXIT } from '../../src/errors.js';
import { buildOriginServer } from '../../src/origin/server.js';
import { casId } from '../../src/cache/disk-store.js';
import { startCache } from '../cache/harness.js';
import { runCli, runHere } from '../helpers/cli.js';
import { cliArgs } from '../helpers/processes.js';
import { flipped, startTamperingProxy } from '../helpers/tampering-proxy.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';
import { rotInPlace } from '../helpers/bit-rot.js';

const run = promisify(execFile);
const TOKEN = 'cli-test-token';

/** runCli(), for a command that must succeed: its stdout. */
async function cli(args: string[]): Promise<string> {
  const { code, stdout, stderr } = await runCli(args);
  if (code !== 0) throw new Error(`fleetcache ${args[0]} exited ${code}: ${stderr}`);
  return stdout;
}

function project(root: string, version: number): void {
  mkdirSync(join(root, 'lib'), { recursive: true });
  // pseudo-random but the same for every version, so that gzip cannot shrink it to nothing
  for (let i = 0; i < 30; i++) writeFileSync(join(root, 'lib', `f${i}.js`), Array.from({ length: 200 }, (_, j) => createHash('md5').update(`${i}:${j}`).digest('hex')).join('\n'));
  writeFileSync(join(root, 'VERSION'), `${version}\n`);
}

/** An origin on loopback and a project at version 1 in a test directory. */
async function originAndProject(t: Test): Promise<{ dir: string; url: string; src: string }> {
  const dir = t.testdir();
  const app = await buildOriginServer({ dataDir: join(dir, 'origin'), tokens: [TOKEN], logLevel: false });
  t.teardown(() => app.close());
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const src = join(dir, 'src');
  project(src, 1);
  return { dir, url, src };
}

t.test('pack, delta, apply on the command line; plain VCDIFF interoperates with xdelta3', async (t) => {
  const dir = t.testdir();
  project(join(dir, 'v1'), 1);
  project(join(dir, 'v2'), 1);
  writeFileSync(join(dir, 'v2', 'VERSION'), '2\n');
  const packed = await cli(['pack', join(dir, 'v1'), '-o', join(dir, 'v1.tar'), '--exclude', 'f29.js']);
  t.match(packed, /^sha256:[0-9a-f]{64}\t\d+\t/);
  await cli(['pack', join(dir, 'v2'), '-o', join(dir, 'v2.tar'), '--exclude', 'f29.js']);
  const delta = await cli(['delta', '--base', join(dir, 'v1.tar'), join(dir, 'v2.tar'), '-o', join(dir, 'd.vcdiff'), '--compression', 'none']);
  t.match(delta, /^level 9\tvcdiff \d+\tnone \d+\t/);
  await run('xdelta3', ['-d', '-f', '-s', join(dir, 'v1.tar'), join(dir, 'd.vcdiff'), join(dir, 'native.tar')]);
  t.same(readFileSync(join(dir, 'native.tar')), readFileSync(join(dir, 'v2.tar')), 'xdelta3 -d rebuilds our delta');
  await cli(['delta', '--base', join(dir, 'v1.tar'), join(dir, 'v2.tar'), '-o', join(dir, 'd.br')]);
  const applied = await cli(['apply', '--base', join(dir, 'v1.tar'), join(dir, 'd.br'), '-o', join(dir, 'out.tar')]);
  t.same(readFileSync(join(dir, 'out.tar')), readFileSync(join(dir, 'v2.tar')));
  t.match(applied, /^sha256:/);
  await t.rejects(cli(['apply', '--base', join(dir, 'v1.tar'), join(dir, 'd.br'), '-o', join(dir, 'x.tar'), '--expect', `sha256:${'1'.repeat(64)}`]), /digest mismatch/);
});

t.test('push and pull on the command line', async (t) => {
  const { dir, url, src } = await originAndProject(t);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const common = ['--project', 'demo', '--origin', url, '--base-cache', join(dir, 'bases')];
  // in this process: the real CLI's wiring (a token from $FLEETCACHE_TOKEN too) is proven by the progress bars' test
  const first = await cli(['push', src, ...common, '--run', 'r1', '--token-file', tokenFile]);
  t.match(first, /^run\tr1\nuploaded\tnew base /);
  writeFileSync(join(src, 'VERSION'), '2\n');
  const second = await cli(['push', src, ...common, '--token-file', tokenFile]);
  const runId = /^run\t(.+)$/m.exec(second)?.[1] ?? '';
  t.match(second, /uploaded\tdelta against base /);
  const sent = Number(/^sent\t(\d+)/m.exec(second)?.[1]);
  const full = Number(/^full upload\t(\d+)/m.exec(second)?.[1]);
  t.ok(sent > 0 && sent * 10 < full, `sent ${sent}, full ${full}`);
  const pulled = await cli(['pull', '--project', 'demo', '--run', runId, '--from', url, join(dir, 'out')]);
  t.match(pulled, /^sha256:/);
  t.equal(readFileSync(join(dir, 'out', 'VERSION'), 'utf8'), '2\n');
  writeFileSync(join(src, 'VERSION'), '1\n'); // the first tree again: the first run's base
  // with a base of another project in the cache, and a bound that only the base in use fits
  const other = join(dir, 'bases', `${'f'.repeat(64)}.tar`);
  writeFileSync(other, 'another project');
  utimesSync(other, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000)); // last used an hour ago
  const same = await runCli(['push', src, ...common, '--token-file', tokenFile, '--base-cache-size', '1']);
  t.equal(same.code, 0);
  t.match(same.stdout, /uploaded\tsame as base /);
  t.match(same.stderr, /^fleetcache: removed 1 least recently used base \(15 B\) from the base cache .*bases, bound 1 B\n$/);
  t.notOk(existsSync(other));
});

t.test("push --cache URL asks each region's cache (repeatable) which bases it holds, without credentials; a URL that is not http is refused", async (t) => {
  const { dir, url, src } = await originAndProject(t);
  const common = ['--project', 'demo', '--origin', url, '--base-cache', join(dir, 'bases'), '--token-file', join(dir, 'token')];
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  // two candidate bases (the caches' answers rank candidates: one alone is not asked about)
  const baseOf = async (pushed: string) => {
    const runId = /^run\t(.+)$/m.exec(pushed)?.[1] ?? '';
    return (JSON.parse(await (await request(`${url}/projects/demo/runs/${runId}`)).body.text()) as { base: { digest: string } }).base.digest;
  };
  const first = await baseOf(await cli(['push', src, ...common]));
  writeFileSync(join(src, 'large.bin'), randomBytes(512 << 10));
  const second = await baseOf(await cli(['push', src, ...common]));
  t.not(second, first, 'a second base');
  // caches that hold nothing: a 504 to every only-if-cached HEAD, each request kept
  const asked: { cache: number; method?: string; url?: string; cacheControl?: string; authorization?: string }[] = [];
  const caches = await Promise.all([0, 1].map((cache) => serveOnLoopback(t, createServer((req, res) => {
    asked.push({ cache, method: req.method, url: req.url, cacheControl: req.headers['cache-control'], authorization: req.headers.authorization });
    res.writeHead(504).end();
  }))));
  writeFileSync(join(src, 'VERSION'), '2\n');
  t.match(await cli(['push', src, ...common, '--cache', caches[0]!, '--cache', caches[1]!]), /uploaded\tdelta against base /);
  const paths = [first, second].map((digest) => `/cas/sha256/${digest.slice('sha256:'.length)}`).sort();
  const byCacheAndPath = (a: { cache: number; url?: string }, b: { cache: number; url?: string }) => a.cache - b.cache || String(a.url).localeCompare(String(b.url));
  t.same(asked.sort(byCacheAndPath), [0, 1].flatMap((cache) => paths.map((path) => ({ cache, method: 'HEAD', url: path, cacheControl: 'only-if-cached', authorization: undefined }))), 'each cache asked once for each base');
  const refused = await runCli(['push', src, ...common, '--cache', 'ftp://cache']);
  t.equal(refused.code, EXIT.usage);
  t.match(refused.stderr, /--cache: /);
});

t.test('push never packs its token file: a token file kept in the project stays off the machines and the origin', async (t) => {
  const { dir, url, src } = await originAndProject(t);
  // beside spread.yaml, as a project keeps what it .gitignores
  writeFileSync(join(src, '.fleet-token'), `${TOKEN}\n`, { mode: 0o600 });
  const pushed = await cli(['push', src, '--project', 'demo', '--origin', url, '--base-cache', join(dir, 'bases'), '--token-file', join(src, '.fleet-token')]);
  const runId = /^run\t(.+)$/m.exec(pushed)?.[1] ?? '';
  await cli(['pull', '--project', 'demo', '--run', runId, '--from', url, join(dir, 'out')]);
  t.equal(readFileSync(join(dir, 'out', 'VERSION'), 'utf8'), '1\n', 'the project arrived');
  t.notOk(existsSync(join(dir, 'out', '.fleet-token')), 'not the write token: every machine, and anyone who reads the origin, would have it');
});

t.test("pack and push leave out what fleetcache run keeps in a project it ran, as run does: its data directory (the embedded origin's token), timings and reuse files", async (t) => {
  const { dir, url, src } = await originAndProject(t);
  mkdirSync(join(src, '.fleetcache', 'origin'), { recursive: true });
  writeFileSync(join(src, '.fleetcache', 'origin', 'token'), 'embedded-origin-write-token\n');
  writeFileSync(join(src, '.fleetcache-timings.json'), '{}\n');
  writeFileSync(join(src, '.fleetcache-reuse.json'), '[]\n');
  await cli(['pack', src, '-o', join(dir, 'p.tar')]);
  const { stdout } = await run('tar', ['tf', join(dir, 'p.tar')]);
  t.same(stdout.split('\n').filter((entry) => entry.startsWith('.fleetcache')), [], 'pack: none of them');
  t.match(stdout, /^VERSION$/m, 'the project is there');
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  const pushed = await cli(['push', src, '--project', 'demo', '--origin', url, '--base-cache', join(dir, 'bases'), '--token-file', join(dir, 'token')]);
  const runId = /^run\t(.+)$/m.exec(pushed)?.[1] ?? '';
  await cli(['pull', '--project', 'demo', '--run', runId, '--from', url, join(dir, 'out')]);
  t.same(readdirSync(join(dir, 'out')).sort(), ['VERSION', 'lib'], 'push: the project alone reaches the origin and the machines');
});

t.test('pull counts one entry as one: "1 entry", not "1 entries"', async (t) => {
  const { dir, url } = await originAndProject(t);
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  const common = ['--project', 'one', '--origin', url, '--base-cache', join(dir, 'bases'), '--token-file', join(dir, 'token'), '--run', 'r1'];
  const [one, two] = [join(dir, 'one'), join(dir, 'two')];
  mkdirSync(one);
  writeFileSync(join(one, 'README'), 'one file\n');
  mkdirSync(two);
  writeFileSync(join(two, 'a'), 'a\n');
  writeFileSync(join(two, 'b'), 'b\n');
  await cli(['push', one, ...common]);
  await cli(['push', two, ...common.slice(0, -1), 'r2']);
  const pulledOne = await cli(['pull', join(dir, 'out1'), '--project', 'one', '--run', 'r1', '--from', url]);
  t.match(pulledOne, /^sha256:[0-9a-f]{64}\t1 entry\t/, pulledOne);
  const pulledTwo = await cli(['pull', join(dir, 'out2'), '--project', 'one', '--run', 'r2', '--from', url]);
  t.match(pulledTwo, /^sha256:[0-9a-f]{64}\t2 entries\t/, pulledTwo);
});

t.test('push and pull draw progress bars on a terminal, none in a pipe', async (t) => {
  const { dir, url, src } = await originAndProject(t);
  const common = ['--project', 'bars', '--origin', url, '--base-cache', join(dir, 'bases')];
  /** The CLI under a pseudo-terminal (util-linux script): what a user at a terminal sees. */
  const onTerminal = async (args: string[]) => {
    const command = [process.execPath, ...cliArgs(args)].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    return (await run('script', ['-qec', command, '/dev/null'], { env: { ...process.env, FLEETCACHE_TOKEN: TOKEN, FLEETCACHE_LOG_LEVEL: 'warn' } })).stdout;
  };
  const pushed = await onTerminal(['push', src, ...common, '--run', 'r1']);
  t.match(pushed, / upload \S+ \S+ 100% \| ([\d.]+ KiB) of \1/, 'push: the base upload has its bar, with its length');
  t.notMatch(pushed, /of \?/, 'no bar without its total: every upload states its length');
  const pulledOnTerminal = await onTerminal(['pull', join(dir, 'tree1'), '--project', 'bars', '--run', 'r1', '--from', url]);
  t.match(pulledOnTerminal, / base \S+ 100% \| [\d.]+ KiB of [\d.]+ KiB/, 'pull: the base download has its bar');
  // in a pipe: in this process, its stdout and stderr no terminals (runHere), as the real binary's in pipes
  const piped = await runHere(['pull', join(dir, 'tree2'), '--project', 'bars', '--run', 'r1', '--from', url], dir, { FLEETCACHE_LOG_LEVEL: 'warn' });
  t.equal(piped.code, 0, piped.stderr);
  t.notMatch(piped.stdout, /\x1b|%/, 'in a pipe: the result line alone');
  t.notMatch(piped.stderr, /\x1b|%/, 'and no bar on stderr');
  t.match(piped.stdout, /^sha256:[0-9a-f]{64}\t\d+ entries\t/);
});

t.test('push says what it left out and which bases it passed over; a pull whose download is cut mid-body exits 6 (upstream), not 70 (internal)', async (t) => {
  const { dir, url, src } = await originAndProject(t);
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  await run('mkfifo', [join(src, 'a.fifo')]);
  const pushed = await runCli(['push', src, '--project', 'cut', '--origin', url, '--base-cache', join(dir, 'bases'), '--run', 'r1', '--token-file', join(dir, 'token')]);
  t.equal(pushed.code, 0, pushed.stderr);
  t.match(pushed.stderr, /^fleetcache: skipped a\.fifo \(not a file, directory or symlink\)$/m, 'push says what it left out, as pack does');
  // In front of the origin: names pass whole; a blob's headers and half its body, then the connection is cut.
  const cutter = createServer((req, res) => {
    void request(`${url}${req.url}`).then(async (up) => {
      const body = Buffer.from(await up.body.arrayBuffer());
      if (!req.url!.startsWith('/cas/')) {
        res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'application/json'), 'content-length': body.length });
        return void res.end(body);
      }
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket?.destroy(), 50));
    });
  });
  const from = await serveOnLoopback(t, cutter);
  const { code, stderr: err } = await runCli(['pull', '--project', 'cut', '--run', 'r1', '--from', from, join(dir, 'out')]);
  t.equal(code, EXIT.unavailable, err);
  t.notMatch(err, /\n\s+at /, 'no stack trace');
  const manifest = (await (await request(`${url}/projects/cut/runs/r1`)).body.json()) as { base: { digest: string } };
  const hex = manifest.base.digest.split(':')[1];
  t.match(err, `GET ${from}/cas/sha256/${hex}: `, 'names the request whose body was cut, as a mismatch does');

  // The base's blob lost at the origin: a push from another machine (another base cache) passes it over, and says so.
  const blob = readdirSync(join(dir, 'origin'), { recursive: true, withFileTypes: true }).find((e) => e.isFile() && e.name === hex);
  rmSync(join(blob!.parentPath, blob!.name));
  const again = await runCli(['push', src, '--project', 'cut', '--origin', url, '--base-cache', join(dir, 'bases-2'), '--run', 'r2', '--token-file', join(dir, 'token')]);
  t.equal(again.code, 0, again.stderr);
  t.match(again.stderr, /^fleetcache: base \S+ at the origin cannot be used, passed over \(its runs cannot be pulled; "fleetcache verify" at the origin lists damaged blobs\): .*HTTP 404/m);
  t.match(again.stdout, /^uploaded\tnew base /m);
});

t.test('-o onto a device is written in place, through a symlink to its target; a tar in the tree it packs is not packed', async (t) => {
  const dir = t.testdir();
  project(join(dir, 'tree'), 1);
  // a device node of /dev/null's numbers, in the test's own directory: replaced by a file, it harms nothing
  await run('mknod', [join(dir, 'null'), 'c', '1', '3']);
  await cli(['pack', join(dir, 'tree'), '-o', join(dir, 'null')]);
  t.ok(statSync(join(dir, 'null')).isCharacterDevice(), 'still a device');
  writeFileSync(join(dir, 'real.tar'), '');
  symlinkSync('real.tar', join(dir, 'link.tar'));
  const viaLink = await cli(['pack', join(dir, 'tree'), '-o', join(dir, 'link.tar')]);
  t.ok(lstatSync(join(dir, 'link.tar')).isSymbolicLink(), 'the link stays');
  t.equal(statSync(join(dir, 'real.tar')).size, Number(viaLink.split('\t')[1]), 'its target has the tar');
  const inside = join(dir, 'tree', 'self.tar');
  const first = await cli(['pack', join(dir, 'tree'), '-o', inside]);
  const second = await cli(['pack', join(dir, 'tree'), '-o', inside]);
  t.equal(second.split('\t')[0], first.split('\t')[0], 'the same tar twice: the first one was not packed into the second');
  t.notMatch((await run('tar', ['-tf', inside])).stdout, /self\.tar/);
});

t.test("pull --recheck mends a cache's damaged copy; without it, the failure says to use it", async (t) => {
  const { dir, url, src } = await originAndProject(t);
  const cacheDir = join(dir, 'cache');
  const cache = await startCache(t, { upstream: url }, cacheDir);
  writeFileSync(join(src, 'blob.bin'), randomBytes(256 * 1024)); // a base far above what a cache keeps in memory
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const pushed = await runCli(['push', src, '--project', 'demo', '--origin', url, '--base-cache', join(dir, 'bases'), '--run', 'r1', '--token-file', tokenFile]);
  t.equal(pushed.code, 0, pushed.stderr);
  const pull = (dest: string, ...more: string[]) => runCli(['pull', '--project', 'demo', '--run', 'r1', '--from', cache.url, ...more, join(dir, dest)]);
  t.equal((await pull('m1')).code, 0, 'the first pull fills the cache');
  await cache.app.cache.fills.drain();
  // bit rot in the cache's copy of the base: same size, one byte changed
  const manifest = (await (await request(`${url}/projects/demo/runs/r1`)).body.json()) as { base: { digest: string } };
  const hex = manifest.base.digest.slice('sha256:'.length);
  const stored = join(cacheDir, casId({ algo: 'sha256', hex }));
  rotInPlace(stored);

  const failed = await pull('m2');
  t.equal(failed.code, EXIT.integrity);
  t.match(failed.stderr, /pull again with --recheck/);
  const mended = await pull('m3', '--recheck');
  t.equal(mended.code, 0, mended.stderr);
  t.equal(readFileSync(join(dir, 'm3', 'VERSION'), 'utf8'), '1\n');
  t.equal(createHash('sha256').update(readFileSync(stored)).digest('hex'), hex, 'the cache holds a good copy again');
});

t.test('a pull whose cache sends wrong bytes names that request (method and URL): a flipped byte, a byte too many', async (t) => {
  const { dir, url, src } = await originAndProject(t);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const push = (run: string) => runCli(['push', src, '--project', 'named', '--origin', url, '--base-cache', join(dir, 'bases'), '--run', run, '--token-file', tokenFile]);
  t.equal((await push('r1')).code, 0);
  project(src, 2);
  t.equal((await push('r2')).code, 0);
  const manifest = (await (await request(`${url}/projects/named/runs/r2`)).body.json()) as { delta: { digest: string; size: number } | null };
  const deltaPath = `/cas/sha256/${manifest.delta!.digest.slice('sha256:'.length)}`;
  // in front of the origin, as a cache whose copy of the run's delta is wrong
  let damage: (body: Buffer) => Buffer = flipped;
  const cache = await startTamperingProxy(t, url, (path, body) => (path === deltaPath ? damage(body) : body));
  const pull = (dest: string) => runCli(['pull', '--project', 'named', '--run', 'r2', '--from', cache, join(dir, dest)]);

  const flippedPull = await pull('m1');
  t.equal(flippedPull.code, EXIT.integrity, flippedPull.stderr);
  t.match(flippedPull.stderr, `fleetcache: error: GET ${cache}${deltaPath}: digest mismatch: expected ${manifest.delta!.digest}, got sha256:`);
  damage = (body) => Buffer.concat([body, Buffer.from('x')]);
  const longer = await pull('m2');
  t.equal(longer.code, EXIT.integrity, longer.stderr);
  t.match(longer.stderr, `fleetcache: error: GET ${cache}${deltaPath}: size mismatch: expected ${manifest.delta!.size} bytes, got ${manifest.delta!.size + 1}`);
  t.notOk(existsSync(join(dir, 'm2', 'VERSION')), 'nothing unpacked');
});
