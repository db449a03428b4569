// Where the bundled agent is, for the runner that sends it to machines. The module runs
// either as src/agent/paths.ts (tsx: tests, dev) or in a chunk of the CLI's bundle under
// dist/cli/; both resolve to <package>/dist/agent.mjs. From src/, the agent's bundle is
// rebuilt when missing or older than any source file, so tests never ship a stale agent.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { errorMessage, FleetError } from '../errors.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** src/agent or dist/cli → the package root. */
const ROOT = resolve(HERE, '..', '..');
const FROM_SOURCE = basename(resolve(HERE, '..')) === 'src';
/**
 * The repository, whose src/ a build must be newer than and whose scripts build it. Compiled
 * tests (scripts/build-tests.mjs) run this module from <repository>/.test-build/src, which
 * holds only .js: their ROOT is .test-build, and its scripts/ a link, through which
 * build-agent.mjs does not see itself run as the main module and builds nothing.
 */
const REPOSITORY = basename(ROOT) === '.test-build' ? dirname(ROOT) : ROOT;

function agentBundlePath(): string {
  return join(ROOT, 'dist', 'agent.mjs');
}

function agentBuildScript(): string {
  return join(REPOSITORY, 'scripts', 'build-agent.mjs');
}

async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, (await stat(full)).mtimeMs);
  }
  return newest;
}

/** Whether `built` (a file under dist/) is missing or older than a source file or `inputs`. */
export async function olderThanSources(built: string, inputs: string[] = []): Promise<boolean> {
  if (!existsSync(built)) return true;
  const builtAt = (await stat(built)).mtimeMs;
  if ((await newestSource(join(REPOSITORY, 'src'))) > builtAt) return true;
  for (const input of inputs) if ((await stat(input)).mtimeMs > builtAt) return true;
  return false;
}

async function isStale(bundle: string): Promise<boolean> {
  if (!existsSync(bundle)) return true;
  return FROM_SOURCE && olderThanSources(bundle, [agentBuildScript()]);
}

let building: Promise<string> | undefined;

/** The bundle's path, building it first (scripts/build-agent.mjs) if missing or stale. */
export async function ensureAgentBundle(): Promise<string> {
  const bundle = agentBundlePath();
  if (!(await isStale(bundle))) return bundle;
  if (!existsSync(agentBuildScript())) {
    throw new FleetError('FC_ERR_INTERNAL', `the machine agent ${bundle} is missing and ${agentBuildScript()} is not there to build it`);
  }
  building ??= promisify(execFile)(process.execPath, [agentBuildScript(), bundle], { cwd: REPOSITORY })
    .then(() => bundle)
    .catch((err: unknown) => {
      throw new FleetError('FC_ERR_INTERNAL', `building the machine agent failed: ${(err as { stderr?: string }).stderr || errorMessage(err)}`, { cause: err });
    })
    .finally(() => {
      building = undefined;
    });
  return building;
}
