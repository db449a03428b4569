// Shared by the server commands: listen, announce, stop on signals.
import { rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { listenUrl, parseListen } from '../config/units.js';
import { CLOSE_MARGIN_MS, DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../http/server-options.js';
import { ignoreHangup } from '../http/server-logging.js';
import { listenError } from '../http/listen-error.js';

/**
 * The longest drain `app` can run: its pluginTimeout also bounds the preClose hook the drain
 * runs in (see pluginTimeoutFor), and a close past it fails instead of cutting. `wanted` when
 * the server was built for it (baseServerOptions with that shutdown timeout), else less.
 */
export function drainLimit(app: FastifyInstance, wanted: number): number {
  const bound = app.initialConfig.pluginTimeout;
  if (!bound) return wanted; // 0: no bound
  return Math.min(wanted, Math.max(0, bound - CLOSE_MARGIN_MS));
}

/**
 * Stops accepting connections and waits, at most `ms`, for those open to end. Idle ones
 * are closed at once (server.close), and each other one as soon as it goes idle: its
 * keep-alive is cut to nothing. (Not closeIdleConnections() on a timer: node counts as idle
 * a connection whose answer has ended but is not yet flushed, and would cut its tail.)
 * `settle` is the other work in flight to wait for (a cache's fills, which clients of other
 * workers may be following). What is left after `ms` is cut by fastify's close
 * (forceCloseConnections): a client never sees a clean end of a cut body.
 */
function drain(app: FastifyInstance, ms: number, settle: () => Promise<unknown>): Promise<void> {
  const server: Server = app.server;
  server.keepAliveTimeout = 1;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      server.getConnections((_err, connections) => {
        app.log.warn({ connections, shutdownTimeoutMs: ms }, 'shutdown timeout: cutting what is still in flight');
        resolve();
      });
    }, ms);
  });
  return Promise.race([Promise.all([closed, settle()]).then(() => undefined), timeout]).finally(() => clearTimeout(timer));
}

/**
 * Where a worker of a multi-process cache listens: its private socket, which no client uses
 * (the primary hands it connections: see cache/cluster/handoff.ts). `serving` is called once
 * it listens, its signal handlers in place; nothing is printed (the primary announces the cache).
 */
interface WorkerListen {
  readonly path: string;
  readonly serving: () => void;
}

interface ServeOptions {
  /** Print the "listening" line (a worker's socket never is). */
  readonly announce?: boolean;
  readonly shutdownTimeoutMs?: number;
  /** Work in flight besides the connections that a stopping server waits for (see drain). */
  readonly settle?: () => Promise<unknown>;
}

/** A cache worker's log line once it listens: its socket is no address to use (the primary logs the cache's). */
const workerListenText = (path: string): string => `serving the connections the primary hands over (private socket ${path})`;

/**
 * Listens on `listen` (HOST:PORT, or a cache worker's socket), prints `listening
 * http://HOST:PORT` on stdout (not a worker), and resolves when a signal stopped the server.
 * On SIGINT or SIGTERM the server drains (see drain) for up to `shutdownTimeoutMs`; more
 * signals meanwhile are ignored (systemd signals a cache's workers as well as its primary,
 * which signals them too), except a second SIGINT, which cuts at once (Ctrl-C twice).
 */
export async function serveUntilSignal(app: FastifyInstance, listen: string | WorkerListen, { announce = true, shutdownTimeoutMs = DEFAULT_SHUTDOWN_TIMEOUT_MS, settle = async () => undefined }: ServeOptions = {}): Promise<void> {
  const onPort = typeof listen === 'string';
  const limit = drainLimit(app, shutdownTimeoutMs);
  if (limit < shutdownTimeoutMs) {
    app.log.warn({ shutdownTimeoutMs, pluginTimeout: app.initialConfig.pluginTimeout, drainMs: limit }, 'shutdownTimeout is longer than this server was built for: a drain is cut sooner');
  }
  let cut: (() => void) | undefined;
  app.addHook('preClose', async () => {
    await Promise.race([drain(app, limit, settle), new Promise<void>((resolve) => (cut = resolve))]);
  });
  try {
    // A worker's socket is its own (exclusive): through node's cluster, the primary would
    // accept its connections. The file of a worker it replaces (killed) is in the way.
    if (!onPort) await rm(listen.path, { force: true });
    await app.listen(onPort ? parseListen(listen) : { path: listen.path, exclusive: true, listenTextResolver: workerListenText });
  } catch (err) {
    await app.close().catch(() => undefined); // releases the data directory
    throw onPort ? listenError(err, listen) : err;
  }
  // The line is written after the handlers are in place: whoever reads it may signal at once.
  // A close that fails (a close hook that throws) rejects: the command ends with the
  // catalogue's message and exit code, not a process killed by an unhandled rejection.
  await new Promise<void>((resolve, reject) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        if (signal === 'SIGINT') cut?.();
        return;
      }
      stopping = true;
      if (onPort && announce) app.log.info({ signal }, 'stopping: draining the requests in flight');
      const stopped = (err?: unknown): void => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.off('SIGHUP', onHangup);
        if (err === undefined) resolve();
        else reject(err);
      };
      app.close().then(() => stopped(), stopped);
    };
    const onHangup = (): void => ignoreHangup(app.log, onPort && announce);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onHangup);
    if (!onPort) listen.serving();
    else if (announce) process.stdout.write(`listening ${listenUrl(listen, (app.server.address() as AddressInfo).port)}\n`);
  });
}
