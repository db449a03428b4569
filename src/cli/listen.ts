// Shared by the server commands: listen, announce, stop on signals.
import type { Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { parseListen } from '../config/units.js';
import { ConfigError } from '../errors.js';
import { CLOSE_MARGIN_MS, DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../http/server-options.js';
import { ignoreHangup } from '../http/server-logging.js';

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

/** Why the system refused to listen, in the user's terms. */
const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'the port is in use by another process',
  EADDRNOTAVAIL: 'the address is not one of this machine\'s',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve (for now)',
  EAI_FAIL: 'the host name does not resolve',
};

/** A failed listen as a configuration error (exit 3) naming the address, when the cause is the address or the system. */
function listenError(err: unknown, listen: string): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const why = code === undefined ? undefined : LISTEN_ERRORS[code];
  if (why === undefined) return err;
  return new ConfigError(`cannot listen on ${listen}: ${why} (${code})`, undefined, undefined, 'listen');
}

interface ServeOptions {
  /** Print the "listening" line (not in a cache worker, whose primary does). */
  readonly announce?: boolean;
  readonly shutdownTimeoutMs?: number;
  /** Work in flight besides the connections that a stopping server waits for (see drain). */
  readonly settle?: () => Promise<unknown>;
}

/**
 * Listens, prints `listening http://HOST:PORT` on stdout (unless `announce` is false: a
 * cache worker, whose primary announces), and resolves when a signal stopped the server.
 * On SIGINT or SIGTERM the server drains (see drain) for up to `shutdownTimeoutMs`; more
 * signals meanwhile are ignored (systemd signals a cache's workers as well as its primary,
 * which signals them too), except a second SIGINT, which cuts at once (Ctrl-C twice).
 */
export async function serveUntilSignal(app: FastifyInstance, listen: string, { announce = true, shutdownTimeoutMs = DEFAULT_SHUTDOWN_TIMEOUT_MS, settle = async () => undefined }: ServeOptions = {}): Promise<void> {
  const { host, port } = parseListen(listen);
  const limit = drainLimit(app, shutdownTimeoutMs);
  if (limit < shutdownTimeoutMs) {
    app.log.warn({ shutdownTimeoutMs, pluginTimeout: app.initialConfig.pluginTimeout, drainMs: limit }, 'shutdownTimeout is longer than this server was built for: a drain is cut sooner');
  }
  let cut: (() => void) | undefined;
  app.addHook('preClose', async () => {
    await Promise.race([drain(app, limit, settle), new Promise<void>((resolve) => (cut = resolve))]);
  });
  try {
    await app.listen({ host, port });
  } catch (err) {
    await app.close().catch(() => undefined); // releases the data directory
    throw listenError(err, listen);
  }
  const addr = app.server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
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
      if (announce) app.log.info({ signal }, 'stopping: draining the requests in flight');
      const stopped = (err?: unknown): void => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.off('SIGHUP', onHangup);
        if (err === undefined) resolve();
        else reject(err);
      };
      app.close().then(() => stopped(), stopped);
    };
    const onHangup = (): void => ignoreHangup(app.log, announce);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onHangup);
    if (announce) process.stdout.write(`listening http://${shownHost}:${actualPort}\n`);
  });
}
