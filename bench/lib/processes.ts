// Child processes for benches: start, wait for readiness, stop by PID (SIGTERM, then
// SIGKILL), and at exit if the bench is interrupted (Ctrl-C). The bench-side counterpart of
// test/helpers/processes.ts, without tap.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { undoAtExit } from '../../test/helpers/processes.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface BenchDir {
  readonly dir: string;
  remove(): void;
  /** Leaves the directory in place at exit, for a look. */
  keep(): void;
}

/**
 * A new directory under the system's temp directory for one bench run, removed by
 * `remove()` or, if the bench is interrupted, at exit after everything else was undone
 * (unless kept).
 */
export function benchDir(prefix: string): BenchDir {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const removeNow = () => rmSync(dir, { recursive: true, force: true });
  const forget = undoAtExit(removeNow, { last: true });
  return { dir, remove: () => { forget(); removeNow(); }, keep: forget };
}

export interface BenchProcess {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  stop(): Promise<void>;
}

/** Spawns a command with piped output; stderr's tail is kept for error messages. */
export function startProcess(command: string, args: string[], options: SpawnOptions = {}): BenchProcess {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-20_000); });
  // SIGTERM, not SIGKILL: nginx's master and our primary then stop their workers themselves.
  child.once('exit', undoAtExit(() => process.kill(child.pid!, 'SIGTERM')));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.kill(child.pid, 'SIGTERM');
    const timer = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL'); }, 5000);
    await exited;
    clearTimeout(timer);
  };
  return { child, stderr: () => err, stop };
}

/** Waits for a stdout line matching `pattern` and returns its first capture group. */
function waitForLine(p: BenchProcess, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stderr: ${p.stderr()}`)), timeoutMs);
    p.child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = pattern.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1] ?? m[0]); }
    });
    p.child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited with ${code} before ready; stderr: ${p.stderr()}`)); });
  });
}

const built = new Set<string>();

/**
 * Builds the tree at `root` (`npm run build`) once per bench process: benches run the
 * compiled CLI, as users do. Run from src/ through tsx, a cold miss paid for its
 * transforms too (the name given to every closure made per request).
 */
function ensureBuilt(root: string): void {
  if (built.has(root)) return;
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  built.add(root);
}

/**
 * Starts `fleetcache <args>` (the tree's compiled CLI, built first) and waits for its
 * "listening http://…" line. `root`: another source tree of fleetcache (a git worktree,
 * for A/B runs).
 */
export async function startFleetcache(args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = [], root = REPO_ROOT): Promise<BenchProcess & { url: string }> {
  ensureBuilt(root);
  const p = startProcess(process.execPath, [...nodeArgs, join(root, 'bin/fleetcache.js'), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
  });
  return ready(p, /^listening (http:\/\/\S+)$/m);
}

/** Starts the reference of the small figures (floor-proxy.ts) in front of `upstream`; `raw`: its mode without node:http. */
export async function startReference(upstream: string, dataDir: string, workers: number, raw = false): Promise<BenchProcess & { url: string }> {
  const p = startProcess(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench/lib/floor-proxy.ts'), upstream, dataDir, String(workers), String(await freePort()), ...(raw ? ['raw'] : [])], { cwd: REPO_ROOT });
  return ready(p, /listening (http:\/\/\S+)/);
}

/** Waits for `p` to print its URL; stops it when it does not. */
async function ready(p: BenchProcess, line: RegExp): Promise<BenchProcess & { url: string }> {
  try {
    return { ...p, url: await waitForLine(p, line) };
  } catch (err) {
    await p.stop();
    throw err;
  }
}

/** A port free on 127.0.0.1 right now (for servers that cannot listen on port 0). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
