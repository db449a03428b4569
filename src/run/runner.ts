// `fleetcache run`: load the spread project, push only a delta to the origin, allocate
// machines, have each machine pull the project (and assets) through the cache of its
// region, run the jobs in spread's order, collect artifacts, print the summary.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { MachineLeft, NoMachineLeft, type Idle, type Machine, type MachineRecord } from '../backends/backend.js';
import { BACKENDS } from '../backends/registry.js';
import { runTokenSource } from '../client/run-token.js';
import { readTokenFile, resolveToken } from '../client/token.js';
import { formatBytes, parseDuration } from '../config/units.js';
import { errorMessage, FleetError, toFleetError } from '../errors.js';
import type { RepackOptions } from '../pack/repack.js';
import { pushProject, unusableBaseLine, type PushResult } from '../project-upload/push.js';
import { prunedLine } from '../project-upload/base-cache.js';
import { writeAtomically } from '../project-upload/atomic-file.js';
import { beginSnapshot, buildLedger, snapshotFleet, type FleetSnapshot, type Ledger } from '../report/ledger.js';
import { expandJobs, findProject, jobParts, jobRegion, levelTimeouts, loadProject, repackEnvironment, resolveProjectFields, type Backend, type Job, type Project, type ResolvedFields } from '../spread/index.js';
import { projectError } from '../spread/yaml.js';
import { redactUrl } from '../redact-url.js';
import { sentTo } from '../client/sent-to.js';
import { AgentCommandError, agentWorkDir, installAgent, runAgent } from './agent-client.js';
import { shellQuote } from '../shell-quote.js';
import { ReusePool, RunningMachines } from './reuse.js';
import { RunInterrupt } from './interrupt.js';
import { runWorkers, type WorkerInfo } from './driver.js';
import { checkEmbeddedBackends, startEmbeddedFleet, type EmbeddedFleet } from './embedded.js';
import { loadFleetConfig, withScheduling, type FleetConfig } from './fleet.js';
import { measuredOrder, ORIGIN_DIRECT, pullingCaches, regionServing, staticOrder, UnreachableCaches, unservedRegions, type CacheChoice } from './nearest.js';
import { JobCounter, RunLog, RunTally, summaryItem } from './report.js';
import { chooseSeed, JobQueue, orderByFilters, workerPlan, type SchedJob } from './scheduler.js';
import { MachineSession } from './session.js';
import { ShellTerminal, type ShellModes } from './shell.js';
import { Timings } from './timings.js';
import { JobTransfers } from './job-transfers.js';
import { FailLogs } from './fail-logs.js';
import { backendKeyFiles, createProviders } from './providers.js';
import { DEFAULT_DATA_DIR, makePrivate, runnerState } from './state-dir.js';
import { commandLine, pathForUser } from '../invoked-as.js';

export interface RunOptions {
  readonly cwd: string;
  readonly filters: readonly string[];
  readonly fleetFile?: string;
  readonly tokenFile?: string;
  readonly seed?: bigint;
  /** -order (fleetcache's own): jobs in the order the filters name them (orderByFilters), no priorities or shuffle. */
  readonly order?: boolean;
  /** Directory for local state: embedded servers, machines, base cache (default <root>/DEFAULT_DATA_DIR). */
  readonly dataRoot?: string;
  /** Bound of the base cache under dataRoot (default DEFAULT_BASE_CACHE_SIZE). */
  readonly baseCacheSize?: number;
  /** How long the report waits for a server's /-/stats, ms (default STATS_TIMEOUT_MS). */
  readonly statsTimeout?: number;
  readonly artifactsDir?: string;
  readonly agentBundle: string;
  readonly log?: RunLog;
  readonly run?: string;
  /** spread -pass: the session password for machines whose system sets none (default random). */
  readonly password?: string;
  /** spread -repeat N. */
  readonly repeat?: number;
  /** Machines per system in place of each system's `workers:` (still at most one per job). */
  readonly workers?: number;
  /** Each failed job's error and debug output is also written to <dir>/<job name>.log (fail-logs.ts). */
  readonly failLogsDir?: string;
  /** spread -abend: stop at the first failure, run no restore scripts, keep the machines. */
  readonly abend?: boolean;
  /** spread -restore: run only the restore scripts (usually on machines kept with -reuse). */
  readonly restoreOnly?: boolean;
  /** spread -reuse: take back machines kept by an earlier -reuse run, keep them at the end. */
  readonly reuse?: boolean;
  /** spread -resend: with -reuse, send the project again to reused machines. */
  readonly resend?: boolean;
  /** spread -shell, -shell-before, -shell-after, -debug: interactive shells on the machines (shell.ts). */
  readonly shell?: ShellModes;
  /**
   * Stop the run on SIGINT/SIGTERM (interrupt.ts) rather than die with it (default true):
   * scripts killed, no restore, machines discarded (kept with -reuse/-abend), the summary so far.
   */
  readonly signals?: boolean;
  /** Called with the embedded servers once they listen (the demo reads their figures). */
  readonly onEmbedded?: (fleet: EmbeddedFleet) => void;
}

