// Shared by the server commands: parse HOST:PORT, listen, announce, stop on signals.
import type { FastifyInstance } from 'fastify';
import { UsageError } from '../errors.js';

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`invalid listen address "${text}" (expected HOST:PORT, e.g. 127.0.0.1:8080)`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/**
 * Listens, prints `listening http://HOST:PORT` on stdout (unless `announce` is false: a
 * cache worker, whose primary announces), and resolves when a signal stopped the server.
 */
export async function serveUntilSignal(app: FastifyInstance, listen: string, { announce = true } = {}): Promise<void> {
  const { host, port } = parseListen(listen);
  await app.listen({ host, port });
  const addr = app.server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  if (announce) process.stdout.write(`listening http://${shownHost}:${actualPort}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void app.close().then(resolve, resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
