// The small-object loads of the cache benches: 4 KiB blobs written for an origin to
// serve, fetched 32 at a time (cold), or asked round and round by wrk (hot).
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';

/** Writes `body` as `<root>/cas/sha256/<hex>` (the directory must exist); returns its URL path. */
export async function writeBlob(root: string, body: Buffer): Promise<string> {
  const hex = createHash('sha256').update(body).digest('hex');
  await writeFile(join(root, 'cas', 'sha256', hex), body);
  return `/cas/sha256/${hex}`;
}

/** Writes `count` random blobs of `size` bytes; returns their URL paths. */
export async function writeBlobs(root: string, count: number, size = 4096): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < count; i++) paths.push(await writeBlob(root, randomBytes(size)));
  return paths;
}

/** Runs `fn` over `items`, `width` at a time. */
export async function pool<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** Downloads `path`, discarding the body; resolves to the milliseconds it took from `t0`. */
export async function download(agent: Agent, base: string, path: string, t0: number): Promise<number> {
  const res = await request(base + path, { dispatcher: agent });
  if (res.statusCode !== 200) throw new Error(`${base}${path}: HTTP ${res.statusCode}`);
  for await (const _chunk of res.body) { /* discard */ }
  return performance.now() - t0;
}

/** Writes a wrk script (and its list) in `dir` that asks `paths` in turn from a random start. */
export async function writeWrkScript(dir: string, paths: readonly string[]): Promise<string> {
  const list = join(dir, 'paths.txt');
  const script = join(dir, 'paths.lua');
  await writeFile(list, paths.join('\n') + '\n');
  await writeFile(script, `local paths = {}
for line in io.lines("${list}") do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
`);
  return script;
}

/** wrk with 2 threads and 64 connections for `seconds`; throws when it saw an error status. */
export async function runWrk(url: string, script: string, seconds: number): Promise<{ requests: number; perSecond: number }> {
  const { stdout } = await promisify(execFile)('wrk', ['-t2', '-c64', `-d${seconds}s`, '-s', script, url], { maxBuffer: 1 << 20 });
  if (/Non-2xx/.test(stdout)) throw new Error(`${url}: wrk saw errors:\n${stdout}`);
  return {
    requests: Number(/(\d+) requests in/.exec(stdout)?.[1] ?? NaN),
    perSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN),
  };
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
