// spread's REBOOT (spec §11, client.go: run): a script that exits 213 with `<REBOOT [key]>`
// as its last line asks for a reboot. The machine reboots and the same script runs again
// with SPREAD_REBOOT set to the key, or to the number of reboots so far when none was
// given. SPREAD_REBOOT is set on every run of every script, 0 on the first. A script
// ending with `<ERROR msg>` (the ERROR helper) fails with that message as its output.
import type { EnvEntry, ExecOptions, ExecResult, Machine } from '../backends/backend.js';
import { lastMarker, MARKER_EXIT, OutputBuffer } from '../backends/script.js';
import { RebootError } from '../errors.js';

/**
 * Reboots one script run may ask for. spread's check (`reboot > maxReboots`) lets an
 * eleventh through; its message and the spec say more than 10 is an error, so 10 it is.
 */
const MAX_REBOOTS = 10;

export interface ScriptRun extends ExecResult {
  /** Why the run failed beyond its output: the reboot limit, or a reboot that did not happen. */
  failure?: string;
  /** The machine did not come back from a reboot: it can run nothing more. */
  lost?: boolean;
}

interface RebootingOptions extends ExecOptions {
  /** How log lines name the script: `<machine label> (<context>)`, spread's. */
  describe: string;
  log: (line: string) => void;
}

/** spread's default kill-timeout, the reboot timeout when the caller sets none. */
const DEFAULT_REBOOT_TIMEOUT = 15 * 60_000;

/** Runs a script, rebooting the machine and running it again each time it calls REBOOT. */
export async function execWithReboots(machine: Machine, script: string, o: RebootingOptions): Promise<ScriptRun> {
  const { describe, log, ...exec } = o;
  const env: EnvEntry[] = (o.env ?? []).filter(([k]) => k !== 'SPREAD_REBOOT');
  let key = '0';
  // every run's output in one buffer, capped as one run's is: the line saying what was dropped
  // opens it once (joined, each run's own line came in the middle of the output)
  const all = new OutputBuffer();
  const onOutput = (chunk: string): void => {
    all.push(chunk);
    o.onOutput?.(chunk);
  };
  for (let reboots = 0; ; reboots++) {
    const { res, marker } = await runOnce(machine, script, { ...exec, env: [...env, ['SPREAD_REBOOT', key]], onOutput });
    // ERROR msg: the run fails with just the message, not the trace (spec §11)
    if (marker?.name === 'ERROR' && marker.value !== '') return { ...res, output: marker.value };
    if (marker?.name !== 'REBOOT') return { ...res, output: all.text() };
    if (reboots >= MAX_REBOOTS) return { ...res, output: all.text(), failure: `rebooted ${reboots} times and asked again: more than ${MAX_REBOOTS} reboots` };
    log(`Rebooting on ${describe} as requested...`);
    try {
      await machine.reboot({
        timeout: o.killTimeout ?? DEFAULT_REBOOT_TIMEOUT,
        ...(o.warnTimeout ? { warnTimeout: o.warnTimeout, onWarn: () => log(`Reboot on ${describe} is taking a while...`) } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      });
    } catch (err) {
      if (!(err instanceof RebootError)) throw err;
      return { ...res, output: all.text(), failure: err.message, lost: true };
    }
    log(`Connected after reboot to ${describe}`);
    key = marker.value || String(reboots + 1);
    all.push('\n');
  }
}

/**
 * Runs the script once: its result without its output (`all` in execWithReboots has it), and
 * the marker its output ends with. The output stays here: a variable of execWithReboots holding
 * it (or all.text()) was kept while the machine rebooted and the next run went, as each await
 * keeps the function's variables, so a script that rebooted held its output up to three times.
 */
async function runOnce(machine: Machine, script: string, o: ExecOptions): Promise<{ res: Omit<ExecResult, 'output'>; marker: ReturnType<typeof lastMarker> }> {
  const { output, ...res } = await machine.exec(script, o);
  return { res, marker: res.exitCode === MARKER_EXIT && !res.killed ? lastMarker(output) : undefined };
}
