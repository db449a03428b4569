// The processes of a local machine: every script of the machine runs with MACHINE_MARK in
// its environment, which its children inherit (also those that leave the script's
// process group), so ending the machine's processes finds them all through /proc. The
// local backend's emulated reboot and its discard both end them.
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** The environment variable naming the local machine a process belongs to. */
export const MACHINE_MARK = 'FLEETCACHE_MACHINE';
/** Between SIGTERM and SIGKILL (shutdown waits longer; tasks rarely need it). */
const TERM_GRACE = 5000;
/** How long to wait for init to reap the processes ended. */
const REAP_WAIT = 5000;

async function isZombie(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return / Z /.test(stat.slice(stat.lastIndexOf(')')));
}

/** PIDs of live processes whose environment holds MACHINE_MARK=mark (others' processes are unreadable: skipped). */
async function markedProcesses(mark: string): Promise<number[]> {
  const needle = Buffer.from(`\0${MACHINE_MARK}=${mark}\0`);
  const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
  const found: number[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      // NUL-separated; a leading NUL lets the first entry match too. Zombies read empty.
      const env = await readFile(`/proc/${pid}/environ`).catch(() => undefined);
      if (env && pid !== process.pid && Buffer.concat([Buffer.from([0]), env]).includes(needle)) found.push(pid);
    }),
  );
  return found;
}

/**
 * Ends every process marked for the machine, as a shutdown does: SIGTERM, then SIGKILL
 * after a grace period. Resolves with the PIDs that survive `timeout` ms (none, normally).
 * A process that cleared its environment is not found.
 */
export async function endMachineProcesses(mark: string, timeout: number): Promise<number[]> {
  const started = Date.now();
  const ended = new Set<number>();
  for (;;) {
    const left = await markedProcesses(mark);
    if (left.length === 0) break;
    const elapsed = Date.now() - started;
    if (elapsed > timeout) return left;
    const signal = elapsed < Math.min(TERM_GRACE, timeout / 2) ? 'SIGTERM' : 'SIGKILL';
    for (const pid of left) {
      ended.add(pid);
      try {
        process.kill(pid, signal);
      } catch {
        // gone meanwhile
      }
    }
    await sleep(100);
  }
  // Orphans are reaped by init, which may take a moment; until then `kill -0` and pgrep
  // still see them, which nothing sees after a real reboot.
  const reapBy = Date.now() + REAP_WAIT;
  while (Date.now() < reapBy && (await Promise.all([...ended].map(isZombie))).some(Boolean)) await sleep(100);
  return [];
}
