// Waiting for something a server does after it answered (a commit, a broadcast), without
// a fixed sleep that a loaded machine overruns.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';

/** Polls `check` every 20 ms until it holds; rejects naming `what` after `timeoutMs`. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still waiting after ${timeoutMs} ms: ${what}`);
    await sleep(20);
  }
}

/** Runs `work` to its end, failing `t` naming `what` once it has taken more than `limitMs`. */
export async function failIfSlower<T>(t: Test, what: string, limitMs: number, work: () => Promise<T>): Promise<T> {
  const timer = setTimeout(() => t.fail(`${what} took more than ${limitMs / 1000} s`), limitMs);
  try {
    return await work();
  } finally {
    clearTimeout(timer);
  }
}
