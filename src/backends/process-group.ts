// Killing a script run on this host in its own process group (spawned detached): used by
// the local backend's executor and by spread's repack script, which runs where the runner does.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

/** The scripts running now in process groups of their own (see trackGroup). */
const running = new Set<ChildProcess>();

/**
 * Keeps `child` (spawned detached) among the scripts that killLiveGroups ends, until its output closes.
 * Detached, a script outlives this process: a run that exits at once (a second Ctrl-C) would
 * leave it running, a discard script finishing behind a machine record that says it never did.
 */
export function trackGroup(child: ChildProcess): void {
  if (child.pid === undefined) return; // not started: its 'error' says why
  running.add(child);
  // 'close', not 'exit': what the script started in the background (`cmd &`) holds its
  // output open, and runs in its group, after bash itself exited
  child.once('close', () => running.delete(child));
}

/**
 * `signal` to the process group of `child`, unless its number may be another group's now. A
 * script whose bash has exited can still be tracked (a daemon it left with setsid, outside
 * its group, holds its output): its group may be empty, and an empty group's number is
 * free; after a wrap of the PIDs it can be an unrelated session's (a user's shell, a CI
 * job). While a process of the group lives, its number is not reused; so once the child
 * has exited, a process with its PID (/proc, Linux) means the group is gone and the number
 * another's: no kill.
 */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  const pid = child.pid!;
  if ((child.exitCode !== null || child.signalCode !== null) && existsSync(`/proc/${pid}`)) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Kills the process group of every tracked script still running (SIGKILL): this process is exiting. */
export function killLiveGroups(): void {
  for (const child of running) signalGroup(child);
}

/** After a kill, how long output may still drain before the pipes are cut. */
const KILL_DRAIN_MS = 2000;

/**
 * Kills the process group of `child` (spawned detached) with SIGKILL. A killed script may
 * have left a process outside its group (setsid) holding its output pipes open: 'close'
 * would wait for that process, so the kill timeout would not bound the script. Once the
 * child is gone and killed (in either order) and KILL_DRAIN_MS have passed, the pipes still
 * open are cut and `cut` is called with the child's exit.
 */
export function killGroup(child: ChildProcess, cut: (code: number | null, sig: NodeJS.Signals | null) => void): void {
  signalGroup(child);
  const cutAfterDrain = (code: number | null, sig: NodeJS.Signals | null): void => {
    setTimeout(() => {
      const pipes = [child.stdout, child.stderr].filter((p) => p !== null);
      if (pipes.every((p) => p.closed)) return;
      for (const p of pipes) p.destroy();
      cut(code, sig);
    }, KILL_DRAIN_MS).unref();
  };
  // the child may have ended before the kill, its output held open by what it left
  if (child.exitCode !== null || child.signalCode !== null) cutAfterDrain(child.exitCode, child.signalCode);
  else child.once('exit', cutAfterDrain);
}
