// A command's --help, and the program's, load no more than the command line needs: not the
// servers (fastify), the HTTP client (undici), the configuration's parsers (ajv, yaml), the
// runner's SSH (ssh2), the AWS SDK, the packer (tar-stream). Each start of a one-shot command on a machine, and each
// `--help`, paid for all of them. The child logs every module Node loads; a chunk of the
// build stands for the modules its source map names.
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliArgs } from '../helpers/processes.js';

/** Packages only the command's work needs, never its usage. */
const NOT_FOR_HELP = ['fastify', 'undici', 'ajv', 'yaml', 'ssh2', '@aws-sdk/client-s3', 'pino', 'prom-client', '@sinclair/typebox', 'tar-stream'];

const LOADED = 'fleetcache-test-loaded ';

/** A module registering a load hook that prints each file's URL on stderr. */
function loadLogger(dir: string): string {
  const hooks = `export async function load(url, context, next) { if (url.startsWith('file:')) process._rawDebug(${JSON.stringify(LOADED)} + url); return next(url, context); }`;
  const file = join(dir, 'log-loads.mjs');
  writeFileSync(file, `import { register } from 'node:module';\nregister(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});\n`);
  return file;
}

function runLogged(logger: string, args: string[]): Promise<{ stdout: string; files: string[] }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', logger, ...cliArgs(args)], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`fleetcache ${args.join(' ')}: ${err.message}\n${stderr}`));
      const urls = stderr.split('\n').filter((line) => line.startsWith(LOADED)).map((line) => line.slice(LOADED.length));
      resolve({ stdout, files: urls.map((url) => fileURLToPath(url)) });
    });
  });
}

/** The packages of node_modules among `files`, or among the sources of the bundle's chunks. */
function packagesOf(files: readonly string[]): Set<string> {
  const packages = new Set<string>();
  for (const file of files) {
    const sources = file.includes('/dist/cli/') ? (JSON.parse(readFileSync(`${file}.map`, 'utf8')) as { sources: string[] }).sources : [file];
    for (const source of sources) {
      const name = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(source)?.[1];
      if (name) packages.add(name);
    }
  }
  return packages;
}

t.test("--help, and each command's --help, load none of what the commands' work needs", async (t) => {
  const logger = loadLogger(t.testdir());
  const program = await runLogged(logger, ['--help']);
  const commands = [...program.stdout.split('\nCommands:\n')[1]!.matchAll(/^  ([a-z]+)\b/gm)].map((m) => m[1]!).filter((name) => name !== 'help');
  t.ok(commands.length > 1, `commands listed: ${commands.join(' ')}`);
  const runs: Array<[string, string[]]> = [['--help', program.files]];
  for (const command of commands) runs.push([`${command} --help`, (await runLogged(logger, [command, '--help'])).files]);
  for (const [what, files] of runs) {
    t.ok(files.length > 0, `${what}: loads were logged`);
    const loaded = packagesOf(files);
    t.same(NOT_FOR_HELP.filter((name) => loaded.has(name)), [], `${what} loads none of ${NOT_FOR_HELP.join(', ')}`);
  }
});
