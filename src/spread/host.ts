// `$(HOST:cmd)` commands run on the controller (spread-spec §4.3). As spread's cmdcache
// (project.go Jobs), a command runs the first time a job made or an evaluated field needs
// it, once per distinct text: a task, system or suite of no job never runs its commands.
// Synchronous like spread's: evaluation happens while jobs are made, before any run starts.
import { spawnSync } from 'node:child_process';
import type { HostResult } from './model.js';

/** Non-greedy up to the first `)`, exactly like spread's varcmd. */
export const HOST_REF = /\$\(HOST:.+?\)/g;

/** Runs one command with /bin/bash -c; stdout minus trailing newlines, or stderr lines joined by "; ". */
function runHostCommand(cmd: string): HostResult {
  const r = spawnSync('/bin/bash', ['-c', cmd], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error === undefined && r.status === 0) return { ok: true, output: r.stdout.replace(/\n+$/, '') };
  const msg = (r.stderr ?? '').trim();
  if (msg) return { ok: false, error: msg.split('\n').join('; ') };
  if (r.error !== undefined) return { ok: false, error: r.error.message };
  return { ok: false, error: r.status === null ? `signal: ${r.signal ?? 'unknown'}` : `exit status ${r.status}` };
}

/** The `$(HOST:…)` results of one project, each command run on first use. */
export class HostCommands {
  private readonly results = new Map<string, HostResult>();

  result(cmd: string): HostResult {
    let r = this.results.get(cmd);
    if (r === undefined) this.results.set(cmd, (r = runHostCommand(cmd)));
    return r;
  }
}
