// Options every fleetcache HTTP server shares (origin and cache alike).
import { LogController, type FastifyBaseLogger, type FastifyServerOptions } from 'fastify';
import { createLogger } from '../log.js';
import { frameworkErrors } from './errors.js';

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
