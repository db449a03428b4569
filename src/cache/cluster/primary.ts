// The primary of a multi-process cache (see protocol.ts): owns the LRU index of the data
// directory, listens on the cache's port and hands each connection to a worker (handoff.ts),
// forks the workers that serve, restarts one that dies (within limits, see
// RESTART_LIMIT_BURST), and stops them all on SIGINT/SIGTERM (SIGHUP is ignored, said in the log).
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Server } from 'node:net';
import path from 'node:path';
import { AggregatorRegistry, Counter, Registry } from 'prom-client';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { DEFAULT_WORKER_RESTART_DELAY_MS, DEFAULT_WORKER_TIMEOUT_MS, type CacheConfig } from '../config.js';
import { DiskStore, isCasId, NONE_RESERVED, sameReserved, type Reserved } from '../disk-store.js';
import { ConfigError, FleetError } from '../../errors.js';
import { listenUrl, parseListen } from '../../config/units.js';
import { DEFAULT_MAX_CONNECTIONS } from '../../http/connection-limits.js';
import { listenError } from '../../http/listen-error.js';
import { ignoreHangup } from '../../http/server-logging.js';
import { lockDataDir } from '../../store/dir-lock.js';
import { addTally, emptyTally, registerStartTime, registerTallyCounters, TALLY_COUNTERS, type KindTally } from '../metrics.js';
import { ConnectionHandoff, type HandConnection } from './handoff.js';
import { Outbox, unbatch, workerEnv, type HandedConnection, type MetricsJson, type PrimaryMessage, type StoreFigures, type WorkerMessage } from './protocol.js';
import { removeLeftoversOfDeadPids } from '../../pid-alive.js';

const STORE_BROADCAST_MS = 250;

/*
 * Restarting workers that die once the cache has started (one that cannot start stops the
 * cache at once: see `failed`). A worker that dies is replaced after `workerRestartDelay`
 * (systemd's RestartSec; 250 ms by default), doubled for each other death of any worker
 * within the last RESTART_LIMIT_WINDOW_MS (0.25 s, 0.5 s, 1 s, 2 s), so that a cause that kills
 * every new worker (a request that crashes it, memory the kernel takes back at once) is not
 * met with a new process at once. The RESTART_LIMIT_BURST-th death within the window gives
 * up, as systemd's StartLimitBurst within StartLimitIntervalSec: the primary logs an error,
 * stops the other workers and exits non-zero (FC_ERR_RESTART_LIMIT), for its own supervisor
 * (systemd's Restart=, say) to see that the cache failed rather than a cache serving with
 * ever fewer workers.
 */
const RESTART_LIMIT_BURST = 5;
const RESTART_LIMIT_WINDOW_MS = 60_000;

/*
 * A worker that stops answering (stopped, wedged in a loop) keeps its share of the shared
 * port's connections, which then hang, while /-/healthz, answered by the others, stays green.
 * The primary asks each listening worker for its tally every WATCH_MS (the answer is the
 * ping's: PING_REQ is no question's number) and kills one that left a question unanswered
 * for longer than `workerTimeout`; it is then replaced as a worker that died. A tick that
 * comes far too late means the primary itself was stopped (the whole group: Ctrl-Z, a paused
 * machine): the questions in flight are asked again rather than held against the workers.
 * Each look also touches the socket directory (see touchSocketDir).
 */
const WATCH_MS = 5_000;
const PING_REQ = 0;

/** A worker of the primary's, with its tallies as last reported (`tally`), its metrics as last scraped or reported (`metrics`). */
interface LiveWorker {
  worker: Worker;
  outbox: Outbox<PrimaryMessage>;
  leading: number;
  /** The bodies it reads, by id, with their size (counted in the store's readers: see DiskStore.readerOpened). */
  reading: Map<string, number>;
  /** The room its reservations in progress hold, as it last said; and the other workers', as it was last told. */
  reserved: Reserved;
  toldOthersReserved: Reserved;
  tally: Record<string, KindTally>;
  metrics?: MetricsJson;
  /** Serving (it said 'ready'), so asked every WATCH_MS. */
  watched?: boolean;
  /** When the oldest question it has not answered yet was sent. */
  asked?: number;
  /** The pings it has not answered yet, oldest first: when each was sent (ConnectionHandoff.moment). */
  pings: number[];
}