interface MachineTransfer {
  readonly machine: string;
  readonly region: string;
  readonly url: string;
  readonly bytes: number;
}

export interface RunResult {
  readonly tally: RunTally;
  readonly ledger: Ledger;
  readonly push: PushResult;
  readonly run: string;
  readonly project: string;
  readonly origin: string;
  readonly pulls: MachineTransfer[];
  readonly assetBytes: number;
  /** The signal that stopped the run early, if one did. */
  readonly interrupted?: NodeJS.Signals;
  readonly artifactBytes: number;
}




/** A size as spread's pack line gives it: "0.99KB" under 1 MiB, "1.50MB" from there (spec §11). */
function spreadSize(bytes: number): string {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(2)}KB` : `${(bytes / 1024 / 1024).toFixed(2)}MB`;
}

/** The regions the jobs' systems name (the embedded default starts one cache for each). */
function regionsOf(jobs: readonly Job[]): string[] {
  const named = new Set(jobs.map(jobRegion).filter((r): r is string => r !== undefined && r !== 'auto'));
  return named.size > 0 ? [...named].sort() : ['local'];
}

/**
 * Empties the project path on `machine` for the pull, which unpacks
 * into an empty directory only. Refused when the path is a user's home directory or holds one
 * (`path: /home/ubuntu` on a static host): its `rm -rf` took `.ssh/authorized_keys` with it,
 * and the host was lost to every later run. `signal` (the run's Ctrl-C) kills it on a machine
 * whose shell does not answer.
 */
async function emptyProjectPath(machine: Machine, signal: AbortSignal): Promise<void> {
  const dest = shellQuote(machine.projectPath);
  // every user's home (/etc/passwd), and this one's: a script runs as root through sudo -i
  const guard = `{ echo "$HOME"; cut -d: -f6 /etc/passwd 2>/dev/null; } | while IFS= read -r h; do case "\${h%/}/" in ${dest}/*) echo "it holds the home directory $h"; exit 1;; esac; done || exit 1`;
  const res = await machine.exec(`${guard}; rm -rf -- ${dest} && mkdir -p -- ${dest}`, { trace: false, cwd: '/', signal });
  signal.throwIfAborted();
  if (res.exitCode !== 0) throw new FleetError('FC_ERR_PROJECT', `cannot empty the project path ${machine.projectPath} on ${machine.name} for the project: ${res.output.trim().split('\n').slice(-3).join(' ')}`);
}

function schedJob(job: Job): SchedJob {
  return {
    ...jobParts(job),
    ...(job.priority !== 0 ? { priority: job.priority } : {}),
  };
}

/**
 * spread runs repack locally with its own environment plus the project's, exported and
 * evaluated by the shell as for machine scripts (spec §4.3, §12), its fixed PATH as for its
 * other local scripts (allocate, discard), and the project's timeouts.
 */
function repackOptions(project: Project, jobs: readonly Job[], log: RunLog): Omit<RepackOptions, 'cwd'> {
  const { warn, kill } = levelTimeouts([project]);
  return {
    exports: repackEnvironment(project, jobs),
    fixedPath: true,
    timeoutMs: kill,
    warnMs: warn,
    onWarn: () => log.line('WARNING: repack script running late.'),
  };
}

