// Shared by the server commands: listen, announce, stop on signals.
import type { FastifyInstance } from 'fastify';
import { parseListen } from '../config/units.js';

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
