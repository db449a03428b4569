// Timers for delays users give (spread's warn-timeout and kill-timeout take any Go
// duration, `600h` included): Node's setTimeout and setInterval fire after 1 ms when the
// delay is above 2^31-1 ms (with a TimeoutOverflowWarning), so those wait in chunks here.
import { setTimeout as sleep } from 'node:timers/promises';

/** The longest delay a Node timer takes as given (about 24.8 days). */
export const MAX_TIMER_DELAY = 2 ** 31 - 1;

/** Calls `fn` once after `ms` (any length). Returns the function that cancels it. */
export function after(ms: number, fn: () => void): () => void {
  let timer: NodeJS.Timeout;
  const arm = (left: number): void => {
    timer = setTimeout(() => (left > MAX_TIMER_DELAY ? arm(left - MAX_TIMER_DELAY) : fn()), Math.min(left, MAX_TIMER_DELAY));
  };
  arm(ms);
  return () => clearTimeout(timer);
}

/** Calls `fn` every `ms` (any length) until cancelled. Returns the function that cancels it. */
export function every(ms: number, fn: () => void): () => void {
  let cancel = (): void => undefined;
  const tick = (): void => {
    cancel = after(ms, tick);
    fn();
  };
  cancel = after(ms, tick);
  return () => cancel();
}

/** timers/promises' setTimeout for any delay: resolves after `ms`, rejects when `signal` aborts. */
export async function sleepFor(ms: number, signal?: AbortSignal): Promise<void> {
  const options = signal ? { signal } : undefined;
  let left = ms;
  for (; left > MAX_TIMER_DELAY; left -= MAX_TIMER_DELAY) await sleep(MAX_TIMER_DELAY, undefined, options);
  await sleep(left, undefined, options);
}
