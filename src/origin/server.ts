// The origin: the artifact service. buildOriginServer registers everything and returns
// the fastify instance without listening; only the CLI listens.
import Fastify, { type FastifyInstance } from 'fastify';
import { collectRoutes } from '../http/allowed-methods.js';
import { TokenCheck } from '../http/auth.js';
import { installErrorHandling } from '../http/errors.js';
import { answerUnavailableWhileClosing, baseServerOptions, buildOnDataDir, continueOnlyWhenAllowed, DEFAULT_MAX_HEADERS, refuseMalformedRequests } from '../http/server-options.js';
import { closeAfterUnreadBodies } from '../http/unread-body.js';
import { inPipelineOrder } from '../http/pipeline-order.js';
import { countEarlyAnswers, UNPARSED_METHOD } from '../http/early-answers.js';
import { DEFAULT_CLIENT_HEADER_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, limitConnections } from '../http/connection-limits.js';
import { TrafficLedger } from '../metrics/ledger.js';
import { DiskBlobStore } from '../store/disk.js';
import { NameStore } from '../store/names.js';
import type { BlobStore } from '../store/blob-store.js';
import type { OriginOptions } from './config.js';
import type { OriginContext } from './context.js';
import { casRoutes, loadInternalSet } from './routes/cas.js';
import { nameRoutes } from './routes/names.js';
import { opsRoutes } from './routes/ops.js';
import { BlobReferences, RECENT_MS } from './references.js';
import { NamingMarks } from './naming-marks.js';
import { Retention } from './retention.js';
import { RunArtifactBudget, DEFAULT_RUN_ARTIFACTS } from './run-budget.js';
import { after, every } from '../long-timer.js';
import { countRoutedRequests } from './request-count.js';
import { registerDashboard } from '../ui/dashboard.js';

const DEFAULT_MAX_BLOB_SIZE = 20 * 1024 ** 3;
const DEFAULT_MAX_RECORD_SIZE = 1024 ** 2;
/** Uploads and downloads stream for minutes; only a connection with no traffic is cut. */
const DEFAULT_IDLE_TIMEOUT_MS = 2 * 60_000;

/**
 * Prunes every `intervalMs`, the first one `firstAfterMs` after start (firstPruneDelay), or
 * an interval after start when that is sooner: an origin restarted more often than its
 * interval still prunes. A prune while the uploads from before the start are protected
 * deletes expired names but not their blobs, which the next prune collects. Each prune is
 * logged. Returns the function that unschedules them.
 */
function schedulePrunes(app: FastifyInstance, retention: Retention, intervalMs: number, firstAfterMs: number): () => void {
  const prune = (): void => {
    void retention.prune().then(
      (report) => app.log.info({ prune: report }, 'retention prune'),
      (err: unknown) => app.log.error({ err }, 'retention prune failed'),
    );
  };
  let cancel = after(Math.min(intervalMs, firstAfterMs), () => {
    prune();
    cancel = every(intervalMs, prune);
  });
  return () => cancel();
}

/** How often the store removes what interrupted uploads left (S3 temporary keys a day old). */
const LEFTOVER_SWEEP_MS = 60 * 60_000;

/**
 * Has `removeLeftovers` run every `intervalMs`, one at a time, failures logged (the next
 * one tries again). Returns the function that unschedules it and waits for a running one.
 */
function scheduleLeftoverSweeps(app: FastifyInstance, removeLeftovers: () => Promise<void>, intervalMs: number): () => Promise<void> {
  let running: Promise<void> | undefined;
  const cancel = every(intervalMs, () => {
    running ??= removeLeftovers()
      .catch((err: unknown) => app.log.warn({ err }, 'cannot remove what interrupted uploads left in the store; the next sweep tries again'))
      .finally(() => (running = undefined));
  });
  return async () => {
    cancel();
    await running;
  };
}

/** How long after start the first prune runs (at most). */
const FIRST_PRUNE_MS = 60_000;

/**
 * How long after a start at `now` the first prune waits: `firstAfterMs` (FIRST_PRUNE_MS by
 * default), and not while uploads from before the start are protected (until `unseenUntil`
 * + RECENT_MS, references.ts): that prune would delete names but no blob, and an origin
 * restarted more often than its interval none ever.
 */
export function firstPruneDelay(unseenUntil: number, now: number, firstAfterMs = FIRST_PRUNE_MS): number {
  return Math.max(firstAfterMs, unseenUntil + RECENT_MS - now + 1000);
}
/** The path of a run manifest (routes/names.ts), whose body is a record: maxRecordSize, not maxBlobSize, bounds it. */
const RUN_MANIFEST_PATH = /^\/projects\/[^/?]+\/runs\/[^/?]+(?:\?|$)/;

/** When this origin stopped cleanly (retention's protection of recent uploads, references.ts). */
const STOPPED = ['_retention', 'stopped'];

interface OriginServer {
  readonly app: FastifyInstance;
  readonly context: OriginContext;
}

export async function buildOriginServer(options: OriginOptions, store: BlobStore = new DiskBlobStore(options.dataDir)): Promise<FastifyInstance> {
  return (await buildOrigin(options, store)).app;
}

