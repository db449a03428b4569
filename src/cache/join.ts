// A worker joining a fill that another worker leads: the request goes to the leader's
// private Unix socket, where it joins the fill like any local waiter (streamed as it
// arrives, Range included, aborted if upstream dies); this worker relays the answer.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Pool } from 'undici';
import type { CacheContext } from './context.js';
import type { Kind } from './metrics.js';
import { endToEnd, type HeaderMap } from './upstream.js';

/** Request headers that decide what the leader answers (the fill key, ranges, validators). */
const JOIN_HEADERS = ['authorization', 'range', 'if-range', 'if-none-match', 'accept', 'accept-encoding', 'accept-language'];

/** One pool per leader socket (a connection per concurrent join), for the life of the process. */
const clients = new Map<string, Pool>();

function clientFor(socket: string): Pool {
  let client = clients.get(socket);
  if (!client) {
    client = new Pool('http://localhost', { socketPath: socket, bodyTimeout: 0, headersTimeout: 0 });
    clients.set(socket, client);
  }
  return client;
}

export async function closeJoinClients(): Promise<void> {
  const all = [...clients.values()];
  clients.clear();
  await Promise.all(all.map((c) => c.destroy()));
}

/**
 * Answers `req` through the fill `socket`'s worker leads. Resolves to false when that
 * worker cannot be reached before any byte was sent (it died): the caller goes upstream.
 */
export async function joinRemote(ctx: CacheContext, req: FastifyRequest, reply: FastifyReply, kind: Kind, socket: string): Promise<boolean> {
  const headers: HeaderMap = {};
  for (const name of JOIN_HEADERS) {
    const v = req.headers[name];
    if (typeof v === 'string') headers[name] = v;
  }
  let res;
  try {
    res = await clientFor(socket).request({ path: req.url, method: 'GET', headers });
  } catch (err) {
    ctx.log.warn({ socket, err: (err as Error).message }, 'cannot join a fill of another worker');
    return false;
  }
  ctx.metrics.collapsed(kind);
  const out = endToEnd(res.headers);
  out['x-cache'] = 'COLLAPSED';
  reply.code(res.statusCode).headers(out);
  let n = 0;
  res.body.on('data', (c: Buffer) => (n += c.length));
  res.body.once('end', () => ctx.metrics.served(kind, n));
  reply.send(res.body);
  return true;
}
