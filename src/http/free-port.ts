// A port that is free now, for a server that must be told a number before it listens (the
// workers of a cache started with port 0 all listen on one; sshd in the tests).
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/** Below the ephemeral range, but not among the low ports that services are known by. */
const LOWEST = 20_000;

/**
 * The kernel's ephemeral port range (Linux), or undefined where it cannot be read.
 * listen(0) and every outgoing connection take their ports from it.
 */
function ephemeralRange(): readonly [number, number] | undefined {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return low !== undefined && high !== undefined && Number.isInteger(low) && Number.isInteger(high) ? [low, high] : undefined;
  } catch {
    return undefined;
  }
}

/** Listens on `port` (0: any) and closes again: the port it got, or undefined if it was taken. */
async function probe(host: string, port: number): Promise<number | undefined> {
  const server = createServer();
  const got = await new Promise<number | undefined>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(undefined) : reject(err)));
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
  if (got !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  return got;
}

/**
 * A port free on `host` now. A port that listen(0) handed out and that was closed again can
 * be taken by any outgoing connection before the server listens on it (EADDRINUSE, seen
 * with parallel tests), so the port is drawn below the ephemeral range, where neither
 * listen(0) nor a connection takes it; from listen(0) where that range is unknown or low.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const range = ephemeralRange();
  if (range !== undefined && range[0] > LOWEST + 1000) {
    for (let tries = 0; tries < 20; tries++) {
      const port = await probe(host, randomInt(LOWEST, range[0]));
      if (port !== undefined) return port;
    }
  }
  const port = await probe(host, 0);
  if (port === undefined) throw new Error(`no free port on ${host}`);
  return port;
}
