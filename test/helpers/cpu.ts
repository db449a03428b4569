// Time bounds that hold on a shared machine: the CPU time this process spent (user and
// system, all its threads), not wall time, which other test files running in parallel
// stretch. Such a bound catches a quadratic loop or a scan per item, not a slow machine.

/** `work`'s result, and the milliseconds of CPU time this process spent while it ran. */
export async function cpuMsOf<T>(work: () => T | Promise<T>): Promise<{ result: T; ms: number }> {
  const start = process.cpuUsage();
  const result = await work();
  const { user, system } = process.cpuUsage(start);
  return { result, ms: (user + system) / 1000 };
}
