// Structured logs (pino) on stderr, so stdout stays parseable. Secrets are redacted.
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-fleetcache-token"]',
  'headers.authorization',
  'token',
  '*.token',
];

function loggerOptions(level = 'info'): LoggerOptions {
  return { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
}

export function createLogger(level?: string): Logger {
  return pino(loggerOptions(level), pino.destination({ fd: 2, sync: false }));
}
