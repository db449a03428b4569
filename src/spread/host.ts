// `$(HOST:cmd)` commands run on the controller (spread-spec §4.3). Loading runs every
// distinct command once and records its output or error; expansion only looks results
// up, so it stays free of I/O. A failure is reported only where a job uses it.
import { execFile } from 'node:child_process';
import type { HostResult } from './model.js';

/** Non-greedy up to the first `)`, exactly like spread's varcmd. */
export const HOST_REF = /\$\(HOST:.+?\)/g;

/** The command text inside each `$(HOST:…)` reference of a value. */
export function hostCommands(value: string): string[] {
  if (!value.includes('$(HOST:')) return [];
  return [...value.matchAll(HOST_REF)].map((m) => m[0].slice('$(HOST:'.length, -1));
}

/** Runs one command with /bin/bash -c; stdout minus trailing newlines, or stderr lines joined by "; ". */
export function runHostCommand(cmd: string): Promise<HostResult> {
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

const PARALLEL = 8;

/** Runs every distinct command found in the values, a few at a time. */
export async function runHostCommands(values: Iterable<string>): Promise<Record<string, HostResult>> {
  const cmds = [...new Set([...values].flatMap(hostCommands))];
  const out: Record<string, HostResult> = {};
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cmds.length) {
      const cmd = cmds[next++]!;
      out[cmd] = await runHostCommand(cmd);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, cmds.length) }, worker));
  return out;
}