/** `run --discard` as the user types it where they are, with the run's --data if one was given. */
function discardCommand(dataRoot: string | undefined): string {
  return commandLine(['run', '--discard', ...(dataRoot ? ['--data', pathForUser(dataRoot)] : [])]);
}

export async function runProject(o: RunOptions): Promise<RunResult> {
  const log = o.log ?? new RunLog();
  const root = findProject(o.cwd);
  const project = await loadProject(root);
  // spread ignores unknown keys; -v says which (a misspelt field is otherwise silent)
  if (log.verbose > 0) for (const ignored of project.ignoredKeys) log.line(`WARNING: ${ignored}`);
  const jobs = expandJobs(project, o.filters);
  if (jobs.length === 0) throw new FleetError('FC_ERR_PROJECT', 'nothing to run');
  // spread's cloud types load (for list) but have no provider here: said before anything is packed
  for (const b of new Set(jobs.map((j) => j.backend))) {
    if (!BACKENDS[b.type]) throw projectError(`backend "${b.name}" has type "${b.type}", which fleetcache cannot run (it runs ${Object.keys(BACKENDS).join(', ')})`, b.origin);
  }
  const dataRoot = o.dataRoot ?? join(project.rootDir, DEFAULT_DATA_DIR);
  const fields = resolveProjectFields(project);
  const interrupt = o.signals === false ? undefined : RunInterrupt.install(log, discardCommand(o.dataRoot));
  try {
    return await runStarted(o, log, project, jobs, dataRoot, fields, interrupt);
  } finally {
    interrupt?.dispose();
  }
}

async function runStarted(o: RunOptions, log: RunLog, project: Project, jobs: Job[], dataRoot: string, fields: ResolvedFields, interrupt: RunInterrupt | undefined): Promise<RunResult> {
  const configured = loadFleetConfig(project.file, o.fleetFile);
  const backends = new Set(jobs.map((j) => j.backend));
  let embedded: EmbeddedFleet | undefined;
  let fleet: FleetConfig & { origin: string };
  let token: string | undefined;
  /** Token files never shipped: the one used, and the configuration's that --token-file overrode (a write token all the same). */
  const tokenFiles = [o.tokenFile, configured?.tokenFile].filter((f): f is string => f !== undefined);
  if (configured?.origin) {
    fleet = { ...configured, origin: configured.origin };
    token = resolveToken(o.tokenFile ?? configured.tokenFile);
    for (const warning of unservedRegions(fleet, jobs.map(jobRegion))) log.line(warning);
    await makePrivate(dataRoot);
  } else {
    checkEmbeddedBackends(backends, new Set(jobs.map((j) => `${j.backend.name}:${j.system.name}`)));
    if (o.tokenFile) {
      // named on the command line: one that cannot be read is refused, as every command refuses it
      readTokenFile(o.tokenFile);
      log.line(`Ignoring --token-file ${o.tokenFile}: no fleet configuration, and the embedded origin makes its own token.`);
    }
    await makePrivate(dataRoot);
    embedded = await startEmbeddedFleet(dataRoot, regionsOf(jobs), undefined, (line) => log.line(line));
    o.onEmbedded?.(embedded);
    fleet = withScheduling(embedded.fleet, configured);
    token = embedded.token;
  }
  try {
    const before = beginSnapshot(fleet, o.statsTimeout);
    await before.originRead;
    const push = await pushProject({
      dir: project.rootDir,
      project: project.name,
      origin: fleet.origin,
      ...(token ? { token } : {}),
      // every backend's key, not only those of the jobs selected: the project's tar goes to the
      // origin and to every machine, whichever backend's key it would have held
      secretFiles: [...tokenFiles, ...backendKeyFiles(project.backends, fields, project.rootDir)],
      ...(o.run ? { run: o.run } : {}),
      baseCache: join(dataRoot, 'bases'),
      // the cache the run's machines pull through first in each of their regions: a region no
      // machine of this run is in fetches no base
      regionCaches: pullingCaches(fleet, jobs.map(jobRegion)),
      ...(o.baseCacheSize !== undefined ? { baseCacheSize: o.baseCacheSize } : {}),
      ...(project.repack ? { repack: project.repack, repackOptions: repackOptions(project, jobs, log) } : {}),
      rules: { ...(fields.include ? { include: fields.include } : {}), exclude: fields.exclude, rename: fields.rename, ...runnerState(project.rootDir, dataRoot) },
      ...(interrupt ? { signal: interrupt.signal } : {}),
    }).catch((err: unknown) => {
      // No machine exists yet: nothing to discard, and no summary to print but this.
      if (interrupt?.received) throw new FleetError('FC_ERR_TASK_FAILED', `interrupted by ${interrupt.received} while the project was uploaded: no job ran (${jobs.length} aborted), no machine was allocated`);
      // the run's first request of its own: an origin that is down or refuses the token is named
      // here, with what was being done, and the failure keeps its code (the exit status). Its
      // reason names the origin's URL already (the request's: "GET <url>: …"); one that no
      // request to the origin caused failed on this host (a file of the project it cannot
      // read, a full temp directory), and blames no origin.
      const error = toFleetError(err);
      const atOrigin = sentTo(error, fleet.origin);
      throw new FleetError(error.code, `cannot push the project${atOrigin ? ' to the origin' : ''}: ${error.message}`, { cause: error, ...(error.details ? { details: error.details } : {}) });
    });
    // spread's line as it prints it (scripts parse it), then what went to the origin
    for (const base of push.unusableBases) log.line(`WARNING: ${unusableBaseLine(base)}`);
    log.line(`Project content is packed for delivery (${spreadSize(push.fullUploadBytes)}).`);
    log.line(`Sent ${formatBytes(push.bytesSent)} to the origin as ${push.rebased ? 'a new base' : push.manifest.delta ? 'a delta' : 'the base it already is'} (run ${push.run}).`);
    const pruned = push.pruned.removed > 0 ? prunedLine(push.pruned, join(dataRoot, 'bases')) : '';
    if (pruned) log.line(`${pruned[0]!.toUpperCase()}${pruned.slice(1)}.`);
    const result = await runJobs(o, log, project, jobs, backends, fleet, embedded !== undefined, token, push, dataRoot, fields, await before.snapshot, interrupt);
    await mkdir(join(dataRoot, 'reports'), { recursive: true });
    // whole or absent: a run killed mid-write left a truncated file as the latest report
    await writeAtomically(join(dataRoot, 'reports', `${result.run}.json`), (tmp) => writeFile(tmp, JSON.stringify(result.ledger, null, 2)));
    return result;
  } finally {
    await embedded?.close();
  }
}

