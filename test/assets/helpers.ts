// Test helpers for assets: real archives built in memory (small by construction), a
// minimal zip writer, a counting node:http server serving /<algo>/<hex> from a map, and
// `fleetcache assets …` as a child process or through main() in this one.
import { createHash } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { crc32, gzipSync } from 'node:zlib';
import type { Test } from 'tap';
import * as tarStream from 'tar-stream';
import { cliArgs, stopWithTest } from '../helpers/processes.js';
import { closeWithConnections, listenOnLoopback } from '../helpers/loopback-server.js';

// the assets tests' in-process runs: the same helper as every other command's
export { runHere } from '../helpers/cli.js';

export function sha512(data: Buffer | string): string {
  return createHash('sha512').update(data).digest('hex');
}

export interface TarEntry {
  readonly name: string;
  readonly type?: 'file' | 'directory' | 'symlink' | 'link';
  readonly body?: string;
  readonly linkname?: string;
  readonly mode?: number;
  readonly mtime?: Date;
}

export async function makeTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(Buffer.from(c as Uint8Array));
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    await new Promise<void>((res, rej) =>
      pack.entry({ name: e.name, type, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), linkname: e.linkname, ...(e.mtime ? { mtime: e.mtime } : {}) }, type === 'file' ? e.body ?? '' : '', (err) => (err ? rej(err) : res())),
    );
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Compresses with gzip (zlib) or Debian's bzip2/xz/zstd. */
export function compress(tar: Buffer, kind: 'gz' | 'bz2' | 'xz' | 'zst'): Buffer {
  if (kind === 'gz') return gzipSync(tar);
  const cmd = { bz2: ['bzip2', '-c'], xz: ['xz', '-c'], zst: ['zstd', '-cq'] }[kind];
  const out = spawnSync(cmd[0]!, cmd.slice(1), { input: tar, maxBuffer: 64 * 1024 ** 2 });
  if (out.status !== 0) throw new Error(`${cmd[0]} failed: ${out.stderr.toString()}`);
  return out.stdout;
}

/** A stored (uncompressed) zip; enough for unpack tests. */
export function makeZip(entries: readonly { name: string; body: string; mode?: number }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const body = Buffer.from(e.body);
    const crc = crc32(body);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(body.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by unix
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(body.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((((e.mode ?? 0o644) | 0o100000) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

/** A node:http server answering GET /<algo>/<hex> from `blobs` (keyed by hex), 404 otherwise. */
export class BlobServer {
  readonly requests: SeenRequest[] = [];
  readonly blobs = new Map<string, Buffer>();
  readonly #server: Server;

  constructor() {
    this.#server = createServer((req, res) => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      const m = /^\/(?:[^?]*\/)?([A-Za-z0-9_-]+)\/([0-9a-f]+)(\?.*)?$/.exec(req.url ?? '');
      const body = m ? this.blobs.get(m[2]!) : undefined;
      if (req.method !== 'GET' || !body) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' }).end(body);
    });
  }

  start(): Promise<string> {
    return listenOnLoopback(this.#server);
  }

  stop(): Promise<void> {
    return closeWithConnections(this.#server);
  }
}

/** A BlobServer on loopback serving `bodies` (by their sha512), stopped with the test. */
export async function serveBlobs(t: Test, ...bodies: Buffer[]): Promise<{ server: BlobServer; url: string }> {
  const server = new BlobServer();
  const url = await server.start();
  t.teardown(() => server.stop());
  for (const body of bodies) server.blobs.set(sha512(body), body);
  return { server, url };
}

interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * `fleetcache <args>` as a child process in `cwd` (stdout and stderr not terminals: no
 * progress bar), without $FLEETCACHE_TOKEN unless `env` gives one.
 */
export function runCli(t: Test, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const child = spawn(process.execPath, cliArgs(args), { cwd, env: { ...process.env, FLEETCACHE_TOKEN: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  stopWithTest(t, child, 'SIGKILL');
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}
