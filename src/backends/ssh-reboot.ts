// Rebooting a machine reached over SSH (the `ssh` and `adhoc` backends), as spread does
// for REBOOT: read the boot identity, ask for the reboot, then reconnect with backoff
// until a connection answers with another boot identity, within a timeout.
import { setTimeout as sleep } from 'node:timers/promises';
import { Type } from '@sinclair/typebox';
import { parseDuration } from '../config/units.js';
import { every } from '../long-timer.js';
import { ConfigError, errorMessage, RebootError } from '../errors.js';
import { parseGoDuration } from '../spread/values.js';
import type { RebootOptions } from './backend.js';
import type { SshClient } from '../ssh/client.js';

/** A duration in backend options: "30s", "5m", Go's "1m30s" or "100ms", or a number of seconds. */
export const durationOption = Type.Union([Type.String(), Type.Number()]);

/** Reads a durationOption in ms, in spread's syntax as the rest of spread.yaml, or the config files' (`2d`, `90`). */
export function durationMs(value: string | number | undefined, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  const go = typeof value === 'string' ? parseGoDuration(value) : undefined;
  let ms: number;
  try {
    ms = go ?? parseDuration(value);
  } catch {
    throw new ConfigError(`invalid duration ${JSON.stringify(value)} (examples: 250ms, 30s, 5m, 1h30m)`, undefined, undefined, field);
  }
  if (ms < 0) throw new ConfigError(`must not be negative, not ${JSON.stringify(value)}`, undefined, undefined, field);
  return ms;
}

/** The backend keys of both ssh backends that shape a reboot (documented in docs/reboot.md). */
export const rebootKeys = {
  /** Run on the machine, detached, to reboot it (spread: `reboot`). */
  'reboot-command': Type.Optional(Type.String({ minLength: 1 })),
  /** Prints something that changes with every boot (default: the kernel's boot_id). */
  'boot-id-command': Type.Optional(Type.String({ minLength: 1 })),
  /** How long a reboot may take (default: the kill-timeout of the script that asked). */
  'reboot-timeout': Type.Optional(durationOption),
};

export interface RebootSettings {
  command: string;
  bootIdCommand: string;
  /** ms; overrides the timeout the runner passes. */
  timeout?: number;
}

export function rebootSettings(o: { 'reboot-command'?: string; 'boot-id-command'?: string; 'reboot-timeout'?: string | number }): RebootSettings {
  const s: RebootSettings = {
    command: o['reboot-command'] ?? 'reboot',
    bootIdCommand: o['boot-id-command'] ?? 'cat /proc/sys/kernel/random/boot_id',
  };
  if (o['reboot-timeout'] !== undefined) s.timeout = durationMs(o['reboot-timeout'], 'reboot-timeout', 0);
  return s;
}

/** Per connection attempt while waiting (spread allows about 10 s for dial and handshake). */
const ATTEMPT_TIMEOUT = 10_000;
/**
 * The least an attempt gets to connect, however close the deadline: one cut shorter would
 * report only its own cut as the last attempt (an attempt under way at the deadline is let
 * finish anyway).
 */
const LEAST_ATTEMPT = 3_000;
const FIRST_PAUSE = 250;
const LONGEST_PAUSE = 4000;

/** What a reboot needs of a connection to the machine: a command run, and its close. */
type RebootConnection = Pick<SshClient, 'exec' | 'close'>;

/**
 * The boot identity, or undefined when the command fails, prints nothing, takes longer
 * than an attempt may (a machine that vanishes mid-command gives no close for a while) or
 * is killed by `signal`.
 */
async function bootId(client: RebootConnection, command: string, signal?: AbortSignal): Promise<string | undefined> {
  const ac = new AbortController();
  const late = sleep(ATTEMPT_TIMEOUT + 1000, undefined, { signal: ac.signal }).then(() => undefined, () => undefined);
  const read = client.exec(command, { trace: false, cwd: '/', killTimeout: ATTEMPT_TIMEOUT, ...(signal ? { signal } : {}) }).then(
    (r) => (r.exitCode === 0 && r.output.trim() !== '' ? r.output.trim() : undefined),
    () => undefined,
  );
  try {
    return await Promise.race([read, late]);
  } finally {
    ac.abort();
  }
}

/**
 * Reboots the machine behind `client` and returns a new client once the machine answers
 * with another boot identity. `connect` makes one connection attempt with the given
 * timeout. The old client is closed either way.
 */
export async function rebootOverSsh<C extends RebootConnection>(
  label: string,
  client: C,
  connect: (timeoutMs: number) => Promise<C>,
  settings: RebootSettings,
  o: RebootOptions,
): Promise<C> {
  const timeout = settings.timeout ?? o.timeout;
  const before = await bootId(client, settings.bootIdCommand);
  if (before === undefined) {
    await client.close();
    throw new RebootError(`cannot reboot ${label}: "${settings.bootIdCommand}" printed no boot identity`);
  }
  // Detached, and a second late, so this command's own exit status comes back before the
  // machine goes down: waiting on the reboot command itself can hang for minutes while
  // sshd drops the transport uncleanly (spread stopped waiting on it for that reason).
  // For the same reason no wait for the old connection to drop: the boot identity tells.
  const asked = await client
    .exec(`(sleep 1; ${settings.command}) >/dev/null 2>&1 &`, { trace: false, cwd: '/', killTimeout: 20_000 })
    .catch((err: Error) => ({ exitCode: -1, output: err.message, killed: false }));
  await client.close();
  // A connection lost at this point gives no output; a refused sudo or shell does.
  if (asked.exitCode !== 0 && asked.output.trim() !== '') {
    throw new RebootError(`cannot request a reboot of ${label}: ${asked.output.trim()}`);
  }

  const deadline = Date.now() + timeout;
  const stopWarning = o.warnTimeout && o.onWarn ? every(o.warnTimeout, o.onWarn) : undefined;
  let last = 'no answer yet';
  try {
    for (let pause = FIRST_PAUSE; ; pause = Math.min(pause * 2, LONGEST_PAUSE)) {
      o.signal?.throwIfAborted();
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new RebootError(`${label} did not come back with a new boot identity within ${Math.round(timeout / 1000)} s of its reboot (last attempt: ${last})`);
      }
      try {
        const next = await connect(Math.min(ATTEMPT_TIMEOUT, Math.max(left, LEAST_ATTEMPT)));
        const now = await bootId(next, settings.bootIdCommand, o.signal);
        if (now !== undefined && now !== before) return next;
        last = now === undefined ? 'connected, no boot identity yet' : 'connected, boot identity unchanged';
        await next.close();
      } catch (err) {
        last = errorMessage(err);
      }
      await sleep(Math.max(0, Math.min(pause, deadline - Date.now())), undefined, o.signal ? { signal: o.signal } : undefined);
    }
  } finally {
    stopWarning?.();
  }
}
