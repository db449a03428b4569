// What a job moves besides the project: its tooltool assets, fetched on the machine through
// its region's cache before the prepare scripts, and its artifacts, sent after; with the
// byte counts the run's report is made of.
import { posix } from 'node:path';
import type { Machine } from '../backends/backend.js';
import { fetchArtifacts } from '../artifacts/download.js';
import { cacheLimits } from '../client/http.js';
import { FleetError } from '../errors.js';
import { redactUrl } from '../redact-url.js';
import { inPasses, PASSING_CODES, REFUSED_BY_CACHE_CODES } from '../url-passes.js';
import type { Job } from '../spread/index.js';
import { AgentCommandError, agentPath, agentWorkDir, runAgent, type AgentAnswer } from './agent-client.js';
import { ORIGIN_DIRECT, type CacheChoice, type UnreachableCaches } from './nearest.js';
import type { RunLog } from './report.js';
import type { SessionContext } from './session.js';

interface JobTransfersOptions {
  readonly log: RunLog;
  readonly run: string;
  /**
   * Makes a token of the run (client/run-token.ts), fresh for each command: what the machines
   * get, and what the runner reads artifacts back with (`run --artifacts`): the write token
   * never goes through a cache.
   */
  readonly machineToken?: (() => string) | undefined;
  /** `run --artifacts DIR`: each job's artifacts are also downloaded here. */
  readonly artifactsDir?: string | undefined;
  /** The run is interrupted: the agent's command on the machine is killed. */
  readonly signal?: AbortSignal;
  /** The region whose link a URL's bytes cross: its cache's region, ORIGIN_DIRECT for the origin (nearest.ts regionServing). */
  readonly regionOf: (url: string) => string;
  /** The caches the run's machines found unreachable: those an asset fetch gave up on are marked there, as a pull's. */
  readonly unreachable?: UnreachableCaches;
  /** The fleet's cacheTimeout: what a cache is allowed before the next URL is tried, for a machine's asset and the runner's artifacts (cacheLimits). */
  readonly cacheTimeoutMs?: number;
}

/** The files of a job's artifacts the last failed try stored at the origin (the agent's answer: agent/main.ts), for the next try. */
interface StoredArtifacts {
  files: unknown[] | undefined;
}

/** What the agent's `assets` answer says of one file (agent/main.ts). */
interface AssetFileAnswer {
  readonly url?: unknown;
  readonly bytesDownloaded?: unknown;
  readonly bytesFromCache?: unknown;
}

export class JobTransfers {
  readonly #o: JobTransfersOptions;
  /** Artifact bytes the machines sent. */
  artifactBytes = 0;
  /** Artifact bytes the runner itself fetched (`run --artifacts`), by the cache (or origin) URL: not the machines' traffic. */
  readonly controllerBytesByCache: Record<string, number> = {};
  /**
   * Per region of the link each file crossed (that of the URL that served it; the machine's own
   * when its cache folder had it), the asset bytes the machines used, downloaded or from their
   * cache folders: what they would have fetched without one.
   */
  readonly assetNaiveByRegion: Record<string, number> = {};
  /** Per region of the link each file crossed, the asset bytes the machines downloaded (those of ORIGIN_DIRECT from the origin itself, counted by no cache). */
  readonly assetBytesByRegion: Record<string, number> = {};

  /** Asset bytes the machines downloaded, from every region. */
  get assetBytes(): number {
    return Object.values(this.assetBytesByRegion).reduce((n, bytes) => n + bytes, 0);
  }

  constructor(options: JobTransfersOptions) {
    this.#o = options;
  }

  /** A machine session's hooks: its requests go to `choice.urls` in order. */
  hooksFor(choice: CacheChoice): Pick<SessionContext, 'assets' | 'artifacts'> {
    return {
      assets: (machine, job) => this.#assets(choice, machine, job),
      artifacts: (machine, job) => this.#artifacts(choice, machine, job),
    };
  }

