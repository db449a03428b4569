// The processes of a local machine: every script of the machine runs with MACHINE_MARK in
// its environment, which its children inherit (also those that leave the script's
// process group), so ending the machine's processes finds them all through /proc. The
// local backend's emulated reboot and its discard both end them.
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { mapLimit } from '../map-limit.js';

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

/** /proc/PID/environ files read at once: a scan must not take the process's descriptors. */
const SCAN_CONCURRENCY = 16;

/**
 * Every live process's MACHINE_MARK, by mark: one pass over /proc. A process gone meanwhile,
 * a zombie (it reads empty) or another user's process (unreadable) is skipped; any other
 * failure (out of descriptors) fails the scan, as processes it could not read may be marked.
 */
async function scanMarks(): Promise<Map<string, number[]>> {
  const key = Buffer.from(`\0${MACHINE_MARK}=`);
  const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
  const marks = new Map<string, number[]>();
  await mapLimit(pids, SCAN_CONCURRENCY, async (pid) => {
    if (pid === process.pid) return;
    let env: Buffer;
    try {
      env = await readFile(`/proc/${pid}/environ`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM') return;
      throw err;
    }
    // NUL-separated; a leading NUL lets the first entry match too
    const all = Buffer.concat([Buffer.from([0]), env]);
    const at = all.indexOf(key);
    if (at < 0) return;
    const end = all.indexOf(0, at + key.length);
    const mark = all.subarray(at + key.length, end < 0 ? all.length : end).toString();
    marks.set(mark, [...(marks.get(mark) ?? []), pid]);
  });
  return marks;
}

/**
 * Scans of /proc shared by the machines that ask at once (a run ending discards them all
 * together): a caller takes the next scan that starts after it asked, never one already
 * under way, which may have passed a process before it was forked.
 */
let running: Promise<unknown> | undefined;
let queued: Promise<Map<string, number[]>> | undefined;

function freshScan(): Promise<Map<string, number[]>> {
  if (queued) return queued;
  const start = (): Promise<Map<string, number[]>> => {
    const scan = scanMarks();
    running = scan.finally(() => (running = undefined)).catch(() => undefined);
    return scan;
  };
  if (!running) return start();
  queued = running.then(() => {
    queued = undefined;
    return start();
  });
  return queued;
}

/** PIDs of live processes whose environment holds MACHINE_MARK=mark. */
async function markedProcesses(mark: string): Promise<number[]> {
  return (await freshScan()).get(mark) ?? [];
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
