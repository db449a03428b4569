// The agent's commands (their arguments and answers: main.ts), apart from the process that
// prints the answer and exits, so that tests can run a command's logic in their own process.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { artifactEntrySchema } from '../artifacts/entry.js';
import { errorMessage, UsageError, toFleetError } from '../errors.js';
import { quotedReasons } from '../quoted-reasons.js';
import { VERSION } from '../version.js';

const Urls = Type.Array(Type.String({ minLength: 1 }), { minItems: 1 });
const Name = Type.String({ minLength: 1 });

const pullArgs = Type.Object(
  {
    urls: Urls,
    project: Name,
    run: Name,
    dest: Name,
    workDir: Type.Optional(Name),
    token: Type.Optional(Type.String()),
    doneMarker: Type.Optional(Name),
    cacheTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);
const assetsArgs = Type.Object(
  { manifest: Name, urls: Urls, cacheFolder: Type.Optional(Name), dest: Type.Optional(Name), token: Type.Optional(Type.String()), cacheTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })) },
  { additionalProperties: false },
);
const artifactsArgs = Type.Object(
  { url: Name, token: Type.Optional(Type.String()), run: Name, job: Name, cwd: Name, paths: Type.Array(Type.String()), stored: Type.Optional(Type.Array(artifactEntrySchema)), cacheTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })) },
  { additionalProperties: false },
);
const versionArgs = Type.Object({}, { additionalProperties: false });

type Output = { ok: boolean } & Record<string, unknown>;

function check<S extends TSchema>(schema: S, value: unknown, command: string): Static<S> {
  if (Value.Check(schema, value)) return value;
  const first = Value.Errors(schema, value).First();
  throw new UsageError(`agent ${command}: bad arguments${first ? `: ${first.path || '/'} ${first.message}` : ''}`);
}

async function pull(args: Static<typeof pullArgs>): Promise<Output> {
  if (args.doneMarker) await rm(args.doneMarker, { force: true });
  if (args.workDir) {
    await mkdir(args.workDir, { recursive: true });
    // pullProject keeps its temporary tars under os.tmpdir(), which follows TMPDIR.
    process.env.TMPDIR = resolve(args.workDir);
  }
  await mkdir(args.dest, { recursive: true });
  // Each command's code is evaluated only when it runs (the bundle keeps it in one file): a
  // machine starts the agent for every job's assets and artifacts.
  const { pullWithFallback } = await import('./pull.js');
  const pulled = await pullWithFallback({
    urls: args.urls,
    project: args.project,
    run: args.run,
    dest: args.dest,
    ...(args.token ? { token: args.token } : {}),
    ...(args.cacheTimeoutMs !== undefined ? { cacheTimeoutMs: args.cacheTimeoutMs } : {}),
    onSkip: (url, err) => process.stderr.write(`fleetcache-agent: ${url} skipped: ${err.message}\n`),
    onRecheck: (url, err) => process.stderr.write(`fleetcache-agent: ${url} served damaged bytes (${err.message}): asking again with no-cache\n`),
    onRetry: (ms, err) => process.stderr.write(`fleetcache-agent: every URL failed (${err.message}): trying them again in ${ms / 1000} s\n`),
  });
  if (args.doneMarker) await writeFile(args.doneMarker, `${args.dest}\n`);
  return {
    ok: true,
    url: pulled.url,
    urlIndex: pulled.index,
    fromCache: pulled.index < args.urls.length - 1,
    bytesDownloaded: pulled.result.bytesReceived,
    entries: pulled.result.entries,
    resultDigest: pulled.result.manifest.result.digest,
    skipped: pulled.skipped,
  };
}

