// Starting fleetcache commands as real child processes, and stopping them by PID, even
// when the test file does not end normally.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onExit } from 'signal-exit';
import type { Test } from 'tap';
import { olderThanSources } from '../../src/agent/paths.js';
import { startTimeOf } from '../../src/pid-alive.js';

// Whether a process still runs (another user's included): the check the records of src/ use.
export { isAlive } from '../../src/pid-alive.js';

/**
 * The repository, with a trailing slash: from test/helpers, or from .test-build/test/helpers
 * when the suite runs compiled (scripts/build-tests.mjs), whose tree has no src/*.ts to run.
 */
const ABOVE_TEST = fileURLToPath(new URL('../..', import.meta.url));
/** Whether the suite runs compiled (scripts/build-tests.mjs), from .test-build/. */
const COMPILED = basename(ABOVE_TEST) === '.test-build';
export const REPO_ROOT = COMPILED ? `${dirname(ABOVE_TEST)}/` : ABOVE_TEST;

/**
 * The built CLI when dist/ is newer than every source file and the build's own scripts
 * (`npm test` builds first), else the source through tsx: tests never run a stale build,
 * and a process started from the build is ready in a third of the time (tsx compiles every
 * module it loads). Compiled tests refuse a stale build instead: they are what `npm test`
 * and CI run, right after a build, so a stale dist/ there means src/ was edited without
 * rebuilding, and the tests would check old code.
 */
const FROM_BUILD = !(await olderThanSources(`${REPO_ROOT}dist/cli/bin.js`, ['build-cli.mjs', 'cores.mjs', 'lazy-modules.mjs', 'esbuild-node.mjs', 'undici-core.cjs', 'prom-client-core.cjs'].map((script) => `${REPO_ROOT}scripts/${script}`)));
if (!FROM_BUILD && COMPILED) {
  throw new Error(`${REPO_ROOT}dist/ is missing or older than src/ or its build scripts: run \`npm run build\` (and \`node scripts/build-tests.mjs\` after editing src/ or test/) before running the compiled tests`);
}
if (!FROM_BUILD) process.stderr.write('test/helpers/processes.ts: dist/ is missing or older than src/: the CLI runs from source through tsx, three times slower to start (`npm run build` to run the build)\n');

/** tsx's loader by its own URL: `--import tsx` would be resolved from the child's working directory. */
const TSX_LOADER = import.meta.resolve('tsx');

/** argv to run the CLI: the built copy if current, else from source. */
export function cliArgs(args: string[]): string[] {
  return FROM_BUILD ? [`${REPO_ROOT}dist/cli/bin.js`, ...args] : ['--import', TSX_LOADER, `${REPO_ROOT}src/cli/bin.ts`, ...args];
}

/**
 * The URL of the repository's module `path` (`src/store/disk`, `test/helpers/fixtures/x`, no
 * extension) for a child process to run or import: the compiled module when the suite runs
 * compiled, so that the child needs no tsx (which compiles every module the child loads: 1
 * to 4 s of CPU a child), else the source, which the child loads with SOURCE_LOADER.
 */
export function treeModule(path: string): string {
  return new URL(`../../${path}.${COMPILED ? 'js' : 'ts'}`, import.meta.url).href;
}

/** node's arguments, before the module or `-e`, for a child that runs or imports a treeModule. */
export const SOURCE_LOADER: readonly string[] = COMPILED ? [] : ['--import', TSX_LOADER];

/**
 * Runs `undo` (synchronous) if this process ends before the returned function is called:
 * at exit, after an uncaught error, or on a fatal signal. A timed-out test file ends so: tap
 * sends it SIGALRM and runs none of its teardowns, and Node's 'exit' event does not fire on
 * a signal. The normal path calls the returned function once its teardown has done the work.
 * `last`: after every other (a directory that holds the others' mounts).
 */
export function undoAtExit(undo: () => void, { last = false } = {}): () => void {
  return onExit(() => {
    try {
      undo();
    } catch {
      // best effort: the process is ending
    }
  }, { alwaysLast: last });
}

/**
 * Makes `child` the test's to stop: in its teardown by PID (`signal`, then SIGKILL after
 * 5 s), and with SIGKILL at once if the test process ends without running its teardowns.
 * Returns the stop function; calling it again does nothing.
 */
export function stopWithTest(t: Pick<Test, 'teardown'>, child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): () => Promise<void> {
  const forget = undoAtExit(() => process.kill(child.pid!, 'SIGKILL'));
  const ended = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void ended.then(forget);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid!, signal);
      const timer = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL'); }, 5000);
      await ended;
      clearTimeout(timer);
    }
  };
  t.teardown(stop);
  return stop;
}

export interface RunningServer {
  readonly url: string;
  readonly child: ChildProcess;
  readonly stderr: () => string;
  stop(): Promise<void>;
}

