// `fleetcache list [FILTER...]`: the jobs spread -list would print, one per line; with
// --json, also each job's evaluated environment, priority, workers and region.
// Errors end like spread's: "error: <message>" on stderr and exit status 1.
import type { Command } from 'commander';
import type { Job, jobEnvironment } from '../spread/index.js';
import { jobParts, jobRegion } from '../spread/parts.js';
import { exitOneOnError } from './exit-one.js';

/** One job as `list --json` shows it. */
function jobToJson(job: Job, environment: ReturnType<typeof jobEnvironment>): Record<string, unknown> {
  return {
    ...jobParts(job),
    priority: job.priority,
    workers: job.system.workers,
    region: jobRegion(job) ?? null,
    // Keys are identifiers (never integer-like), so object order is the environment's order.
    environment: Object.fromEntries(environment),
  };
}

/** The reader of the list went away (`fleetcache list | head`): nothing more can be written. */
class ReaderGone extends Error {}

/** spread -list's exit status when its reader goes away: killed by SIGPIPE, saying nothing. */
const SIGPIPE_STATUS = 128 + 13;

function write(out: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => out.write(text, (err) => (err ? reject((err as NodeJS.ErrnoException).code === 'EPIPE' ? new ReaderGone() : err) : resolve())));
}

/** `warn`: told each key of the project's files fleetcache ignores (-v). */
export async function listJobs(cwd: string, filters: readonly string[], json: boolean, out: NodeJS.WritableStream, warn?: (line: string) => void): Promise<void> {
  // the spread parser loads once the command runs, not for --help
  const { expandJobs, findProject, jobEnvironment, loadProject } = await import('../spread/index.js');
  const project = await loadProject(findProject(cwd));
  if (warn) for (const ignored of project.ignoredKeys) warn(`WARNING: ${ignored}`);
  const jobs = expandJobs(project, filters);
  if (!json) {
    await write(out, jobs.map((j) => j.name).join('\n') + '\n');
    return;
  }
  // Written in chunks: snapd's 147k jobs with full environments are hundreds of MB.
  const CHUNK = 500;
  for (let i = 0; i < jobs.length; i += CHUNK) {
    const lines = jobs.slice(i, i + CHUNK).map((j, k) => (i + k === 0 ? '[' : ',') + JSON.stringify(jobToJson(j, jobEnvironment(j))));
    await write(out, lines.join('\n') + '\n');
  }
  await write(out, ']\n');
}

export function registerList(program: Command): void {
  program
    .command('list')
    .description('List the jobs of the spread project in the current directory, as `spread -list` does')
    .argument('[filter...]', 'spread filter arguments (backend, system, suite/, /task, ..., #N)')
    .option('--json', 'print a JSON array with each job\'s environment, priority, workers and region')
    .option('-v, --verbose', 'name on stderr the keys of spread.yaml and task.yaml fleetcache ignores (as spread does, silently otherwise)')
    .addHelpText('after', '\nErrors end as spread -list\'s do: "error: <message>" on stderr, exit status 1 (a malformed command line: 2).')
    .action((filters: string[], opts: { json?: boolean; verbose?: boolean }) => printJobs(filters, opts.json === true, opts.verbose === true));
}

/** `fleetcache list` (and `run -list`): the jobs of the project in the current directory on stdout; errors as spread's. */
export function printJobs(filters: readonly string[], json: boolean, verbose: boolean): Promise<void> {
  const warn = verbose ? (line: string) => void process.stderr.write(`${line}\n`) : undefined;
  return exitOneOnError('error: ', async () => {
    try {
      await listJobs(process.cwd(), filters, json, process.stdout, warn);
    } catch (err) {
      if (!(err instanceof ReaderGone)) throw err;
      process.exitCode = SIGPIPE_STATUS;
    }
  });
}
