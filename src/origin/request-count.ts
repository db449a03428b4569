// Each routed request counted once in the ledger: as the status it was answered, or as aborted.
import type { FastifyInstance } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { TrafficLedger } from '../metrics/ledger.js';

/**
 * Counts `app`'s routed requests and their times in `ledger` as their answers end (onResponse).
 * A request whose client went before its answer was sent (a PUT cut mid-body) never reaches
 * onResponse: its answer's close counts it, with status `aborted`, and no time.
 */
export function countRoutedRequests(app: FastifyInstance, ledger: TrafficLedger): void {
  // onResponse also runs on an answer's error, which may come after its close: counted once
  const counted = new WeakSet<IncomingMessage>();
  app.addHook('onRequest', (request, reply, done) => {
    reply.raw.once('close', () => {
      // a whole answer's close may come before its onResponse: that one counts it
      if (reply.raw.writableFinished || counted.has(request.raw)) return;
      counted.add(request.raw);
      ledger.request(request.routeOptions.config.kind ?? 'other', request.method, 'aborted');
    });
    done();
  });
  app.addHook('onResponse', async (request, reply) => {
    if (counted.has(request.raw)) return;
    counted.add(request.raw);
    const kind = request.routeOptions.config.kind ?? 'other';
    ledger.request(kind, request.method, reply.statusCode);
    ledger.requestTook(kind, request.method, reply.elapsedTime / 1000);
  });
}
