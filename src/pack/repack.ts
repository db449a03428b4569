// spread's `repack:` hook (spread-spec.md §12): the packed tar is given to a bash script on
// fd 3 and the script writes the replacement tar to fd 4. Identity: `cat <&3 >&4`. The
// script runs with cwd = project root; it may ignore fd 3. The project environment is
// exported before it as on machines (spread-spec §4.3), so the shell evaluates its values.
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { killGroup, signalGroup } from '../backends/process-group.js';
import type { EnvEntry } from '../backends/backend.js';
import { exportLine, OutputBuffer, REMOTE_PATH, watchScript } from '../backends/script.js';
import { FleetError } from '../errors.js';
import { atSignal } from '../project-upload/signal-cleanup.js';
import { checkTar } from './unpack.js';

export interface RepackOptions {
  /** Project root, the script's working directory. */
  readonly cwd: string;
  /** The process environment (default this process's). */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Replace its PATH by spread's fixed one (script.ts REMOTE_PATH), as spread does for its
   * local scripts; the exports still see it, and may extend it (`PATH: $PATH:/opt/bin`).
   */
  readonly fixedPath?: boolean;
  /**
   * Exported in order before the script, `export KEY="value"` as for machine scripts:
   * `$VAR` in a value is expanded by the shell, references see earlier entries only.
   */
  readonly exports?: readonly EnvEntry[];
  /** Kill the script's process group (SIGKILL) after this long (default: no limit). */
  readonly timeoutMs?: number;
  /** Every warnMs while the script runs, onWarn is called. */
  readonly warnMs?: number;
  readonly onWarn?: () => void;
  /** Aborted: the script's process group is killed and the run rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

const EXPORTS_VAR = 'FLEETCACHE_REPACK_EXPORTS';

/** Runs `script` with `inputTar` on fd 3 and `outputTar` (created or truncated) on fd 4. */
export async function runRepack(script: string, inputTar: string, outputTar: string, options: RepackOptions): Promise<void> {
  options.signal?.throwIfAborted();
  const input = await open(inputTar, 'r');
  const output = await open(outputTar, 'w');
  try {
    // The export lines reach bash through its environment, which only its owner can read,
    // not its command line, which every user of the host can (ps): they may hold secrets.
    const exports = (options.exports ?? []).map(exportLine).join('\n');
    const callerEnv = options.env ?? process.env;
    const env = options.fixedPath ? { ...callerEnv, PATH: REMOTE_PATH } : callerEnv;
    const child = spawn('/bin/bash', ['-eu', '-c', exports ? `eval "$${EXPORTS_VAR}"; unset ${EXPORTS_VAR}\n${script}` : script], {
      cwd: options.cwd,
      env: exports ? { ...env, [EXPORTS_VAR]: exports } : env,
      stdio: ['ignore', 'inherit', 'pipe', input.fd, output.fd],
      // its own process group, so a timeout also stops what the script started
      detached: true,
    });
    // Outside the terminal's process group, the script would not see a ^C that ends this
    // process, and would run on: a signal that ends this process is passed on to its group.
    // A SIGINT is followed by a SIGTERM: bash goes on with a script whose running command
    // survived the SIGINT ("wait and cooperative exit"), and this process does not stay to see.
    const release = atSignal((sig) => {
      signalGroup(child, sig);
      if (sig === 'SIGINT') signalGroup(child, 'SIGTERM');
    });
    const stderr = new OutputBuffer();
    child.stderr?.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      stderr.push(chunk.toString());
    });
    // spread's timers (spec §11): at the kill timeout the whole group gets SIGKILL, and the
    // wait is bounded even when a process the script left outside its group holds stderr.
    let killed = false;
    let disarm = (): void => undefined;
    let unlisten = (): void => undefined;
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      const end = (c: number | null, s: NodeJS.Signals | null): void => resolve({ code: c, signal: s });
      child.on('error', reject);
      child.on('close', end);
      const onWarn = options.onWarn;
      const watched = { killTimeout: options.timeoutMs, warnTimeout: options.warnMs, onWarn: onWarn && (() => onWarn()) };
      disarm = watchScript(watched, stderr, () => {
        killed = true;
        killGroup(child, end);
      });
      const abort = (): void => killGroup(child, end);
      options.signal?.addEventListener('abort', abort, { once: true });
      unlisten = () => options.signal?.removeEventListener('abort', abort);
    }).finally(() => {
      disarm();
      unlisten();
      release();
    });
    options.signal?.throwIfAborted();
    if (killed || code !== 0) {
      const how = killed ? 'kill-timeout reached' : signal ? `killed by ${signal}` : `exit status ${code}`;
      const last = stderr.text().trim().split('\n').pop();
      throw new FleetError('FC_ERR_PROJECT', `repack script failed (${how})${last ? `: ${last}` : ''}`);
    }
  } finally {
    await input.close();
    await output.close();
  }
}

/** The script as an error message shows it: its first line, shortened. */
function shown(script: string): string {
  const lines = script.trim().split('\n');
  const first = lines[0]!.length > 120 ? `${lines[0]!.slice(0, 117)}...` : lines[0]!;
  return lines.length > 1 ? `${first} ...` : first;
}

/**
 * Refuses a repack output the machines' unpack would refuse (an entry name or type it does
 * not take, an empty or truncated tar): found before the upload, not on every machine.
 */
export async function checkRepackOutput(script: string, outputTar: string): Promise<void> {
  try {
    await checkTar(createReadStream(outputTar));
  } catch (err) {
    if (!(err instanceof FleetError)) throw err;
    throw new FleetError('FC_ERR_PROJECT', `the repack script's output (fd 4) is not a tar the machines can unpack: ${err.message}; repack script: ${shown(script)}`, { cause: err });
  }
}
