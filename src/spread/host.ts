// `$(HOST:cmd)` commands run on the controller (spread-spec §4.3). Loading runs every
// distinct command once and records its output or error; expansion only looks results
// up, so it stays free of I/O. A failure is reported only where a job uses it.
import { spawnSync } from 'node:child_process';
import type { HostResult } from './model.js';

/** Non-greedy up to the first `)`, exactly like spread's varcmd. */
export const HOST_REF = /\$\(HOST:.+?\)/g;

/** The command text inside each `$(HOST:…)` reference of a value. */
export function hostCommands(value: string): string[] {
  if (!value.includes('$(HOST:')) return [];
  return [...value.matchAll(HOST_REF)].map((m) => m[0].slice('$(HOST:'.length, -1));
}

/** Runs one command with /bin/bash -c; stdout minus trailing newlines, or stderr lines joined by "; ". */
export function runHostCommand(cmd: string): HostResult {
  const r = spawnSync('/bin/bash', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  if (r.error) return { ok: false, error: r.error.message };
  if (r.status !== 0) {
    const msg = r.stderr.trim();
    if (msg) return { ok: false, error: msg.split('\n').join('; ') };
    return { ok: false, error: r.signal ? `signal: ${r.signal.toLowerCase().replace(/^sig/, '')}` : `exit status ${r.status}` };
  }
  return { ok: true, output: r.stdout.replace(/\n+$/, '') };
}

export function runHostCommands(values: Iterable<string>): Record<string, HostResult> {
  const out: Record<string, HostResult> = {};
  for (const value of values) {
    for (const cmd of hostCommands(value)) {
      if (!Object.hasOwn(out, cmd)) out[cmd] = runHostCommand(cmd);
    }
  }
  return out;
}
