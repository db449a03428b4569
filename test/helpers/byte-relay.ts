// A TCP relay on 127.0.0.1 that keeps every byte each way of every connection through it:
// an independent measurement of what crossed a link (headers and framing included), for the
// accounting tests to compare with the servers' own counters (wire-messages.ts reads it).
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';

/** What one connection carried: towards the server (requests) and towards the client (answers). */
export interface RelayedConnection {
  readonly toServer: Buffer[];
  readonly toClient: Buffer[];
}

export interface ByteRelay {
  /** http://127.0.0.1:PORT, relaying to the target. */
  readonly url: string;
  readonly connections: readonly RelayedConnection[];
  /** Cuts the next connection to send a request once its answers from then on reach `bytes` bytes (headers included), as a server dying mid-body. */
  cutAnswerAfter(bytes: number): void;
}

/** A relay to `target` (http://host:port), stopped in `t`'s teardown. */
export async function startByteRelay(t: Test, target: string): Promise<ByteRelay> {
  const { hostname, port } = new URL(target);
  const connections: RelayedConnection[] = [];
  const sockets = new Set<net.Socket>();
  let cutAt: number | undefined;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    const seen: RelayedConnection = { toServer: [], toClient: [] };
    connections.push(seen);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    let cutHere: number | undefined;
    let answered = 0;
    client.on('data', (chunk: Buffer) => {
      // taken by the first connection to send a request once it is set
      if (cutHere === undefined && cutAt !== undefined) [cutHere, cutAt] = [answered + cutAt, undefined];
      seen.toServer.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutHere !== undefined && answered + chunk.length >= cutHere) {
        const part = chunk.subarray(0, cutHere - answered);
        seen.toClient.push(part);
        client.end(part, () => client.destroy());
        upstream.destroy();
        return;
      }
      answered += chunk.length;
      seen.toClient.push(chunk);
      client.write(chunk);
    });
    client.once('end', () => upstream.end());
    upstream.once('end', () => client.end());
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
    cutAnswerAfter(bytes: number) {
      cutAt = bytes;
    },
  };
}
