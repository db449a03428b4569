// Options every fleetcache HTTP server shares (origin and cache alike).
import type { IncomingMessage } from 'node:http';
import { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { FleetError } from '../errors.js';
import { createLogger } from '../log.js';
import { lockDataDir } from '../store/dir-lock.js';
import { frameworkErrors } from './errors.js';

/** Header fields a request may have, Host included (the origin's limits.maxHeaders, the cache's). */
export const DEFAULT_MAX_HEADERS = 64;

/** Whether `req` has more than `max` header fields. */
export function hasTooManyHeaders(req: IncomingMessage, max: number): boolean {
  return req.rawHeaders.length > 2 * max;
}

/**
 * Refuses a request with more than `max` header fields (431). Node's own maxHeadersCount
 * only drops the fields past it, and not exactly: it is set just above `max`, to keep
 * what it stores small, and the count is checked here.
 */
export function limitHeaderCount(app: FastifyInstance, max: number): void {
  app.server.maxHeadersCount = max + 1;
  app.addHook('onRequest', (request, _reply, done) => {
    done(hasTooManyHeaders(request.raw, max) ? new FleetError('FC_ERR_TOO_MANY_HEADERS', `the request has more than ${max} header fields`) : undefined);
  });
}

export function baseServerOptions(logLevel: string | false | undefined, bodyLimit: number): FastifyServerOptions & { loggerInstance: FastifyBaseLogger } {
  return {
    loggerInstance: createLogger(logLevel === false ? 'silent' : (logLevel ?? 'info')) as FastifyBaseLogger,
    // Per-request access logs cost more than the requests on hot paths; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 1024 },
    bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: true,
    // HEAD routes are explicit: the automatic ones would read a whole blob to discard it.
    exposeHeadRoutes: false,
    frameworkErrors,
  };
}

/**
 * Builds a server on data directory `dir` while holding it (store/dir-lock.ts), taken
 * before `build` touches anything in it: released when the server closes, or at once when
 * building fails.
 */
export async function buildOnDataDir<T>(dir: string, build: () => Promise<T>, appOf: (built: T) => FastifyInstance): Promise<T> {
  const lock = await lockDataDir(dir);
  try {
    const built = await build();
    appOf(built).addHook('onClose', () => lock.release());
    return built;
  } catch (err) {
    await lock.release();
    throw err;
  }
}
