// What a server logs, and from which level: the levels of a configuration's `logLevel`, the
// environment's override, and the warning on SIGHUP. Apart from server-options.ts, which loads
// fastify: a multi-process cache's primary, which serves nothing, needs these and not fastify.
import { Type } from '@sinclair/typebox';
import type { FastifyBaseLogger } from 'fastify';
import { ConfigError } from '../errors.js';

/** pino's levels, the `logLevel` of an origin or cache configuration. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * A server's log level: `configured` (its file's `logLevel`, else info), unless the environment
 * variable FLEETCACHE_LOG_LEVEL names another: an operator debugging a deployed server without
 * editing its file, a test keeping a child server quiet.
 */
export function serverLogLevel(configured: string | undefined): string {
  const env = process.env.FLEETCACHE_LOG_LEVEL?.trim();
  if (!env) return configured ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(env)) throw new ConfigError(`FLEETCACHE_LOG_LEVEL: must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(env)}`);
  return env;
}

/** The schema of `logLevel` (origin and cache): one of LOG_LEVELS, named in the validator's message. */
export function logLevelSchema(options: { default?: (typeof LOG_LEVELS)[number] } = {}) {
  return Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)), { description: LOG_LEVELS.join(', '), ...options });
}

/**
 * SIGHUP: an operator's reflex after editing a token file or a configuration (`systemctl
 * reload`, `kill -HUP`), which by default ends the process at once, cutting every transfer,
 * and which systemd's Restart=on-failure takes for a clean exit. Nothing is reloaded: the
 * server says so and goes on. `warn`: false in a cache worker (its primary says it once).
 */
export function ignoreHangup(log: Pick<FastifyBaseLogger, 'warn'>, warn = true): void {
  if (warn) log.warn('SIGHUP ignored: the configuration and tokens are read at start; restart the server to apply changes (SIGTERM drains it first)');
}
