// only-if-cached (which push asks with, to learn which bases a cache holds) in a cache of two
// workers, after the GET that filled a large blob: served by the worker that filled it and by
// the other, which never hears of another worker's commits and must look on disk.
import net from 'node:net';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startServerProcess, type RunningServer } from '../helpers/processes.js';
import { holderOf } from '../helpers/held.js';
import { eventually } from '../helpers/wait.js';
import { cacheWorkers } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

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

/** A cache of two workers on `upUrl`, with a keep-alive connection to each. */
async function twoWorkers(t: Test, upUrl: string): Promise<{ cache: RunningServer; filler: Connection; other: Connection }> {
  const cache = await startServerProcess(t, ['cache', '--upstream', upUrl, '--listen', '127.0.0.1:0', '--data', t.testdir(), '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });
  const port = Number(new URL(cache.url).port);
  let workers: number[] = [];
  await eventually('two workers', () => (workers = cacheWorkers(cache.child.pid!)).length === 2, 30_000);
  const opened: Connection[] = [];
  t.teardown(() => opened.forEach((c) => c.close()));
  /** A new connection, and the worker that took it. */
  const connect = async (): Promise<{ conn: Connection; worker: number }> => {
    const conn = new Connection(port);
    opened.push(conn);
    await new Promise((resolve) => conn.socket.once('connect', resolve));
    let worker: number | undefined;
    await eventually('the worker of a connection', () => (worker = holderOf(workers, conn.socket.localPort!)) !== undefined);
    return { conn, worker: worker! };
  };
  const filler = await connect();
  let other = await connect();
  for (let i = 0; i < 8 && other.worker === filler.worker; i++) other = await connect();
  t.not(other.worker, filler.worker, 'a connection to each worker');
  return { cache, filler: filler.conn, other: other.conn };
}

const onlyIfCached = { 'cache-control': 'only-if-cached' };

t.test('two workers: only-if-cached GET of a large blob another worker filled and stored is served, not 504', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  // streamed through a file, committed after its reader has it all
  const { hex } = up.addBlob(12 * 1024 * 1024);
  const target = `/cas/sha256/${hex}`;
  const { cache, filler, other } = await twoWorkers(t, upUrl);

  t.equal(await filler.ask('GET', target), 200, 'the GET that fills it');
  t.equal(await filler.ask('GET', target, onlyIfCached), 200, 'only-if-cached GET in the worker that filled it');
  // Stored: the primary counts the commit (the other worker is never told of it).
  await eventually('the blob stored', async () => ((await (await request(`${cache.url}/-/stats`)).body.json()) as { store: { objects: number } }).store.objects === 1);
  t.equal(await other.ask('GET', target, onlyIfCached), 200, 'only-if-cached GET in the other worker');
  t.equal(await other.ask('HEAD', target, onlyIfCached), 200, 'only-if-cached HEAD in the other worker');
  t.equal(up.count(target), 1, 'upstream asked once');
  await cache.stop();
});

t.test('two workers: only-if-cached GET in the other worker while a fill that has its whole blob commits it is served, not 504', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  // Large enough that its commit (a flush to disk) takes a while after its reader has it all.
  const { hex, body } = up.addBlob(24 * 1024 * 1024);
  const target = `/cas/sha256/${hex}`;
  // Upstream holds the last byte back until told: the fill is then whole at a moment the test knows.
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
  const { cache, filler, other } = await twoWorkers(t, upUrl);
  const filled = filler.ask('GET', target);
  await lastByteAsked;
  t.equal(await other.ask('GET', target, onlyIfCached), 504, 'not served while the fill lacks its last byte');
  // The other worker was asked for its fill: its "none whole" is no error answer of the cache's.
  const metrics = await (await request(`${cache.url}/-/metrics`)).body.text();
  t.notMatch(metrics, /^fleetcache_cache_errors_total\{/m, 'no error counted');
  lastByte();
  t.equal(await filled, 200, 'the GET that fills it has the whole blob');
  // At once: the fill's commit is under way (its reader does not wait for it).
  t.equal(await other.ask('GET', target, onlyIfCached), 200, 'only-if-cached GET in the other worker');
  t.equal(await other.ask('HEAD', target, onlyIfCached), 200, 'only-if-cached HEAD in the other worker');
  t.equal(up.count(target), 1, 'upstream asked once');
  await cache.stop();
});
