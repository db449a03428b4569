// Structured logs (pino) on stderr, so stdout stays parseable. Secrets are redacted.
import { writeSync } from 'node:fs';
import { pino, type Logger, type LoggerOptions } from 'pino';

const REDACT_PATHS = [
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

/** The text sonic-boom (4.x, utf8 mode) holds unwritten, as its own flushSync reads it. */
interface HeldText {
  readonly fd: number;
  _writing: boolean;
  _writingBuf: string;
  _bufs: string[];
  _len: number;
}

/** Whether `stream` keeps its unwritten text as HeldText says (sonic-boom's own fields, not its API). */
function holdsText(stream: object): stream is HeldText {
  const fields: Partial<Record<keyof HeldText, unknown>> = stream;
  return typeof fields._writingBuf === 'string' && Array.isArray(fields._bufs);
}

/** How long the exit's flush retries a stderr that is busy (EAGAIN, a non-blocking pipe). */
const EXIT_FLUSH_MS = 1000;

/**
 * Writes what `stream` holds, once, synchronously: sonic-boom's own flushSync retries any
 * failing write every 100 ms for ever (a full disk: the exit never ends). A write that
 * fails drops the rest; a busy stderr is retried for EXIT_FLUSH_MS.
 */
function flushOnce(stream: HeldText): void {
  let bytes = Buffer.from((stream._writing ? '' : stream._writingBuf) + stream._bufs.join(''));
  stream._bufs = [];
  stream._len = 0;
  if (!stream._writing) stream._writingBuf = '';
  const until = Date.now() + EXIT_FLUSH_MS;
  while (bytes.length > 0) {
    try {
      bytes = bytes.subarray(writeSync(stream.fd, bytes));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > until) return; // lost: the exit goes on
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}

/**
 * stderr, written asynchronously, whose failures cost log lines, never the server: stderr
 * redirected to a file on a full disk fails every write (ENOSPC), and pino then re-emitted
 * the error, which nothing handled (the process went down), and its flush at exit retried
 * the failing write every 100 ms for ever (the process never ended: no restart either).
 * Lines are held (up to HELD_MAX) and written once stderr takes them again; the flushes at
 * exit write them once (flushOnce).
 */
function stderrDestination(): ReturnType<typeof pino.destination> {
  const destination = pino.destination({ fd: 2, sync: false, maxLength: HELD_MAX });
  // a failing write: dropped here, not re-emitted to a process that has no handler for it
  destination.on('error', () => undefined);
  if (!holdsText(destination)) return destination; // another sonic-boom: as it is
  destination.flushSync = () => flushOnce(destination);
  // at 'beforeExit' (a flush, then an end once drained): written once, at once
  destination.flush = (cb?: (err?: Error) => unknown) => {
    flushOnce(destination);
    cb?.();
  };
  return destination;
}

export function createLogger(level?: string): Logger {
  return pino(loggerOptions(level), stderrDestination());
}
