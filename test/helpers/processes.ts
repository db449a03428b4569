// Starting fleetcache commands as real child processes, and stopping them by PID.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** argv to run the CLI from source (tests do not depend on a build). */
export function cliArgs(args: string[]): string[] {
  return ['--import', 'tsx', `${REPO_ROOT}src/cli/bin.ts`, ...args];
}

export interface RunningServer {
  readonly url: string;
  readonly child: ChildProcess;
  readonly stderr: () => string;
  stop(): Promise<void>;
}

/**
 * Spawns `fleetcache <args>` and waits for its "listening http://…" line. The process is
 * stopped by its PID (SIGTERM, then SIGKILL) in the test's teardown. `as` runs it as
 * another user (the caller must be root).
 */
export async function startServerProcess(t: Test, args: string[], env: NodeJS.ProcessEnv = {}, as?: Pick<SpawnOptions, 'uid' | 'gid'>): Promise<RunningServer> {
  const child = spawn(process.execPath, cliArgs(args), { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...as });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-20_000); });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.kill(child.pid!, 'SIGTERM');
    const timer = setTimeout(() => { if (child.exitCode === null) process.kill(child.pid!, 'SIGKILL'); }, 5000);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stop);
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no "listening" line within 20 s; stderr: ${err}`)), 20_000);
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

/** Whether a process with this PID exists (signal 0 checks without sending). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
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

/** PIDs of every descendant of `pid`: its children, then theirs. */
export function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const [child, parent] of parentsByPid()) children.set(parent, [...(children.get(parent) ?? []), child]);
  const out: number[] = [];
  for (let next = children.get(pid) ?? []; next.length > 0; next = next.flatMap((p) => children.get(p) ?? [])) out.push(...next);
  return out;
}
