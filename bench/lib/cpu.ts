// CPU time of server processes from /proc (Linux): a figure that, unlike throughput,
// stays meaningful on a machine shared with other work.
import { readdir, readFile } from 'node:fs/promises';

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** utime + stime (fields 14, 15) and the parent PID (field 4) of one process. */
async function statOf(pid: number): Promise<{ ppid: number; ticks: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: split after its closing parenthesis.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}

/** CPU seconds used so far by `pid` and its live direct children (nginx's workers). */
export async function cpuSecondsOf(pid: number): Promise<number> {
  let ticks = (await statOf(pid))?.ticks ?? 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = await statOf(Number(entry));
    if (st && st.ppid === pid) ticks += st.ticks;
  }
  return ticks / CLOCK_TICKS;
}
