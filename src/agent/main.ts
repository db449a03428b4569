// The machine agent: bundled into one file (dist/agent.mjs, see scripts/build-agent.mjs),
// sent to each machine and run with the machine's node (>= 20).
//
//   node agent.mjs <command> --json-args '<JSON object>'
//   node agent.mjs <command> --json-args-file FILE   (FILE "-": standard input)
//
// The runner sends the arguments on standard input (a here-document of the script), not on
// the command line: they may hold a token, and a command line is readable by every user
// of the machine (ps, /proc/PID/cmdline).
//
// Commands and their arguments (JSON fields; "?" = optional):
//   pull       {urls: string[], project, run, dest, workDir?, token?, doneMarker?, cacheTimeoutMs?}
//              urls: nearest cache first, then the other caches, then the origin. Fetches the
//              run's base + delta by digest, verifies and unpacks the tree into dest (created).
//              workDir holds the temporary tars (default: the system temp directory).
//              doneMarker: a file removed before the pull and written (holding dest) once the
//              tree is complete, so a pull cut by a crash or a kill is never taken as done.
//              cacheTimeoutMs: how long each cache (not the origin) may keep silent, for an answer's
//              headers and then within its body, before it is skipped.
//              → {ok:true, url, urlIndex, fromCache, bytesDownloaded, entries, resultDigest, skipped:[{url, code, error}]}
//              fromCache: the URL used is not the last one (the origin).
//              On failure the answer lists the URLs given up on before it as well (skipped).
//   assets     {manifest, urls: string[], cacheFolder?, dest?, token?, cacheTimeoutMs?}
//              cacheTimeoutMs: as for pull, for each file's download.
//              → {ok, files:[{filename, source, url, bytesDownloaded, bytesFromCache, error?}], failed, bytesDownloaded, bytesFromCache,
//                 skipped:[{url, code}] (each URL a file's download gave up on), warnings,
//                 error? (when a file failed: the failed files' errors)}
//   artifacts  {url, token?, run, job, cwd, paths: string[], stored?: [{path, size, digest}], cacheTimeoutMs?}
//              stored: the files an earlier try stored (its failed answer's `stored`): not sent
//              again while their content is the same.
//              cacheTimeoutMs: given when url is a cache another URL follows: how long it may keep
//              silent (taking no bytes of an upload, or not answering), as for pull.
//              → {ok:true, files, bytes, missing:[paths], skipped:[paths]}; on failure the answer
//              lists the files stored before it (stored), for the try through the next URL.
//   version    {} → {ok:true, version, node}
//
// stdout carries exactly one JSON line. On failure it is {ok:false, error, code, …} and the
// exit status is non-zero (the catalogue's exit code: 4 not found, 5 integrity, 6 network…).
// stderr carries one line per URL skipped by pull, for the machine's log.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { artifactEntrySchema } from '../artifacts/entry.js';
import { errorMessage, UsageError, toFleetError } from '../errors.js';
import { quotedReasons } from '../quoted-reasons.js';
import { VERSION } from '../version.js';
import { deferWasmTierUp } from '../wasm-tiering.js';

// the few responses of a command are read by llhttp's baseline code (wasm-tiering.ts)
deferWasmTierUp();

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
async function runAgent(argv: readonly string[]): Promise<{ output: Output; exitCode: number }> {
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

const { output, exitCode } = await runAgent(process.argv.slice(2));
// Exit once the line is written: idle keep-alive sockets must not hold the machine's ssh session.
process.stdout.write(`${JSON.stringify(output)}\n`, () => process.exit(exitCode));
