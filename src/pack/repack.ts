// spread's `repack:` hook (spread-spec.md §12): the packed tar is given to a bash script on
// fd 3 and the script writes the replacement tar to fd 4. Identity: `cat <&3 >&4`. The
// script runs with cwd = project root; it may ignore fd 3.
import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { FleetError } from '../errors.js';

export interface RepackOptions {
  /** Project root, the script's working directory. */
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Kill the script after this long (default: no limit). */
  readonly timeoutMs?: number;
  /** Every warnMs while the script runs, onWarn is called. */
  readonly warnMs?: number;
  readonly onWarn?: () => void;
}

/** Runs `script` with `inputTar` on fd 3 and `outputTar` (created or truncated) on fd 4. */
export async function runRepack(script: string, inputTar: string, outputTar: string, options: RepackOptions): Promise<void> {
  const input = await open(inputTar, 'r');
  const output = await open(outputTar, 'w');
  try {
    const child = spawn('/bin/bash', ['-eu', '-c', script], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'inherit', 'pipe', input.fd, output.fd],
      // its own process group, so a timeout also stops what the script started
      detached: true,
    });
    let timedOut = false;
    const timer = options.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
        }, options.timeoutMs)
      : undefined;
    const onWarn = options.onWarn;
    const warner = options.warnMs && onWarn ? setInterval(onWarn, options.warnMs) : undefined;
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      stderr = (stderr + chunk.toString()).slice(-2000);
    });
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, s) => resolve({ code: c, signal: s }));
    }).finally(() => {
      clearTimeout(timer);
      clearInterval(warner);
    });
    if (code !== 0) {
      const how = signal ? `killed by ${signal}${timedOut ? ', kill-timeout reached' : ''}` : `exit status ${code}`;
      throw new FleetError('FC_ERR_PROJECT', `repack script failed (${how})${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`);
    }
  } finally {
    await input.close();
    await output.close();
  }
}