interface PrimaryHandle {
  /**
   * The cache's URL, once every worker serves; undefined when the cache was stopped first (a
   * signal while starting). Rejects with its error when a worker fails to start: the workers
   * are then stopped (see `stopped`).
   */
  readonly url: Promise<string | undefined>;
  /**
   * Resolves when the workers have stopped after `stop()` or a signal; rejects with
   * FC_ERR_RESTART_LIMIT once they have when workers kept dying (see RESTART_LIMIT_BURST).
   */
  readonly stopped: Promise<void>;
  stop(): void;
}

const SOCKET_DIR_PREFIX = 'fleetcache-cache-';
const SOCKET_DIR = new RegExp(`^${SOCKET_DIR_PREFIX}(\\d+)-`);

/** A worker's private socket (where others follow its fills), in the primary's socket directory. */
const socketName = (index: number): string => `w${index}.sock`;
/** Where a worker's HTTP server listens (see WorkerEnv.http): as long as socketName (see checkSocketPaths). */
const httpSocketName = (index: number): string => `h${index}.sock`;

/**
 * The longest path a Unix socket can listen on: sun_path holds 108 bytes on Linux (104 on
 * macOS and the BSDs), its terminating NUL included. Past it, listening fails with an error
 * that names no path (EADDRINUSE on Linux, taken for the cache's port).
 */
const SOCKET_PATH_MAX = (process.platform === 'linux' ? 108 : 104) - 1;

/** The most digits a PID has (Linux's pid_max is at most 2^22). */
const PID_DIGITS_MAX = 7;

/**
 * Refuses a temporary directory `parent` whose path leaves too little room for the workers'
 * socket paths, before anything starts; reckoned with the longest PID, so that whether a
 * cache starts does not depend on its PID.
 */
function checkSocketPaths(parent: string, workers: number): void {
  // what mkdtemp gives: 6 characters after the prefix
  const longest = (pid: string): string => path.join(parent, `${SOCKET_DIR_PREFIX}${pid}-XXXXXX`, socketName(workers - 1));
  const bytes = Buffer.byteLength(longest('9'.repeat(PID_DIGITS_MAX)));
  if (bytes <= SOCKET_PATH_MAX) return;
  const room = Buffer.byteLength(parent) - (bytes - SOCKET_PATH_MAX);
  throw new ConfigError(
    `the cache workers' sockets would be at ${longest('<pid>')}, up to ${bytes} bytes, longer than the ${SOCKET_PATH_MAX} bytes a Unix socket path may have: ` +
      `set TMPDIR to a directory whose path is at most ${room} bytes long (the temporary directory is ${parent})`,
    undefined, undefined, 'TMPDIR',
  );
}

/**
 * Removes the socket directories (`fleetcache-cache-<pid>-*` in `parent`) of primaries that
 * are gone: one killed with SIGKILL cannot remove its own. A directory whose PID is alive
 * (another cache, or a PID reused since) is left alone, and so is one its primary touched
 * lately (a live primary does on each look at its workers, see WATCH_MS: one in another PID
 * namespace sharing `parent` has a PID that is none here), and one this user may not remove
 * (another user's cache left it; its owner's next start sweeps it).
 */
export function removeStaleSocketDirs(parent: string): void {
  removeLeftoversOfDeadPids(parent, (name) => {
    const pid = SOCKET_DIR.exec(name)?.[1];
    return pid === undefined ? undefined : Number(pid);
  });
}

/**
 * Marks `dir`, a live primary's socket directory, as in use: a cache starting in another PID
 * namespace (a container sharing /tmp) cannot tell the primary alive by its PID, and sweeps
 * only a directory left unmodified for LEFTOVER_IDLE_MS (see removeStaleSocketDirs).
 */
function touchSocketDir(dir: string): void {
  const now = new Date();
  try {
    utimesSync(dir, now, now);
  } catch {
    // gone (removed by hand): nothing left to keep
  }
}

function addTallies(into: Record<string, KindTally>, from: Record<string, KindTally>): void {
  for (const [kind, t] of Object.entries(from)) addTally((into[kind] ??= emptyTally()), t);
}

/** The counters a dead worker's tallies give (see lastCounts), not its last scrape. */
const TALLY_COUNTER_NAMES = new Set(TALLY_COUNTERS.map(([name]) => name));