export async function buildOrigin(options: OriginOptions, store: BlobStore = new DiskBlobStore(options.dataDir)): Promise<OriginServer> {
  // Held before the stores open: opening empties tmp/.
  return buildOnDataDir(options.dataDir, () => buildOnLockedDir(options, store), (origin) => origin.app);
}

async function buildOnLockedDir(options: OriginOptions, store: BlobStore): Promise<OriginServer> {
  const names = new NameStore(options.dataDir);
  await store.open();
  await names.open();
  const marks = new NamingMarks(options.dataDir);
  await marks.open();
  // An earlier process's clean stop, recorded (onClose below) and taken once: a crash leaves
  // none. A damaged record (a disk's doing: it is renamed into place whole) counts as none,
  // the cautious reading, rather than keep the origin from starting.
  let damagedStop: unknown;
  const stoppedAt = options.soleWriter ? undefined : (await names.find<{ at: number }>(STOPPED).catch((err: unknown) => void (damagedStop = err)))?.at;
  const context: OriginContext = {
    store,
    names,
    ledger: new TrafficLedger('origin'),
    auth: new TokenCheck(options.tokens),
    readAccess: options.readAccess ?? 'public',
    maxBlobSize: options.maxBlobSize ?? DEFAULT_MAX_BLOB_SIZE,
    maxRecordSize: options.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE,
    runBudget: new RunArtifactBudget(names, options.runArtifacts ?? DEFAULT_RUN_ARTIFACTS),
    internal: new Set(),
    references: new BlobReferences(options.soleWriter ? -Infinity : stoppedAt ?? Date.now()),
    marks,
  };
  await names.delete(STOPPED);
  await loadInternalSet(context);

  const app = Fastify({
    ...baseServerOptions(options.logLevel, context.maxRecordSize, options.shutdownTimeoutMs),
    // HEAD wherever GET is (RFC 9110 §9.1): every blob route declares its own HEAD, which
    // reads nothing; fastify's automatic one serves the small GET-only answers (lists, /-/).
    exposeHeadRoutes: true,
    connectionTimeout: Math.ceil(options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS), // fastify takes whole ms
  });
  limitConnections(app.server, { clientHeaderTimeoutMs: options.clientHeaderTimeoutMs ?? DEFAULT_CLIENT_HEADER_TIMEOUT_MS, maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS }, app.log);
  refuseMalformedRequests(app, options.maxHeaders ?? DEFAULT_MAX_HEADERS);
  answerUnavailableWhileClosing(app);
  closeAfterUnreadBodies(app.server);
  app.addHook('onRequest', (request, reply, done) => inPipelineOrder(request.raw, reply.raw, () => done()));
  continueOnlyWhenAllowed(app.server, (path) => (RUN_MANIFEST_PATH.test(path) ? context.maxRecordSize : context.maxBlobSize));
  // Bodies are never buffered by a parser: every route streams request.raw itself.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  installErrorHandling(app);
  if (damagedStop !== undefined) app.log.warn({ err: damagedStop }, 'the record of the last clean stop is damaged: started as after a crash (blobs stay protected from prunes for a while)');
  countRoutedRequests(app, context.ledger);
  // refused before routing: no route, and for a request line not parsed, no method either
  countEarlyAnswers(app.server, (fe, method) => context.ledger.request('other', method ?? UNPARSED_METHOD, fe.status));
  // The answers held whole in memory (lists of bases, PUT results, run manifests, errors)
  // count as they are sent; blobs stream, and blob-reply.ts counts them as they go. Not the
  // monitoring's own reads (/-/stats, /-/metrics): a run's report would count its scrapes.
  app.addHook('onSend', async (request, _reply, payload) => {
    const kind = request.routeOptions.config.kind ?? 'other';
    if (request.method !== 'HEAD' && kind !== 'ops' && (typeof payload === 'string' || Buffer.isBuffer(payload))) context.ledger.bytesOut(kind, Buffer.byteLength(payload));
    return payload;
  });

  // every request answered: nothing this process took is unknown to the next one after this
  app.addHook('onClose', async () => {
    await names.put(STOPPED, { at: Date.now() }).catch((err: Error) => app.log.error({ err }, 'cannot record the clean stop'));
  });
  if (store.removeLeftovers) {
    const unschedule = scheduleLeftoverSweeps(app, () => store.removeLeftovers!(), options.leftoverSweepMs ?? LEFTOVER_SWEEP_MS);
    app.addHook('onClose', unschedule);
  }
  const retention = options.retention && new Retention(context, options.retention, app.log);
  if (retention) {
    await retention.restore();
    const intervalMs = options.retention!.intervalMs;
    const firstAfterMs = firstPruneDelay(context.references.unseenUntil, Date.now(), options.retention!.firstAfterMs);
    const unschedule = intervalMs > 0 ? schedulePrunes(app, retention, intervalMs, firstAfterMs) : () => undefined;
    app.addHook('onClose', async () => {
      unschedule();
      await retention.stop();
    });
  }

  const refuseOtherMethods = collectRoutes(app);
  await app.register(async (scope) => opsRoutes(scope, context, retention));
  await app.register(async (scope) => casRoutes(scope, context));
  await app.register(async (scope) => nameRoutes(scope, context));
  await app.register(registerDashboard, { role: 'origin' });
  refuseOtherMethods();
  return { app, context };
}