async function runJobs(
  o: RunOptions,
  log: RunLog,
  project: Project,
  jobs: Job[],
  /** The backends of `jobs`. */
  backends: ReadonlySet<Backend>,
  fleet: FleetConfig & { origin: string },
  embedded: boolean,
  token: string | undefined,
  push: PushResult,
  dataRoot: string,
  fields: ResolvedFields,
  before: FleetSnapshot,
  interrupt: RunInterrupt | undefined,
): Promise<RunResult> {
  const tally = new RunTally();
  const running = new RunningMachines(dataRoot);
  const kept: MachineRecord[] = [];
  const discardHint = discardCommand(o.dataRoot);
  const timings = await Timings.load(project.rootDir);
  // -abend keeps machines too: on record in the reuse file for a later -reuse -restore or -discard
  const pool = o.reuse || o.abend ? await ReusePool.load(project.rootDir) : undefined;
  const sched = o.order ? orderByFilters(jobs.map(schedJob), o.filters) : jobs.map(schedJob);
  const byName = new Map(jobs.map((j) => [j.name, j]));
  const systemOf = new Map(jobs.map((j) => [`${j.backend.name}\0${j.system.name}`, j]));
  const plan = workerPlan(sched, (b, s) => o.workers ?? systemOf.get(`${b}\0${s}`)?.system.workers ?? 1);
  // spread's -seed defaults to 0: a given 0 is no seed (one is chosen and announced)
  const givenSeed = o.seed === 0n ? undefined : o.seed;
  const { seed, announce } = o.order ? { seed: 0n, announce: false } : chooseSeed(sched.length, plan.reduce((n, p) => n + p.count, 0), givenSeed);
  if (announce) log.line(`Sequence of jobs produced with -seed=${seed}`);
  log.line(`If killed, discard machines with: ${discardHint}`);
  // A given seed replays the order of the run that announced it, with the estimates that
  // run used (the averages move after every run); an announced one is kept for that.
  const duration = givenSeed === undefined ? (j: SchedJob) => timings.estimate(j) : timings.replay(givenSeed);
  if (announce) {
    timings.rememberSeed(seed, sched);
    await timings.save().catch(() => undefined);
  }
  const queue = new JobQueue(sched, { seed, ordered: o.order === true, duration });

  const providers = await createProviders(backends, fields, {
    projectRoot: project.rootDir,
    remotePath: fields.remotePath,
    password: o.password ?? randomBytes(9).toString('base64url'),
    stateDir: dataRoot,
    log: (line) => log.line(line),
    ...(fleet.knownHosts !== undefined ? { knownHosts: fleet.knownHosts } : {}),
  }, embedded);
  // before any worker allocates: a kept machine's host goes to no other system's worker, also
  // in an --abend run without --reuse (a machine left for inspection was taken and emptied)
  if (pool) for (const [name, provider] of providers) provider.holdKept?.(pool.keptBy(name));

  const pulls: MachineTransfer[] = [];
  /** Machines of `--reuse` that had the project already. */
  let reused = 0;
  // A machine runs the tasks' code: it gets a run token, which reads what a token reads and
  // writes the run's artifacts, nothing more, and expires (client/run-token.ts).
  const machineToken = token === undefined ? undefined : runTokenSource(token, push.run);
  // the agent takes whole milliseconds (1.5ms is 2)
  const cacheTimeoutMs = Math.ceil(parseDuration(fleet.cacheTimeout));
  const unreachable = new UnreachableCaches();
  const transfers = new JobTransfers({
    log,
    run: push.run,
    machineToken,
    artifactsDir: o.artifactsDir,
    cacheTimeoutMs,
    unreachable,
    ...(interrupt ? { signal: interrupt.signal } : {}),
    regionOf: (url) => regionServing(fleet, url),
  });
  const progress = new JobCounter(jobs.length);

  const abend = o.abend ? new AbortController() : undefined;
  const stopping = [abend?.signal, interrupt?.signal].filter((s) => s !== undefined);
  /** Aborted when the run stops: interrupted, or at an -abend failure. */
  const stop = stopping.length > 0 ? AbortSignal.any(stopping) : undefined;
  /** Why the run stops, as a line ends it (`...: the run was interrupted`); undefined while it does not. */
  const whyStopping = (): Error | undefined =>
    interrupt?.signal.aborted ? new Error('the run was interrupted') : abend?.signal.aborted ? new Error('the run stopped at a failure (-abend)') : undefined;
  const sessionCtx = {
    project,
    log,
    tally,
    progress,
    ...(o.repeat ? { repeat: o.repeat } : {}),
    ...(o.restoreOnly ? { restoreOnly: true } : {}),
    ...(abend ? { abend } : {}),
    ...(interrupt ? { stop: interrupt.signal } : {}),
    ...(o.shell ? { shell: new ShellTerminal(o.shell, log) } : {}),
    ...(o.failLogsDir ? { failLogs: await FailLogs.create(o.failLogsDir, log) } : {}),
    onJobTime: (job: Job, seconds: number) => timings.record(schedJob(job), seconds),
  };

  // spread's `backend:system`, numbered when the system has several machines so their lines can be told apart
  const workerLabel = (w: WorkerInfo): string => {
    const sys = `${w.backend}:${w.system}`;
    return (plan.find((p) => p.backend === w.backend && p.system === w.system)?.count ?? 1) > 1 ? `${sys} #${w.index + 1}` : sys;
  };
  /** Why a machine done with is kept rather than discarded (its `Keeping` line's suffix), or undefined: discarded. */
  const keepingWhy = (): string | undefined => (!pool ? undefined : abend?.signal.aborted ? ' (-abend)' : o.reuse ? '' : undefined);
  /** Keeps a machine on record in the reuse file (-reuse, -abend) instead of discarding it. */
  const keepMachine = async (machine: Machine, label: string, why: string): Promise<void> => {
    // the next -reuse run takes it back to run its jobs: what a script whose connection was lost
    // may have left running goes first, as at a discard; not after an interrupt or an -abend
    // failure (nothing is killed then: kept as it is, for inspection), and either cuts it short
    const unstopped = stop?.aborted ? undefined : await machine.stopLostScripts?.(stop).then(() => undefined, (err: unknown) => whyStopping() ?? err);
    const record = machine.record();
    pool!.keep(record);
    kept.push(record);
    providers.get(record.backend)?.keep?.(machine);
    // spread's words, no closing period
    log.line(`Keeping ${label} at ${machine.address}${why}`);
    if (unstopped !== undefined) log.line(`WARNING: ${label} at ${machine.address} may still run the processes of a script whose connection was lost: they could not be stopped: ${errorMessage(unstopped)}`);
    // kept, not discarded: its connections still close (an open SSH client keeps the process alive)
    await machine.close().catch(() => undefined);
  };
  /**
   * Discards a machine once: a failed discard is logged and the machine stays on record for
   * `run --discard` (never retried here, as an adhoc discard script may have done part of its work).
   * The interrupt cuts short the sweep of what its lost scripts left (nothing is killed after one).
   */
  const discardMachine = async (machine: Machine, label: string, line = `Discarding ${label}...`): Promise<void> => {
    const record = machine.record();
    log.line(line);
    await machine.discard(interrupt?.signal).then(
      () => running.remove(record),
      (err: Error) => log.line(`Error discarding ${label}: ${err.message}`),
    );
  };
  const result = await runWorkers<MachineSession>(
    queue,
    plan,
    {
      async start(w: WorkerInfo, signal: AbortSignal, idle: Idle, needed: () => boolean) {
        const job = systemOf.get(`${w.backend}\0${w.system}`)!;
        const provider = providers.get(w.backend)!;
        const sys = `${w.backend}:${w.system}`;
        const label = workerLabel(w);
        // evaluated as spread does ($VAR and $(HOST:) from the project and backend environments)
        const spec = { name: w.system, username: fields.usernames.get(sys) || undefined, password: fields.passwords.get(sys) || undefined };
        /** Connects the machine to the fleet and gives it the project (a kept one may have it already). */
        const prepare = async (machine: Machine, kept: boolean): Promise<MachineSession> => {
          // interrupted while it was being allocated or taken back: nothing sent
          signal.throwIfAborted();
          log.line(`Connecting to ${label}...`);
          // a system naming no region takes the fleet's default, which may be auto too
          const region = jobRegion(job) ?? fleet.defaultRegion;
          const choice = unreachable.order(region === 'auto' ? await measuredOrder(machine, fleet, signal) : staticOrder(fleet, region));
          const workDir = agentWorkDir(machine);
          const agent = await installAgent(machine, o.agentBundle, signal);
          // spread's lines, once the machine has run its first commands (caches measured, the agent installed)
          log.line(`Connected to ${label} at ${machine.address}.`);
          log.line(`Machine ${label} at ${machine.address} pulls through ${redactUrl(choice.urls[0]!)} (${choice.how}).`);
          const dest = shellQuote(machine.projectPath);
          // the agent writes the marker once the tree is complete: a pull cut by an earlier
          // run's crash or kill left a partial tree without it, and it is sent again
          const doneMarker = posix.join(workDir, 'project-pulled');
          const complete = `grep -qxF -- ${dest} ${shellQuote(doneMarker)} 2>/dev/null && test -n "$(ls -A ${dest} 2>/dev/null)"`;
          const hasProject = kept && !o.resend && (await machine.exec(complete, { trace: false, cwd: '/', signal })).exitCode === 0;
          signal.throwIfAborted();
          if (hasProject) {
            log.line(`Reusing project data on ${label}...`); // spread's words
            reused++;
            return new MachineSession({ ...sessionCtx, ...transfers.hooksFor(choice) }, machine, label);
          }
          // a kept machine, or any but a local one (a static ssh host, an adhoc machine handed
          // out run after run, as a device of spread's external backend, serve run after run, and
          // one a broken machine left): what an earlier run left at the path goes first, as the
          // pull unpacks into an empty directory only (spread's tar x overlays it)
          if (kept && o.resend) log.line(`Removing project data from ${label} at ${machine.projectPath}...`); // spread -resend's words
          if (kept || provider.type !== 'local') await emptyProjectPath(machine, signal);
          log.line(`Sending project content to ${label}...`);
          const pullArgs = { urls: choice.urls, project: project.name, run: push.run, dest: machine.projectPath, workDir, doneMarker, cacheTimeoutMs, ...(machineToken ? { token: machineToken() } : {}) };
          const answer = await runAgent(machine, agent, 'pull', pullArgs, signal).catch((err: unknown) => {
            // a pull that failed still says which caches it gave up on
            if (err instanceof AgentCommandError) unreachable.markSkipped(err.answer?.skipped);
            throw err;
          });
          unreachable.markSkipped(answer.skipped);
          const url = String(answer.url ?? choice.urls[0]);
          if (url !== choice.urls[0]) log.line(`Machine ${label} fell back to ${redactUrl(url)}.`);
          // The report counts the machine where its bytes went: the region of the cache that
          // answered (its own, or the one it fell back to), else the origin.
          const served = regionServing(fleet, url);
          pulls.push({ machine: machine.name, region: served, url, bytes: Number(answer.bytesDownloaded ?? 0) });
          // Assets and artifacts go through the URL that answered, then the rest in order.
          const working: CacheChoice = { ...choice, region: served, urls: [url, ...choice.urls.filter((u) => u !== url)] };
          return new MachineSession({ ...sessionCtx, ...transfers.hooksFor(working) }, machine, label);
        };
        // the machines kept on record, one after another until one can be taken back and sent the project
        for (let record = o.reuse ? pool!.take(w.backend, w.system) : undefined; record; record = pool!.take(w.backend, w.system)) {
          log.line(`Reusing ${label} at ${record.address}...`);
          let machine: Machine | undefined;
          try {
            machine = await provider.reuse(record, spec, signal);
            // on record before anything runs on it: a runner killed from now on leaves it to `run --discard`
            await running.add(machine.record());
            return await prepare(machine, true);
          } catch (err) {
            // as spread: a machine not taken back stays on file until a discard succeeds, and one
            // taken back stays kept (spread keeps a reused server it cannot send the project to)
            const stopped = signal.aborted;
            if (!stopped) log.line(`Cannot reuse ${label} at ${machine?.address ?? record.address}: ${errorMessage(err)}`);
            if (machine) await keepMachine(machine, label, keepingWhy()!);
            else pool!.keep(record);
            // cut short by the interrupt or -abend: no failure of the machine, and no other is
            // tried (the run has said why it stops: onFailure)
            if (stopped) throw signal.reason;
          }
        }
        // spread allocates none under -reuse for a system with kept machines: a worker that
        // gets none of them (all taken by other workers, or unusable) stops, and its jobs go
        // to the others (or are aborted); `run --discard` releases unusable ones
        if (o.reuse && pool!.hadKept(w.backend, w.system)) {
          log.line(`Not allocating ${label}: -reuse, and the kept machines of ${sys} are taken or cannot be reused.`);
          return undefined;
        }
        log.line(`Allocating ${label}...`);
        let machine: Machine;
        try {
          machine = await provider.allocate(spec, { signal, idle });
        } catch (err) {
          // made and not released: on record for `run --discard`, as a machine whose discard failed
          if (err instanceof MachineLeft) await running.add(err.record);
          if (!(err instanceof NoMachineLeft)) throw err;
          log.line(`Not allocating ${label}: ${err.message}.`);
          return undefined;
        }
        log.line(`Allocated ${label}.`);
        // a machine that cannot be put on record is known to nothing but this run: it goes at once
        await running.add(machine.record()).catch(async (err: unknown) => {
          await discardMachine(machine, label);
          throw err;
        });
        // allocated by a slow allocate (a start that waits through idle gives up instead) while
        // the others ran every job: the project is not sent to a machine that would run nothing
        if (!signal.aborted && !needed()) {
          await discardMachine(machine, label, `Discarding ${label}: the jobs of ${sys} were all taken while it was allocated.`);
          return undefined;
        }
        try {
          return await prepare(machine, false);
        } catch (err) {
          // a machine of a stopping run that keeps them is kept
          const keeping = signal.aborted ? keepingWhy() : undefined;
          if (keeping !== undefined) await keepMachine(machine, label, keeping);
          else await discardMachine(machine, label);
          // cut short by the interrupt or -abend: the run has said why it stops (onFailure)
          throw signal.aborted ? signal.reason : err;
        }
      },
      async run(session, sj) {
        return session.run(byName.get(sj.name)!);
      },
      async stop(session) {
        try {
          await session.finish();
        } finally {
          // discard or keep even when a restore could not run
          const keeping = keepingWhy();
          if (keeping !== undefined) await keepMachine(session.machine, session.label, keeping);
          else await discardMachine(session.machine, session.label);
        }
      },
      async load(session, signal) {
        const res = await session.machine.exec('cat /proc/loadavg', { trace: false, cwd: '/', signal });
        return Number(res.output.trim().split(/\s+/)[0] ?? 0);
      },
      executorKey: (w) => (providers.get(w.backend)?.type === 'local' ? 'localhost' : w.backend),
    },
    {
      startupLimit: fleet.startupLimit,
      dispatchDelay: parseDuration(fleet.dispatchDelay),
      ...(fleet.loadThreshold !== undefined ? { loadThreshold: fleet.loadThreshold } : {}),
      onLoadWait: (w, load, threshold) => log.line(`Waiting for ${w.backend}:${w.system}: its load ${load} is above loadThreshold ${threshold}...`),
      // said as it happens, as spread does: a run of hours should not end before it tells
      // that a system never got a machine
      onFailure: (f) => {
        // a start the interrupt or -abend cut short: the run has said why it stops
        if (f.phase === 'start' && (f.error as Error | undefined)?.name === 'AbortError' && stop?.aborted) return;
        const what = { start: 'preparing', run: 'running a job on', stop: 'discarding' }[f.phase];
        log.line(`Error ${what} ${workerLabel(f.worker)}: ${errorMessage(f.error)}`);
        // the job that was running when its machine failed is neither done nor pending
        if (f.job) tally.aborted.push(summaryItem(f.job.name));
      },
      ...(stop ? { signal: stop } : {}),
    },
  );

  for (const j of result.remaining) tally.aborted.push(summaryItem(j.name));
  await pool?.save();
  // kept machines are on record in the reuse file now
  for (const record of kept) await running.remove(record);
  if (running.size > 0) log.line(`${running.size} machine(s) not discarded; discard them with: ${discardHint}`);
  await timings.save().catch(() => undefined);
  const machinesByRegion: Record<string, number> = {};
  for (const p of pulls) machinesByRegion[p.region] = (machinesByRegion[p.region] ?? 0) + 1;
  // a pull's bytes are its base and delta: each such machine took the run manifest from the origin too
  const originPullBytes = pulls.reduce((n, p) => n + (p.region === ORIGIN_DIRECT ? p.bytes + push.manifestBytes : 0), 0);
  const ledger = buildLedger(before, await snapshotFleet(fleet, o.statsTimeout), {
    run: push.run,
    project: project.name,
    bytesSent: push.bytesSent,
    basesReceived: push.bytesReceived,
    fullUploadBytes: push.fullUploadBytes,
    manifestBytes: push.manifestBytes,
    machinesByRegion,
    originPullBytes,
    originAssetBytes: transfers.assetBytesByRegion[ORIGIN_DIRECT] ?? 0,
    machinesReused: reused,
    assetNaiveByRegion: transfers.assetNaiveByRegion,
    artifactBytes: transfers.artifactBytes,
    controllerBytesByCache: transfers.controllerBytesByCache,
    ...(interrupt?.received ? { interrupted: { signal: interrupt.received, abortedJobs: tally.aborted.length } } : {}),
  });
  return {
    tally,
    ledger,
    push,
    run: push.run,
    project: project.name,
    origin: fleet.origin,
    pulls,
    assetBytes: transfers.assetBytes,
    artifactBytes: transfers.artifactBytes,
    ...(interrupt?.received ? { interrupted: interrupt.received } : {}),
  };
}
