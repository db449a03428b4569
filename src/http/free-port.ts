// A port that is free now, for a server that must be told a number before it listens (the
// workers of a cache started with port 0 all listen on one; sshd in the tests).
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/** Below the ephemeral range, but not among the low ports that services are known by. */
const LOWEST = 20_000;

/**
 * The lowest port of the kernel's ephemeral range (Linux), or undefined where it cannot be
 * read. listen(0) and every outgoing connection take their ports from that range.
 */
function ephemeralLow(): number | undefined {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : undefined;
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
  const low = ephemeralLow();
  if (low !== undefined && low > LOWEST + 1000) {
    for (let tries = 0; tries < 20; tries++) {
      const port = await probe(host, randomInt(LOWEST, low));
      if (port !== undefined) return port;
    }
  }
  const port = await probe(host, 0);
  if (port === undefined) throw new Error(`no free port on ${host}`);
  return port;
}