/** How a server process is started: as another user (`uid`, `gid`: the caller must be root), under a command that execs it (`under`: its argv before node's). */
export type StartAs = Pick<SpawnOptions, 'uid' | 'gid'> & { readonly under?: readonly string[] };

/**
 * Once `child` (a cache primary whose TMPDIR is `childTmpdir`, or this process's) is killed
 * outright, removes the socket directory it left there (src/cache/cluster/primary.ts:
 * `fleetcache-cache-<pid>-XXXXXX`), which a later cache start would sweep only once it has
 * been idle for 10 minutes.
 */
export function removeSocketDirIfKilled(child: ChildProcess, childTmpdir: string | undefined): void {
  const parent = childTmpdir ?? tmpdir();
  child.once('exit', (_code, signal) => {
    if (signal !== 'SIGKILL') return;
    for (const name of readdirSync(parent)) if (name.startsWith(`fleetcache-cache-${child.pid}-`)) rmSync(join(parent, name), { recursive: true, force: true });
  });
}

/**
 * Spawns `fleetcache <args>` and waits for its "listening http://…" line. The process is
 * stopped by its PID (SIGTERM, then SIGKILL) in the test's teardown: a command it runs
 * `under` must exec it, keeping its PID.
 */
export async function startServerProcess(t: Test, args: string[], env: NodeJS.ProcessEnv = {}, { under = [], ...as }: StartAs = {}): Promise<RunningServer> {
  const [command, ...argv] = [...under, process.execPath, ...cliArgs(args)] as [string, ...string[]];
  const child = spawn(command, argv, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...as });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-20_000); });
  const stop = stopWithTest(t, child);
  removeSocketDirIfKilled(child, env.TMPDIR);
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    // Generous: from source, each process (a cache's workers too) compiles on start, and the
    // suite runs two files at once on two cores.
    const timer = setTimeout(() => reject(new Error(`no "listening" line within 60 s; stderr: ${err}`)), 60_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /^listening (http:\/\/\S+)$/m.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited with ${code} before listening; stderr: ${err}`)); });
  });
  return { url, child, stderr: () => err, stop };
}

/** Resident set size of a process in bytes, from /proc. */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Process `pid` as it is now, for a teardown to signal later only if it is still that
 * process: once a process has ended the kernel gives its PID to the next one (pid_max is
 * 32768 on the CI machine), and a teardown that signalled a PID, or a process group, that
 * another test's process had by then took that process down (a runner test's task, once).
 */
export function rememberProcess(pid: number): { kill(signal: NodeJS.Signals, group?: boolean): void } {
  const started = startTimeOf(pid);
  return {
    kill(signal, group = false) {
      if (started === undefined || startTimeOf(pid) !== started) return; // gone, or another process now
      try {
        process.kill(group ? -pid : pid, signal);
      } catch {
        // ended meanwhile
      }
    },
  };
}

/**
 * Whether process group `pgid` still has a process (zombies included). A `pgid` that is not a
 * positive integer (a PID file read empty) throws: kill(2) takes -0 for this process's own
 * group, which is always there.
 */
export function groupAlive(pgid: number): boolean {
  if (!Number.isSafeInteger(pgid) || pgid <= 0) throw new Error(`not a process group: ${pgid}`);
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The PID of a process that has exited: a stand-in for one killed, whose leftovers a test places. */
export function exitedPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

/** The parent of every live process, from /proc/<pid>/stat (Linux; one gone meanwhile is skipped). */
export function parentsByPid(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name (field 2) may hold spaces: split after its closing parenthesis.
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  return parents;
}

/**
 * Whether the kernel lists each thread's children (/proc/<pid>/task/<tid>/children,
 * CONFIG_PROC_CHILDREN): a few small files to read instead of every process's stat, which
 * cost ~5 ms a look on a machine of 150 processes, 20 times a second in a test waiting for
 * a worker's replacement.
 */
const CHILDREN_LISTED = existsSync(`/proc/self/task/${process.pid}/children`);

/** The children of `pid`, from the lists of its threads (a child belongs to the thread that forked it); none once it is gone. */
function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return []; // gone meanwhile
  }
  return tasks.flatMap((tid) => {
    try {
      return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter((p) => p !== '').map(Number);
    } catch {
      return []; // the thread ended meanwhile
    }
  });
}

/** PIDs of every descendant of `pid`: its children, then theirs. */
export function descendantsOf(pid: number): number[] {
  let childrenOfPid = childrenOf;
  if (!CHILDREN_LISTED) {
    const children = new Map<number, number[]>();
    for (const [child, parent] of parentsByPid()) children.set(parent, [...(children.get(parent) ?? []), child]);
    childrenOfPid = (p) => children.get(p) ?? [];
  }
  const out: number[] = [];
  for (let next = childrenOfPid(pid); next.length > 0; next = next.flatMap(childrenOfPid)) out.push(...next);
  return out;
}
