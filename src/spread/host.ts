// `$(HOST:cmd)` commands run on the controller (spread-spec §4.3). Loading runs every
// distinct command once and records its output or error; expansion only looks results
// up, so it stays free of I/O. A failure is reported only where a job uses it.
import { execFile } from 'node:child_process';
import type { HostResult } from './model.js';

/** Non-greedy up to the first `)`, exactly like spread's varcmd. */
export const HOST_REF = /\$\(HOST:.+?\)/g;

/** The command text inside each `$(HOST:…)` reference of a value. */
function hostCommands(value: string): string[] {
  if (!value.includes('$(HOST:')) return [];
  return [...value.matchAll(HOST_REF)].map((m) => m[0].slice('$(HOST:'.length, -1));
}

/** Runs one command with /bin/bash -c; stdout minus trailing newlines, or stderr lines joined by "; ". */
function runHostCommand(cmd: string): Promise<HostResult> {
  return new Promise((resolve) => {
    execFile('/bin/bash', ['-c', cmd], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve({ ok: true, output: stdout.replace(/\n+$/, '') });
      const msg = stderr.trim();
      if (msg) return resolve({ ok: false, error: msg.split('\n').join('; ') });
      const code = (err as { code?: unknown }).code;
      resolve({ ok: false, error: typeof code === 'number' ? `exit status ${code}` : err.message });
    });
  });
}

/**
 * Runs every distinct command found in the values, one at a time in the order given (the
 * project's, then each backend's and system's, then each suite's and task's, as a job's
 * cascade has them): a command may use what an earlier one left, as in spread.
 */
export async function runHostCommands(values: Iterable<string>): Promise<Record<string, HostResult>> {
  const out: Record<string, HostResult> = {};
  for (const cmd of new Set([...values].flatMap(hostCommands))) out[cmd] = await runHostCommand(cmd);
  return out;
}
