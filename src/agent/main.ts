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
import { deferWasmTierUp } from '../wasm-tiering.js';
import { runAgent } from './commands.js';

// the few responses of a command are read by llhttp's baseline code (wasm-tiering.ts)
deferWasmTierUp();

const { output, exitCode } = await runAgent(process.argv.slice(2));
// Exit once the line is written: idle keep-alive sockets must not hold the machine's ssh session.
process.stdout.write(`${JSON.stringify(output)}\n`, () => process.exit(exitCode));
