// Waiting for something a server does after it answered (a commit, a broadcast), without
// a fixed sleep that a loaded machine overruns.
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `check` every 20 ms until it holds; rejects naming `what` after `timeoutMs`. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still waiting after ${timeoutMs} ms: ${what}`);
    await sleep(20);
  }
}