  async #assets(choice: CacheChoice, machine: Machine, job: Job): Promise<void> {
    const { machineToken, signal, cacheTimeoutMs } = this.#o;
    const token = machineToken?.();
    const manifest = job.task.assets ? posix.join(job.task.name, job.task.assets) : job.suite.assets ? posix.join(job.suite.name, job.suite.assets) : undefined;
    if (!manifest) return;
    const answer = await runAgent(machine, agentPath(machine), 'assets', {
      manifest: posix.join(machine.projectPath, manifest),
      urls: choice.urls,
      cacheFolder: posix.join(agentWorkDir(machine), 'assets-cache'),
      dest: posix.join(machine.projectPath, job.task.name),
      ...(token ? { token } : {}),
      // the agent gives every URL but the last (the origin) cacheTimeoutMs; a machine whose pull
      // fell back to the origin has it first (its region is ORIGIN_DIRECT): then none has it
      ...(cacheTimeoutMs !== undefined && choice.region !== ORIGIN_DIRECT ? { cacheTimeoutMs } : {}),
    }, signal).catch((err: unknown) => {
      // a fetch that failed a file still says which caches it gave up on, and why
      if (err instanceof AgentCommandError && err.answer) this.#heardAssets(err.answer, machine, job);
      throw err;
    });
    this.#heardAssets(answer, machine, job);
    // Each file's bytes on the link they crossed: the region of the URL that served it (the
    // machine's cache, another region's, or the origin itself when the caches failed it);
    // the machine's own region when its cache folder had it (or no URL did).
    const files: AssetFileAnswer[] = Array.isArray(answer.files) ? answer.files : [];
    for (const file of files) {
      const served = choice.urls.find((u) => redactUrl(u) === file.url);
      const region = served === undefined ? choice.region : this.#o.regionOf(served);
      const downloaded = Number(file.bytesDownloaded ?? 0);
      this.assetBytesByRegion[region] = (this.assetBytesByRegion[region] ?? 0) + downloaded;
      this.assetNaiveByRegion[region] = (this.assetNaiveByRegion[region] ?? 0) + downloaded + Number(file.bytesFromCache ?? 0);
    }
  }

  /** What an assets answer tells the run: the caches it gave up on (tried last by the next machines), and its warnings, logged. */
  #heardAssets(answer: AgentAnswer, machine: Machine, job: Job): void {
    this.#o.unreachable?.markSkipped(answer.skipped);
    for (const warning of Array.isArray(answer.warnings) ? answer.warnings : []) this.#o.log.line(`WARNING: assets of ${job.name} (${machine.name}): ${String(warning)}`);
  }

  async #artifacts(choice: CacheChoice, machine: Machine, job: Job): Promise<void> {
    const { log, signal } = this.#o;
    log.line(`Fetching artifacts of ${job.name}...`);
    // The nearest URL first; a cache that died since the pull is skipped for the next one;
    // every URL failing at once (the origin restarting) is tried again a few times. The files
    // a failed try stored at the origin are not sent again.
    const stored: StoredArtifacts = { files: undefined };
    await inPasses(() => this.#artifactsOnce(choice, machine, job, stored), {
      onRetry: (wait, last) => log.line(`Artifacts of ${job.name}: every URL failed (${last.message}); trying them again in ${wait / 1000} s.`),
      giveUp: (failures) => failures.at(-1)!,
      ...(signal ? { signal } : {}),
    });
  }

  /** One pass over the URLs: done once one took the artifacts, else the last (passing) failure. */
  async #artifactsOnce(choice: CacheChoice, machine: Machine, job: Job, stored: StoredArtifacts): Promise<{ result: undefined } | { failures: FleetError[] }> {
    const { log, machineToken, run, artifactsDir, signal, cacheTimeoutMs } = this.#o;
    const token = machineToken?.();
    let lastError: FleetError | undefined;
    for (const url of choice.urls) {
      // a cache the next URL follows is given up on as a machine gives it up (docs/run.md)
      const fromCache = cacheTimeoutMs !== undefined && choice.region !== ORIGIN_DIRECT && url !== choice.urls.at(-1);
      try {
        const answer = await runAgent(machine, agentPath(machine), 'artifacts', {
          url,
          ...(token ? { token } : {}),
          run,
          job: job.name,
          cwd: posix.join(machine.projectPath, job.task.name),
          paths: job.task.artifacts,
          ...(stored.files ? { stored: stored.files } : {}),
          ...(fromCache ? { cacheTimeoutMs } : {}),
        }, signal).catch((err: unknown) => {
          if (err instanceof AgentCommandError && Array.isArray(err.answer?.stored)) stored.files = err.answer.stored;
          throw err;
        });
        this.artifactBytes += Number(answer.bytes ?? 0);
        if (artifactsDir) {
          const limits = fromCache ? { limits: cacheLimits(cacheTimeoutMs) } : {};
          const fetched = await fetchArtifacts({ from: url, run, job: job.name, dest: artifactsDir, ...(token ? { token } : {}), ...limits });
          this.controllerBytesByCache[url] = (this.controllerBytesByCache[url] ?? 0) + fetched.bytes;
        }
        if (url !== choice.urls[0]) log.line(`Artifacts of ${job.name} went through ${redactUrl(url)}.`);
        return { result: undefined };
      } catch (err) {
        // a passing failure, or a cache's refusal of the request itself: the next URL may take it
        const last = url === choice.urls.at(-1);
        if (!(err instanceof FleetError) || !(PASSING_CODES.has(err.code) || (!last && REFUSED_BY_CACHE_CODES.has(err.code)))) throw err;
        lastError = err;
      }
    }
    return { failures: [lastError!] };
  }
}
