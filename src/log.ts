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

/** Log text held while stderr takes none; past it, new lines are dropped. */
const HELD_MAX = 16 * 1024 * 1024;

/**
 * stderr, written asynchronously, whose failures cost log lines, never the server: stderr
 * redirected to a file on a full disk fails every write (ENOSPC), and pino then re-emitted
 * the error, which nothing handled (the process went down), and its flush at exit retried
 * the failing write every 100 ms for ever (the process never ended: no restart either).
 * Lines are held (up to HELD_MAX) and written once stderr takes them again; while it fails,
 * the flushes at exit write nothing.
 */
function stderrDestination(): ReturnType<typeof pino.destination> {
  const destination = pino.destination({ fd: 2, sync: false, maxLength: HELD_MAX });
  let failing = false;
  destination.on('error', () => {
    failing = true;
  });
  destination.on('write', () => {
    failing = false;
  });
  const { flush, flushSync } = destination;
  destination.flush = function (this: typeof destination, cb?: (err?: Error) => unknown) {
    if (!failing) flush.call(this, cb);
    else cb?.();
  };
  destination.flushSync = function (this: typeof destination) {
    if (!failing) flushSync.call(this);
  };
  return destination;
}

export function createLogger(level?: string): Logger {
  return pino(loggerOptions(level), stderrDestination());
}
