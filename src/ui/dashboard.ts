// /-/ui: the dashboard page and the chart library it uses, both served from this package
// (nothing is loaded from elsewhere; the Content-Security-Policy says so to the browser).
// An encapsulated route group: `await app.register(registerDashboard, { role: 'origin' })`.
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import type { FastifyInstance } from 'fastify';
import { NotFoundError } from '../errors.js';
import { DASHBOARD_HTML } from './page.js';
import { escapeHtml } from '../escape-html.js';

interface DashboardOptions {
  /** 'origin' or 'cache'; shown in the page title. */
  readonly role: string;
}

const require = createRequire(import.meta.url);

/** The only files served under /-/ui/assets/: uPlot's browser build and stylesheet. */
const ASSETS: ReadonlyMap<string, { path: string; type: string }> = new Map([
  ['uPlot.iife.min.js', { path: require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' }],
  ['uPlot.min.css', { path: require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' }],
]);

const CSP = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:";

export async function registerDashboard(app: FastifyInstance, options: DashboardOptions): Promise<void> {
  const page = DASHBOARD_HTML.replace('<title>fleetcache</title>', `<title>fleetcache ${escapeHtml(options.role)}</title>`);
  // HEAD wherever GET is: the cache does not add HEAD routes of its own (see its blob routes).
  const route = { logLevel: 'silent' as const, exposeHeadRoute: true, config: { kind: 'ops' } };
  app.get('/-/ui', route, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).header('cache-control', 'no-cache').send(page),
  );
  app.get<{ Params: { file: string } }>('/-/ui/assets/:file', route, async (request, reply) => {
    const asset = ASSETS.get(request.params.file);
    if (!asset) throw new NotFoundError(`no dashboard asset ${request.params.file}`);
    return reply.type(asset.type).header('cache-control', 'public, max-age=3600').send(createReadStream(asset.path));
  });
}
