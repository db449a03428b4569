// 405 with Allow (RFC 9110 §15.5.6) for a method a known path lacks (a write method, OPTIONS
// and TRACE, or GET and HEAD on a path that only takes writes, as POST /-/prune), where an
// unknown path stays a 404: the origin and the cache answer alike (nginx answers OPTIONS
// and TRACE of a file so too).
import type { FastifyInstance, RouteOptions } from 'fastify';
import { FleetError } from '../errors.js';

/** Methods no route takes unless it says so. */
const OTHER_METHODS = ['DELETE', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE'];
const READ_METHODS = ['GET', 'HEAD'];

/**
 * The methods answered path by path (a 404, a 405); any other (PROPFIND, QUERY) no path
 * has, and is answered 501 on every path (RFC 9110 §9.1).
 */
export const ROUTED_METHODS: ReadonlySet<string> = new Set([...READ_METHODS, ...OTHER_METHODS]);

/**
 * Watches the routes being added to `app` (its plugins' included); the function it
 * returns, called once all are, answers the other methods a path lacks, and GET and HEAD
 * where it has no GET, with 405 FC_ERR_METHOD_NOT_ALLOWED and Allow instead of 404. Those
 * answers take the route config of the path's first route (the origin accounts them by its
 * `kind`).
 */
export function collectRoutes(app: FastifyInstance): () => void {
  const paths = new Map<string, { methods: Set<string>; config: RouteOptions['config'] }>();
  app.addHook('onRoute', (route) => {
    const path = paths.get(route.url) ?? { methods: new Set<string>(), config: route.config };
    for (const method of [route.method].flat()) path.methods.add(method);
    paths.set(route.url, path);
  });
  return () => {
    for (const [url, { methods, config }] of [...paths]) {
      const missing = [...OTHER_METHODS, ...(methods.has('GET') ? [] : READ_METHODS)].filter((m) => !methods.has(m));
      if (missing.length === 0) continue;
      const allow = [...methods].sort().join(', ');
      app.route({
        method: missing,
        url,
        ...(config === undefined ? {} : { config }),
        handler: async (request, reply) => {
          reply.header('allow', allow);
          throw new FleetError('FC_ERR_METHOD_NOT_ALLOWED', `${request.method} is not allowed here; allowed: ${allow}`);
        },
      });
    }
  };
}
