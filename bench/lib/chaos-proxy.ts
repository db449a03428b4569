// An HTTP proxy between a cache and its upstream that misbehaves on purpose, for the soak
// (bench/soak-cache.ts): it passes most requests on as they are, and cuts some answers
// midway (the connection closed after a part of the body), stalls some for longer than the
// cache's body timeout, and refuses every connection during an outage. Uploads (PUT) are
// passed on with their body, and some are cut before the upstream's answer comes back.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline, Transform } from 'node:stream';
import { Agent, request } from 'undici';
import { endToEnd, requestEndToEnd } from '../../src/cache/upstream.js';

/** What happens to one answer passed on. */
export type ChaosAct = 'pass' | 'cut' | 'stall' | 'refuse';

interface ChaosCounts {
  pass: number;
  cut: number;
  stall: number;
  refuse: number;
  outage: number;
}

interface ChaosProxy {
  readonly url: string;
  readonly counts: ChaosCounts;
  /** Refuses every request (and cuts every open connection) until `up()`. */
  down(): void;
  up(): void;
  /** Stops misbehaving: every later request is passed on as it is. */
  calm(): void;
  close(): Promise<void>;
  /** The requests in flight for longer than `ms`, with what each is waiting for. */
  stuck(ms: number): string[];
}

interface ChaosOptions {
  /** Picks the act for each request (called once per request, in arrival order). */
  readonly act: (method: string, path: string) => ChaosAct;
  /** A number in [0, 1) for where a cut lands and how long a stall lasts. */
  readonly random: () => number;
  /** How long a stall holds the body (longer than the cache's body timeout). */
  readonly stallMs: number;
  /**
   * Told of each upload upstream accepted (a 2xx to a PUT), with the sha256 of the body passed
   * on, as its answer's head comes back (whatever this proxy then does to the answer): when
   * upstream took a version, as near as can be seen from outside it (a little after).
   */
  readonly onAccepted?: (path: string, hex: string) => void;
}

/** Writes `chunk`, waiting for room; throws once the client is gone (the rest is dropped with the upstream's body). */
async function send(res: ServerResponse, chunk: Buffer): Promise<void> {
  // gone while this proxy waited (a stall, upstream's next chunk): no 'drain' nor 'close' to come
  if (res.destroyed) throw new Error('client gone');
  if (!res.write(chunk)) {
    await new Promise<void>((resolve) => {
      const done = (): void => { res.off('drain', done).off('close', done); resolve(); };
      res.once('drain', done).once('close', done);
    });
  }
  if (res.destroyed) throw new Error('client gone');
}

export async function startChaosProxy(upstream: string, options: ChaosOptions): Promise<ChaosProxy> {
  const counts: ChaosCounts = { pass: 0, cut: 0, stall: 0, refuse: 0, outage: 0 };
  const dispatcher = new Agent({ connections: 64, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const sockets = new Set<Socket>();
  let outage = false;
  let calm = false;

  const inFlight = new Map<IncomingMessage, { since: number; phase: string }>();
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const state = { since: Date.now(), phase: 'start' };
    inFlight.set(req, state);
    try {
      await handleTracked(req, res, state);
    } finally {
      inFlight.delete(req);
    }
  };
  const handleTracked = async (req: IncomingMessage, res: ServerResponse, state: { phase: string }): Promise<void> => {
    if (outage) {
      counts.outage++;
      return void req.socket.destroy();
    }
    const method = req.method ?? 'GET';
    const act = calm ? 'pass' : options.act(method, req.url ?? '/');
    counts[act]++;
    if (act === 'refuse') return void req.socket.destroy();
    state.phase = `${act}: asking upstream`;
    const digest = method === 'PUT' ? createHash('sha256') : undefined;
    const body = digest && pipeline(req, new Transform({ transform(chunk: Buffer, _enc, done) { digest.update(chunk); done(null, chunk); } }), () => undefined);
    const up = await request(`${upstream}${req.url ?? '/'}`, {
      method: method as 'GET',
      headers: requestEndToEnd(req.headers),
      body,
      dispatcher,
    });
    // upstream answers an upload once it has read it whole: every chunk went through the digest
    if (digest && up.statusCode >= 200 && up.statusCode < 300) options.onAccepted?.(req.url ?? '/', digest.digest('hex'));
    res.writeHead(up.statusCode, endToEnd(up.headers));
    state.phase = `${act}: passing the body on`;
    if (act === 'pass') {
      for await (const chunk of up.body) await send(res, chunk);
      return void res.end();
    }
    // cut or stall at a point of the body: an empty body is cut before its first byte
    const length = Number(up.headers['content-length'] ?? 0);
    const at = Math.floor(options.random() * length);
    let sent = 0;
    let struck = false;
    for await (const chunk of up.body as AsyncIterable<Buffer>) {
      if (!struck && sent + chunk.length > at) {
        struck = true;
        if (at > sent) res.write(chunk.subarray(0, at - sent));
        if (act === 'cut') {
          up.body.destroy();
          return void res.socket?.destroy();
        }
        res.flushHeaders();
        await new Promise((resolve) => setTimeout(resolve, options.stallMs * (1 + options.random())));
        await send(res, chunk.subarray(at - sent));
        continue;
      }
      sent += chunk.length;
      await send(res, chunk);
    }
    if (act === 'cut') return void res.socket?.destroy();
    res.end();
  };

  const server = createServer((req, res) => {
    // a failure (the upstream's, or the client gone) ends the connection: the cache sees it cut
    handle(req, res).catch(() => req.socket?.destroy());
  });
  server.on('connection', (socket: Socket) => {
    if (outage) return void socket.destroy();
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('chaos proxy: no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    counts,
    down: () => {
      outage = true;
      for (const socket of sockets) socket.destroy();
    },
    up: () => { outage = false; },
    calm: () => { calm = true; },
    stuck: (ms) => [...inFlight].filter(([, { since }]) => Date.now() - since > ms).map(([req, { since, phase }]) => `${req.method} ${req.url} for ${Date.now() - since} ms, ${phase}`),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // not close(): it would wait for requests whose client is gone
      await dispatcher.destroy();
    },
  };
}