/**
 * A dead worker's last reported tallies, each raised to its counter in the worker's last
 * scrape (newer, when a report was still due): its counts since that scrape, up to its last
 * report, stay in /-/metrics as in /-/stats, and /-/metrics never goes down with it.
 */
function lastCounts(tally: Record<string, KindTally>, scraped: MetricsJson = []): Record<string, KindTally> {
  const out: Record<string, KindTally> = {};
  addTallies(out, tally);
  for (const [name, , field] of TALLY_COUNTERS) {
    for (const v of scraped.find((m) => m.name === name)?.values ?? []) {
      const t = (out[String(v.labels.kind)] ??= emptyTally());
      t[field] = Math.max(t[field], v.value);
    }
  }
  return out;
}

/**
 * `sum` plus the counters of `from` (its gauges left out: what they measured is gone with its
 * process; and those of its tallies, counted from them: see lastCounts). A counter aggregated
 * by max is the whole cache's (the index's evictions, which every worker reports): kept as
 * the largest, not added up once per dead worker.
 */
function addCounters(sum: MetricsJson, from: MetricsJson): MetricsJson {
  const out = new Map(sum.map((m) => [m.name, { ...m, values: m.values.map((v) => ({ ...v })) }]));
  // prom-client's JSON says "counter" where its typings name an enum.
  for (const m of from.filter((f) => String(f.type) === 'counter' && !TALLY_COUNTER_NAMES.has(f.name))) {
    const into = out.get(m.name) ?? { ...m, values: [] };
    out.set(m.name, into);
    for (const v of m.values) {
      const key = JSON.stringify(v.labels);
      const same = into.values.find((w) => JSON.stringify(w.labels) === key);
      if (same) same.value = m.aggregator === 'max' ? Math.max(same.value, v.value) : same.value + v.value;
      else into.values.push({ ...v });
    }
  }
  return [...out.values()];
}

/** Listens on `at` (`listen` parsed) with `server`; a failure said in the user's terms (see listenError). */
async function listenOn(server: Server, listen: string, { host, port }: ReturnType<typeof parseListen>): Promise<AddressInfo> {
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    }));
  } catch (err) {
    throw listenError(err, listen);
  }
  return server.address() as AddressInfo;
}

/**
 * `listen`: the cache's address, where the primary accepts every connection and hands each to
 * a worker (see handoff.ts); it listens before any worker starts, and for as long as the cache runs.
 */
