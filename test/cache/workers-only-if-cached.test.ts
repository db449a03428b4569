// only-if-cached (which push asks with, to learn which bases a cache holds) in a cache of
// workers, after the GET that filled a large blob: served by the worker that filled it and by
// another, which never hears of another worker's commits and must look on disk. And with a
// worker stopped (SIGSTOP): a miss is still a 504 within push's probe, whether the blob is
// being filled by another worker or not at all, or its fill has just been committed.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { rememberProcess, startServerProcess, type RunningServer } from '../helpers/processes.js';
import { held, holderOf } from '../helpers/held.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers } from './harness.js';
import { startUpstream, type UpstreamFixture } from './upstream-fixture.js';

/** One keep-alive connection to the cache: its requests one at a time, each answer's body (Content-Length) read and dropped. */
class Connection {
  readonly socket: net.Socket;
  /** Bytes not consumed yet: the head of the next answer. */
  #pending = Buffer.alloc(0);
  /** Body bytes still to drop. */
  #skip = 0;
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (chunk: Buffer) => {
      const dropped = Math.min(this.#skip, chunk.length);
      this.#skip -= dropped;
      if (dropped < chunk.length) this.#pending = Buffer.concat([this.#pending, chunk.subarray(dropped)]);
      this.#wake?.();
    });
    this.socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
    this.socket.on('error', () => undefined);
  }

  async #until(enough: () => boolean): Promise<void> {
    while (!enough()) {
      if (this.#closed) throw new Error('the cache closed the connection');
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** The status of `method target` with `headers`, once its body is read. */
  async ask(method: 'GET' | 'HEAD', target: string, headers: Record<string, string> = {}): Promise<number> {
    const fields = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    this.socket.write(`${method} ${target} HTTP/1.1\r\nHost: test\r\n${fields}\r\n`);
    await this.#until(() => this.#pending.includes('\r\n\r\n'));
    const end = this.#pending.indexOf('\r\n\r\n') + 4;
    const head = this.#pending.subarray(0, end).toString('latin1');
    const length = method === 'HEAD' ? 0 : Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    const here = Math.min(length, this.#pending.length - end);
    this.#pending = this.#pending.subarray(end + here);
    this.#skip = length - here;
    await this.#until(() => this.#skip === 0);
    return Number(head.split(' ')[1]);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A worker of the cache, and a keep-alive connection that it took. */
interface Worker {
  readonly pid: number;
  readonly conn: Connection;
}

/** A cache of `count` workers on `upUrl`, and its workers' PIDs. */
async function cacheOf(t: Test, upUrl: string, count: number): Promise<{ cache: RunningServer; dataDir: string; pids: number[] }> {
  const dataDir = t.testdir();
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', dataDir, '--workers', String(count)], { FLEETCACHE_LOG_LEVEL: 'warn' });
  let pids: number[] = [];
  await eventually(`${count} workers`, () => (pids = cacheWorkers(cache.child.pid!)).length === count, 30_000);
  return { cache, dataDir, pids };
}

/**
 * A keep-alive connection of `t`'s own to each of the workers `pids` of `cache`: fresh for
 * each subtest, none left idle while others run (the cache closes an idle one).
 */
async function connectEach(t: Test, cache: RunningServer, pids: readonly number[]): Promise<Worker[]> {
  const port = Number(new URL(cache.url).port);
  const opened: Connection[] = [];
  t.teardown(() => opened.forEach((c) => c.close()));
  const workers = new Map<number, Worker>();
  // New connections until each worker took one (the primary hands them out in turn).
  for (let i = 0; i < 4 * pids.length && workers.size < pids.length; i++) {
    const conn = new Connection(port);
    opened.push(conn);
    await new Promise((resolve) => conn.socket.once('connect', resolve));
    let pid: number | undefined;
    await eventually('the worker of a connection', () => (pid = holderOf(pids, conn.socket.localPort!)) !== undefined);
    if (!workers.has(pid!)) workers.set(pid!, { pid: pid!, conn });
  }
  t.equal(workers.size, pids.length, 'a connection to each worker');
  return [...workers.values()];
}

/** Stops `pid` (SIGSTOP) as a worker wedged or frozen, until `t` ends (or `resume` is called). */
function stopWorker(t: Test, pid: number): { resume: () => void } {
  const worker = rememberProcess(pid);
  worker.kill('SIGSTOP');
  const resume = (): void => worker.kill('SIGCONT');
  t.teardown(resume);
  return { resume };
}

/** The objects the cache's store holds, as its primary counts them. */
async function storedObjects(cache: RunningServer): Promise<number> {
  return ((await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { objects: number } }).store.objects;
}

/** What `ask` answers, and how long it took. */
async function timed(ask: () => Promise<number>): Promise<{ status: number; ms: number }> {
  const start = performance.now();
  const status = await ask();
  return { status, ms: performance.now() - start };
}

/**
 * Upstream answers `target` with `body` but its last byte, which it sends on `lastByte()`
 * (once `lastByteAsked`: the rest is written).
 */
function holdLastByte(up: UpstreamFixture, target: string, body: Buffer): { lastByteAsked: Promise<void>; lastByte: () => void } {
  let lastByte!: () => void;
  const lastByteAsked = new Promise<void>((asked) => {
    up.handler = (req, res) => {
      if (req.url !== target) return false;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
      res.write(body.subarray(0, -1), () => asked());
      lastByte = () => res.end(body.subarray(-1));
      return true;
    };
  });
  return { lastByteAsked, lastByte: () => lastByte() };
}

const onlyIfCached = { 'cache-control': 'only-if-cached' };

// Push asks each region's cache, with only-if-cached, which bases it holds, and gives it 2 s
// (cache-holdings.ts); a worker asks the others for a whole fill only while one holds the
// key's claim, and a stopped one's question times out after 5 s (remote-fill.ts).
const PUSH_PROBE_MS = 2000;

// The subtests share one cache of three workers: each asks for a blob of its own on
// connections of its own, and a worker a subtest stops is resumed before the next (a cache
// each cost 1.5 to 2 s of CPU to start). Those that need only two workers leave the third
// idle, and ask it too: what the other workers answer is what two would.
// The subtest that counts the sockets a worker opens to ask the others runs first: none is
// open yet.
t.test('three workers, one cache for five subtests', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const { cache, dataDir, pids } = await cacheOf(t, upUrl, 3);

  await t.test('three workers, one stopped: only-if-cached asked as the fill\'s leader commits it (it then answers "no such fill") is served at once from disk', async (t) => {
    const { hex, body } = up.addBlob(4096);
    const target = `/cas/sha256/${hex}`;
    const [asked, leader, stopped] = await connectEach(t, cache, pids);
    // The leader's claim, under the blob's own name with no permission bits (DiskStore.claimFill),
    // made here: the test then commits the body itself, at the moment it chooses.
    const file = path.join(dataDir, 'cas.v1', 'sha256', hex.slice(0, 2), hex);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, '', { mode: 0o000 });
    const { resume } = stopWorker(t, stopped!.pid);
    const leaderStopped = stopWorker(t, leader!.pid);
    const before = held(asked!.pid, []).unix;
    const answer = timed(() => asked!.conn.ask('GET', target, onlyIfCached));
    // Asked: a connection to each of the other workers' sockets (both stopped, neither answers yet).
    await eventually('the other workers asked', () => held(asked!.pid, []).unix >= before + 2);
    // The commit: the body renamed over the claim. Only then does the leader take the question.
    const tmp = path.join(path.dirname(file), `.tmp-test-${hex}`);
    writeFileSync(tmp, body);
    renameSync(tmp, file);
    leaderStopped.resume();
    const { status, ms } = await answer;
    t.equal(status, 200, 'the stored blob');
    t.ok(ms < PUSH_PROBE_MS, `answered in ${Math.round(ms)} ms, within push's probe`);
    t.equal(up.count(target), 0, 'upstream never asked');
    resume();
  });

  await t.test('three workers, one stopped: only-if-cached while another fills the blob, its body not all here, is a 504 at once (the fill\'s leader says so)', async (t) => {
    const { hex, body } = up.addBlob(1024 * 1024);
    const target = `/cas/sha256/${hex}`;
    const { lastByteAsked, lastByte } = holdLastByte(up, target, body);
    const [filler, asked, stopped] = await connectEach(t, cache, pids);
    const { resume } = stopWorker(t, stopped!.pid);
    const filled = filler!.conn.ask('GET', target);
    await lastByteAsked;
    const { status, ms } = await timed(() => asked!.conn.ask('GET', target, onlyIfCached));
    t.equal(status, 504, 'not served while the fill lacks its last byte');
    t.ok(ms < PUSH_PROBE_MS, `answered in ${Math.round(ms)} ms, within push's probe`);
    lastByte();
    t.equal(await filled, 200, 'the GET that fills it');
    t.equal(await asked!.conn.ask('GET', target, onlyIfCached), 200, 'served once the fill has its whole body');
    resume();
  });

  await t.test('three workers: only-if-cached GET of a large blob another worker filled and stored is served, not 504', async (t) => {
    // streamed through a file (past SMALL_MAX), committed after its reader has it all
    const { hex } = up.addBlob(1024 * 1024);
    const target = `/cas/sha256/${hex}`;
    const [filler, other] = await connectEach(t, cache, pids);
    const objectsBefore = await storedObjects(cache);

    t.equal(await filler!.conn.ask('GET', target), 200, 'the GET that fills it');
    t.equal(await filler!.conn.ask('GET', target, onlyIfCached), 200, 'only-if-cached GET in the worker that filled it');
    // Stored: the primary counts the commit (the other workers are never told of it).
    await eventually('the blob stored', async () => (await storedObjects(cache)) === objectsBefore + 1);
    t.equal(await other!.conn.ask('GET', target, onlyIfCached), 200, 'only-if-cached GET in another worker');
    t.equal(await other!.conn.ask('HEAD', target, onlyIfCached), 200, 'only-if-cached HEAD in another worker');
    t.equal(up.count(target), 1, 'upstream asked once');
  });

  await t.test('three workers: only-if-cached GET in another worker while a fill that has its whole blob commits it is served, not 504', async (t) => {
    // Large enough that its commit (a flush to disk) takes a while after its reader has it all.
    const { hex, body } = up.addBlob(24 * 1024 * 1024);
    const target = `/cas/sha256/${hex}`;
    // The fill is then whole at a moment the test knows.
    const { lastByteAsked, lastByte } = holdLastByte(up, target, body);
    const [filler, other] = await connectEach(t, cache, pids);
    const filled = filler!.conn.ask('GET', target);
    await lastByteAsked;
    t.equal(await other!.conn.ask('GET', target, onlyIfCached), 504, 'not served while the fill lacks its last byte');
    // The other workers were asked for their fills: a "none whole" is no error answer of the cache's.
    const metrics = await (await request(`${cache.url}/-/metrics`)).body.text();
    t.notMatch(metrics, /^fleetcache_cache_errors_total\{/m, 'no error counted');
    lastByte();
    t.equal(await filled, 200, 'the GET that fills it has the whole blob');
    // At once: the fill's commit is under way (its reader does not wait for it).
    t.equal(await other!.conn.ask('GET', target, onlyIfCached), 200, 'only-if-cached GET in another worker');
    t.equal(await other!.conn.ask('HEAD', target, onlyIfCached), 200, 'only-if-cached HEAD in another worker');
    t.equal(up.count(target), 1, 'upstream asked once');
  });

  await t.test('three workers, one stopped: only-if-cached of a blob no worker holds or fills is a 504 at once, not once the question to the stopped one times out', async (t) => {
    const { hex } = up.addBlob(4096);
    const target = `/cas/sha256/${hex}`;
    const [asked, stopped] = await connectEach(t, cache, pids);
    const { resume } = stopWorker(t, stopped!.pid);
    for (const method of ['GET', 'HEAD'] as const) {
      const { status, ms } = await timed(() => asked!.conn.ask(method, target, onlyIfCached));
      t.equal(status, 504, `${method}: not stored`);
      t.ok(ms < PUSH_PROBE_MS, `${method}: answered in ${Math.round(ms)} ms, within push's probe`);
    }
    t.equal(up.count(target), 0, 'upstream never asked');
    resume();
  });

  await cache.stop();
});