async function assets(args: Static<typeof assetsArgs>): Promise<Output> {
  const [{ fetchAssets }, { manifestNotices }] = await Promise.all([import('../assets/fetch.js'), import('../assets/manifest.js')]);
  const result = await fetchAssets({
    manifestPath: args.manifest,
    urls: args.urls,
    ...(args.cacheFolder ? { cacheFolder: args.cacheFolder } : {}),
    ...(args.dest ? { dest: args.dest } : {}),
    ...(args.token ? { token: args.token } : {}),
    ...(args.cacheTimeoutMs !== undefined ? { cacheTimeoutMs: args.cacheTimeoutMs } : {}),
  });
  return {
    ok: result.failed === 0,
    // the runner's message when a file failed (it printed the whole answer)
    ...(result.failed > 0 ? { error: quotedReasons(result.files.flatMap((f) => (f.error ? [f.error.message] : []))) } : {}),
    files: result.files.map((f) => ({
      filename: f.filename,
      source: f.source ?? null,
      url: f.url ?? null,
      bytesDownloaded: f.bytesDownloaded,
      bytesFromCache: f.bytesFromCache,
      ...(f.error ? { error: f.error.message, code: f.error.code } : {}),
    })),
    failed: result.failed,
    bytesDownloaded: result.bytesDownloaded,
    bytesFromCache: result.bytesFromCache,
    // the URLs given up on, as pull's `skipped`: the runner has its next machines try them last
    skipped: result.files.flatMap((f) => f.failedUrls),
    // what `fleetcache assets fetch` prints as warnings, for the runner's log
    warnings: [...manifestNotices(result, args.manifest), ...result.files.flatMap((f) => f.warnings.map((w) => `${f.filename}: ${w}`))],
  };
}

async function artifacts(args: Static<typeof artifactsArgs>): Promise<Output> {
  const [{ uploadArtifacts }, { cacheLimits }] = await Promise.all([import('../artifacts/upload.js'), import('../client/http.js')]);
  const result = await uploadArtifacts({
    url: args.url, run: args.run, job: args.job, cwd: args.cwd, paths: args.paths,
    ...(args.token ? { token: args.token } : {}),
    ...(args.stored ? { stored: args.stored } : {}),
    ...(args.cacheTimeoutMs !== undefined ? { limits: cacheLimits(args.cacheTimeoutMs) } : {}),
  });
  return { ok: true, files: result.files.length, bytes: result.bytes, missing: result.missing, skipped: result.skipped };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function readArgs(argv: readonly string[]): Promise<unknown> {
  const [flag, value, ...rest] = argv;
  if (flag === undefined) return {};
  if (value === undefined || rest.length > 0 || (flag !== '--json-args' && flag !== '--json-args-file')) {
    throw new UsageError('usage: agent.mjs <pull|assets|artifacts|version> (--json-args JSON | --json-args-file FILE|-)');
  }
  const text = flag === '--json-args' ? value : value === '-' ? await readStdin() : await readFile(value, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`agent: ${flag}: invalid JSON: ${errorMessage(err)}`);
  }
}

/** Runs one agent command; resolves to the JSON line's object and the exit code. */
export async function runAgent(argv: readonly string[]): Promise<{ output: Output; exitCode: number }> {
  try {
    const [command, ...rest] = argv;
    const raw = await readArgs(rest);
    let output: Output;
    switch (command) {
      case 'pull':
        output = await pull(check(pullArgs, raw, command));
        break;
      case 'assets':
        output = await assets(check(assetsArgs, raw, command));
        break;
      case 'artifacts':
        output = await artifacts(check(artifactsArgs, raw, command));
        break;
      case 'version':
        check(versionArgs, raw, command);
        output = { ok: true, version: VERSION, node: process.versions.node };
        break;
      default:
        throw new UsageError(`agent: unknown command "${command ?? ''}" (pull, assets, artifacts, version)`);
    }
    return { output, exitCode: output.ok ? 0 : 1 };
  } catch (err) {
    const fe = toFleetError(err);
    return { output: { ok: false, error: fe.message, ...fe.toJSON() }, exitCode: fe.exitCode };
  }
}