export async function runCachePrimary(config: CacheConfig, workers: number, log: Logger, listen: string): Promise<PrimaryHandle> {
  // The cache's counters start here: a worker replaced later does not reset them (/-/stats)
  const startedAt = new Date().toISOString();
  checkSocketPaths(tmpdir(), workers);
  const at = parseListen(listen); // a malformed address refused before anything starts
  // The primary holds the data directory for its workers, before the store opens (opening empties tmp/).
  const lock = await lockDataDir(config.dataDir);
  removeStaleSocketDirs(tmpdir());
  const socketDir = mkdtempSync(path.join(tmpdir(), `${SOCKET_DIR_PREFIX}${process.pid}-`));
  /** Each worker, by its cluster id. */
  const live = new Map<number, LiveWorker>();
  /** The last tallies and Prometheus counters of workers that died: the cache's counters do not go down with them. */
  const retired: Record<string, KindTally> = {};
  let retiredCounters: MetricsJson = [];
  /** The counters of `retired`, in /-/metrics with those of the live workers. */
  const retiredTallies = new Registry();
  retiredTallies.setDefaultLabels({ role: 'cache', region: config.region });
  registerTallyCounters(retiredTallies, () => Object.entries(retired));
  registerStartTime(retiredTallies); // the cache's start, before any worker's
  /** Workers that died while serving (their last counts, at most REPORT_FLUSH_MS of them and their fills in flight, are lost). */
  let workersLost = 0;
  // The primary's own series, with those of the dead workers: a worker's death otherwise shows only in /-/stats and the log.
  new Counter({
    name: 'fleetcache_cache_workers_lost_total', help: 'Workers that died (or were killed, not answering) since the cache started, each replaced.',
    registers: [retiredTallies], collect() { this.reset(); this.inc(workersLost); },
  });
  // Connections are held while no worker is free (all of them dead, say), up to as many as one worker keeps open.
  const handoff = new ConnectionHandoff(config.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  new Counter({
    name: 'fleetcache_cache_connections_rerouted_total', help: 'Client connections handed to another worker than the first they were sent to (it died, or never got them) since the cache started: none was lost.',
    registers: [retiredTallies], collect() { this.reset(); this.inc(handoff.rerouted); },
  });
  /** Questions asked of every worker, by request number: each answer is handed over with its worker's id. */
  const asking = new Map<number, (workerId: number, answer: unknown) => void>();
  let stopping = false;
  let broadcastTimer: NodeJS.Timeout | undefined;
  let nextRequest = 1;

  const send = (workerId: number, m: PrimaryMessage): void => live.get(workerId)?.outbox.push(m);
  const broadcast = (m: PrimaryMessage): void => {
    for (const { outbox } of live.values()) outbox.push(m);
  };
  const store = new DiskStore(config.dataDir, config.maxSize, log, { onEvicted: (id) => broadcast({ t: 'forget', id }), maxSizeSetting: config.maxSizeSetting });
  const front = createServer({ pauseOnConnect: true }, (socket) => handoff.connection(socket));
  let address: AddressInfo;
  try {
    await store.open();
    address = await listenOn(front, listen, at);
  } catch (err) {
    rmSync(socketDir, { recursive: true, force: true });
    await lock.release();
    throw err;
  }
  // A failed accept (EMFILE: the primary's file limit) loses that connection only.
  front.on('error', (err) => log.error({ err: err.message }, 'cannot accept a connection on the cache\'s port'));
  const cacheUrl = listenUrl(listen, address.port);
  /** Fills in flight in the whole cache, as last reported by the workers that lead them. */
  const inflight = (): number => [...live.values()].reduce((n, w) => n + w.leading, 0);
  const figures = (): StoreFigures => ({ bytes: store.bytes, objects: store.count, evicted: { ...store.evicted }, inflight: inflight() });
  const broadcastFiguresSoon = (): void => {
    broadcastTimer ??= setTimeout(() => {
      broadcastTimer = undefined;
      broadcast({ t: 'store', ...figures() });
    }, STORE_BROADCAST_MS);
  };
  /** The room the reservations of every worker but `id` hold. */
  const othersReserved = (id: number): Reserved => {
    let bytes = 0;
    let unwritten = 0;
    for (const [other, w] of live) {
      if (other === id) continue;
      bytes += w.reserved.bytes;
      unwritten += w.reserved.unwritten;
    }
    return { bytes, unwritten };
  };
  /** Tells each worker the room the others' reservations hold, when it changed (see ClusterLink.reservations). */
  const tellReserved = (): void => {
    for (const [id, w] of live) {
      const others = othersReserved(id);
      if (sameReserved(others, w.toldOthersReserved)) continue;
      w.toldOthersReserved = others;
      w.outbox.push({ t: 'reserved', others });
    }
  };

  /** Asks every connected worker; resolves with the answers by worker id, those in within 2 s. */
  function askWorkers<A>(question: (req: number) => PrimaryMessage): Promise<Map<number, A>> {
    const req = nextRequest++;
    const got = new Map<number, A>();
    const targets = [...live.values()].filter(({ worker }) => worker.isConnected());
    return new Promise((resolve) => {
      const done = (): void => {
        asking.delete(req);
        resolve(got);
      };
      if (targets.length === 0) return done();
      asking.set(req, (id, answer) => {
        got.set(id, answer as A);
        if (got.size === targets.length) done();
      });
      for (const { outbox } of targets) outbox.push(question(req));
      setTimeout(done, 2000).unref(); // a worker that dies meanwhile must not hang the question
    });
  }

  // A worker that does not answer in time (stopped, busy for seconds) counts with what it
  // last told: left out, the totals would go down and back up (a reset, to Prometheus).

  async function stats(): Promise<Record<string, KindTally>> {
    const answers = await askWorkers<Record<string, KindTally>>((req) => ({ t: 'tally?', req }));
    const got: Record<string, KindTally> = {};
    addTallies(got, retired);
    for (const [id, w] of live) addTallies(got, answers.get(id) ?? w.tally);
    return got;
  }

  /** Prometheus text for the whole cache: every worker's registry, and the counters of the dead ones. */
  async function clusterMetrics(): Promise<{ text: string; contentType: string }> {
    const answers = await askWorkers<MetricsJson>((req) => ({ t: 'metrics?', req }));
    const registries: MetricsJson[] = [retiredCounters, await retiredTallies.getMetricsAsJSON()];
    for (const [id, w] of live) {
      w.metrics = answers.get(id) ?? w.metrics;
      if (w.metrics) registries.push(w.metrics);
    }
    const registry = AggregatorRegistry.aggregate(registries);
    return { text: await registry.metrics(), contentType: registry.contentType };
  }

  function onMessage(id: number, m: WorkerMessage): void {
    switch (m.t) {
      case 'leading': {
        const w = live.get(id);
        if (w) w.leading = m.fills;
        return broadcastFiguresSoon();
      }
      case 'committed':
        for (const e of m.entries) {
          // An http entry (a mirror object, a name) may replace another worker's: its meta and
          // body in memory describe the old one. Told to forget whether this index knew the id
          // or not: two workers' reports of one id may come in either order.
          if (!isCasId(e.id)) for (const other of live.keys()) if (other !== id) send(other, { t: 'forget', id: e.id });
          store.adopt(e.id, e.size, e.storedAt, e.sidecar);
        }
        return broadcastFiguresSoon();
      case 'touched':
        for (const entry of m.ids) store.touch(entry);
        return;
      case 'reading': {
        const w = live.get(id);
        if (!w) return;
        for (const [body, size] of m.opened) {
          if (w.reading.has(body)) continue;
          w.reading.set(body, size);
          store.readerOpened(body, size);
        }
        for (const body of m.closed) if (w.reading.delete(body)) store.readerClosed(body);
        return;
      }
      case 'reserved': {
        const w = live.get(id);
        if (!w) return;
        w.reserved = { bytes: m.bytes, unwritten: m.unwritten };
        return tellReserved();
      }
      case 'deleted':
        store.forget(m.id); // the worker unlinked it already
        return broadcastFiguresSoon();
      case 'room':
        // never rejects in practice (unlink failures are ignored); an answer is owed either way
        void store.makeRoom(m.bytes, m.whole).catch(() => 0).then((freed) => {
          send(id, { t: 'room', req: m.req, freed, readBytes: store.readBytes, othersReserved: othersReserved(id), store: figures() });
          broadcastFiguresSoon();
        });
        return;
      case 'stats':
        // Each worker sends its pending reports before its tally: the figures are taken after.
        void stats().then((kinds) => send(id, { t: 'stats', req: m.req, kinds, store: figures(), startedAt, workersLost }));
        return;
      case 'metrics':
        void clusterMetrics().then(
          ({ text, contentType }) => send(id, { t: 'metrics', req: m.req, text, contentType }),
          (err: Error) => send(id, { t: 'metrics', req: m.req, text: `# metrics unavailable: ${err.message}\n`, contentType: 'text/plain' }),
        );
        return;
      case 'failed':
        return failed(new FleetError(m.code, m.message));
      case 'ready':
        return serves(id);
      case 'took':
        return handoff.took(id, m.conn);
      case 'metrics-json':
        return asking.get(m.req)?.(id, m.metrics);
      case 'counters': {
        const w = live.get(id);
        if (w) w.metrics = m.metrics;
        return;
      }
      case 'totals':
      case 'tally': {
        const w = live.get(id);
        if (w) w.tally = m.kinds;
        if (m.t !== 'tally') return;
        asking.get(m.req)?.(id, m.kinds);
        // The answer to a ping: a connection handed before it, and not taken, never reached the worker.
        const pinged = m.req === PING_REQ ? w?.pings.shift() : undefined;
        if (pinged !== undefined && handoff.answered(id, pinged)) log.warn({ worker: id }, 'a connection sent to a cache worker never reached it (at its file limit?): handed to another');
      }
    }
  }

  /** Each worker's private socket, where the others follow its fills (a replacement gets the same). */
  const sockets = Array.from({ length: workers }, (_, i) => path.join(socketDir, socketName(i)));
  /** Workers that serve since the cache started (it has once all of them do). */
  let serving = 0;
  let resolveUrl!: (url: string | undefined) => void;
  let rejectUrl!: (err: Error) => void;
  const url = new Promise<string | undefined>((resolve, reject) => { resolveUrl = resolve; rejectUrl = reject; });
  void url.catch(() => undefined); // the caller's to handle; never unhandled meanwhile
  let started = false;
  /** When workers died since the cache started, within the last RESTART_LIMIT_WINDOW_MS. */
  const deaths: number[] = [];
  const restartDelayMs = config.workerRestartDelayMs ?? DEFAULT_WORKER_RESTART_DELAY_MS;
  const respawns = new Set<NodeJS.Timeout>();
  let gaveUp: FleetError | undefined;

  /** A worker could not start: the cache does not either (respawning it would fail the same way, forever). */
  function failed(err: FleetError): void {
    if (started || stopping) return; // a worker dying later is replaced (see fork)
    log.error({ err: err.message }, 'a cache worker could not start: stopping');
    rejectUrl(err);
    stop();
  }

  function fork(index: number): void {
    const socket = sockets[index]!;
    const tempOrigin = randomBytes(6).toString('hex');
    const worker = cluster.fork(workerEnv({ socket, http: path.join(socketDir, httpSocketName(index)), peers: sockets.filter((s) => s !== socket), tempOrigin }));
    const outbox = new Outbox<PrimaryMessage>((m) => {
      if (worker.isConnected()) worker.send(m);
    });
    // A message to a worker that died a moment ago fails (EPIPE) although isConnected() said
    // yes: harmless, its 'exit' follows; unhandled, the error ended the primary and the cache
    // (seen in CI: a worker killed just after it started listening).
    worker.on('error', (err: Error) => log.debug({ worker: worker.id, err: err.message }, 'a message to a cache worker was not delivered'));
    const entry: LiveWorker = { worker, outbox, leading: 0, reading: new Map(), reserved: NONE_RESERVED, toldOthersReserved: NONE_RESERVED, tally: {}, pings: [] };
    live.set(worker.id, entry);
    tellReserved(); // a worker started in place of a dead one, while the others' fills write
    worker.on('message', (m: unknown) => {
      entry.asked = undefined; // it answers
      unbatch<WorkerMessage>(m, (one) => onMessage(worker.id, one));
    });
    // Once its channel is read to the end: the connection it had not taken goes to another.
    worker.process.once('close', () => handoff.remove(worker.id));
    worker.once('exit', (code, signal) => {
      const last = live.get(worker.id);
      live.delete(worker.id);
      // The files it read were closed with its process; the room its fills reserved is theirs no more.
      for (const body of last?.reading.keys() ?? []) store.readerClosed(body);
      if (last?.reserved.bytes) tellReserved();
      if (stopping) return;
      if (last) addTallies(retired, lastCounts(last.tally, last.metrics));
      // Its counters as last scraped or reported stay in the sums: Prometheus would take a drop for a reset.
      if (last?.metrics) retiredCounters = addCounters(retiredCounters, last.metrics);
      if (!started) return failed(new FleetError('FC_ERR_INTERNAL', `cache worker ${worker.id} exited (${signal ?? `code ${code}`}) before listening`));
      workersLost++;
      died(index, worker.id, code, signal);
      // What it committed in its last batch of reports (at most 200 ms) never came; the
      // temp files it was writing, and the claims it held beside entries (FillClaim.owner), are nobody's now.
      void store.adoptUnreported(tempOrigin).then(
        (adopted) => {
          if (adopted > 0) log.warn({ worker: worker.id, adopted }, 'indexed the bodies a dead worker had not reported');
          broadcastFiguresSoon();
        },
        (err: Error) => log.error({ err: err.message }, 'cannot index the bodies a dead worker had not reported'),
      );
    });
  }

  /** Worker `id` serves: it is handed connections, and watched, from now on. */
  function serves(id: number): void {
    const entry = live.get(id);
    if (!entry || stopping) return;
    const { worker, outbox } = entry;
    entry.watched = true; // asked from now on (see WATCH_MS)
    outbox.push({ t: 'store', ...figures() });
    const hand: HandConnection = (conn, socket) => worker.send({ t: 'conn', conn } satisfies HandedConnection, socket, { keepOpen: true }, (err) => {
      if (!err) return;
      handoff.unsent(id, conn);
      if (!worker.isConnected()) return; // gone: its 'close' follows
      log.error({ worker: id, err: err.message }, 'cannot hand a connection to a cache worker: killing it');
      worker.process.kill('SIGKILL');
    });
    handoff.add(id, hand);
    // The end of a death logged above ('cache worker died: starting another').
    if (started) return void log.info({ worker: id }, 'replacement cache worker listening');
    if (++serving === workers) {
      started = true;
      resolveUrl(cacheUrl);
    }
  }

  /** A worker that served died: replaced after a back-off, or the cache stops (see RESTART_LIMIT_BURST). */
  function died(index: number, id: number, code: number | null, signal: string | null): void {
    const now = Date.now();
    deaths.push(now);
    while (deaths[0]! <= now - RESTART_LIMIT_WINDOW_MS) deaths.shift();
    if (deaths.length >= RESTART_LIMIT_BURST) {
      const within = `${RESTART_LIMIT_WINDOW_MS / 1000} s`;
      gaveUp = new FleetError('FC_ERR_RESTART_LIMIT', `${deaths.length} cache workers died within ${within} (the last: worker ${id}, ${signal ?? `code ${code}`}): the cache stopped`);
      log.error({ worker: id, code, signal, deaths: deaths.length, within }, 'cache workers keep dying: stopping the cache');
      return stop();
    }
    const delayMs = restartDelayMs * 2 ** (deaths.length - 1);
    log.error({ worker: id, code, signal, restartInMs: delayMs }, 'cache worker died: starting another');
    const timer = setTimeout(() => {
      respawns.delete(timer);
      fork(index);
    }, delayMs);
    respawns.add(timer);
  }

  const workerTimeoutMs = config.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS;
  const tickMs = Math.max(100, Math.min(WATCH_MS, workerTimeoutMs / 3));
  let lastTick = Date.now();
  const watch = setInterval(() => {
    const now = Date.now();
    touchSocketDir(socketDir);
    const stalled = now - lastTick > 2 * tickMs; // this process was stopped, not (only) the workers
    lastTick = now;
    for (const [id, w] of live) {
      if (!w.watched || w.worker.isDead()) continue;
      if (stalled) w.asked = undefined;
      if (w.asked === undefined) w.asked = now;
      else if (now - w.asked > workerTimeoutMs) {
        log.error({ worker: id, silentMs: now - w.asked }, 'cache worker does not answer: killing it');
        w.watched = false; // killed once
        w.worker.process.kill('SIGKILL');
        continue;
      }
      w.pings.push(handoff.moment());
      w.outbox.push({ t: 'tally?', req: PING_REQ });
    }
  }, tickMs);
  watch.unref();

  let resolveStopped!: () => void;
  let rejectStopped!: (err: Error) => void;
  const stopped = new Promise<void>((resolve, reject) => { resolveStopped = resolve; rejectStopped = reject; });
  void stopped.catch(() => undefined); // the caller's to handle; never unhandled meanwhile
  // Stays the signals' handler until the workers are gone: a second SIGTERM (systemd's, a
  // script's) would otherwise kill the primary in the middle of its workers' drain. A second
  // SIGINT (Ctrl-C twice) is passed on: each worker then cuts what is still in flight.
  const stop = (signal?: NodeJS.Signals): void => {
    if (stopping) {
      if (signal === 'SIGINT') for (const { worker } of live.values()) worker.process.kill('SIGINT');
      return;
    }
    stopping = true;
    // No connection more: those held are closed, those handed are the workers' to drain.
    front.close();
    handoff.close();
    clearInterval(watch);
    for (const timer of respawns) clearTimeout(timer);
    log.info({ workers: live.size }, 'stopping the cache workers');
    const exits = [...live.values()].map(({ worker }) => new Promise<void>((resolve) => {
      if (worker.isDead()) return resolve();
      worker.once('exit', () => resolve());
      worker.process.kill('SIGTERM');
    }));
    void Promise.all(exits).then(async () => {
      rmSync(socketDir, { recursive: true, force: true });
      await lock.release();
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.off('SIGHUP', hangup);
      resolveUrl(undefined); // stopped before every worker listened (else already settled)
      if (gaveUp) rejectStopped(gaveUp);
      else resolveStopped();
    });
  };
  const hangup = (): void => ignoreHangup(log);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', hangup);
  for (let i = 0; i < workers; i++) fork(i);
  return { url, stopped, stop };
}
