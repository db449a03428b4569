// A TCP relay whose client side can be dropped while the server side stays open: an SSH
// connection lost to the client that the machine never sees drop (a network cut).
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Test } from 'tap';

export interface HalfOpenRelay {
  port: number;
  /** Drops the client side of every connection so far and leaves its server side open: a connection lost to the client that the server never sees drop (a network cut). */
  cut(): void;
  /** Closes every new connection at once, before a byte is relayed: the machine does not answer (those open stay so). */
  refuse(): void;
  /** Relays new connections again, after refuse. */
  accept(): void;
  /** How many connections refuse has closed so far. */
  refused(): number;
}

/** A TCP relay on 127.0.0.1 to `port`, every socket of it destroyed in teardown. */
export async function halfOpenRelay(t: Test, port: number): Promise<HalfOpenRelay> {
  const clients = new Set<Socket>();
  const servers = new Set<Socket>();
  let refusing = false;
  let refused = 0;
  const relay = createServer((client) => {
    if (refusing) {
      refused++;
      return void client.destroy();
    }
    const server = connect(port, '127.0.0.1');
    clients.add(client);
    servers.add(server);
    for (const s of [client, server]) s.on('error', () => undefined);
    client.on('data', (chunk: Buffer) => server.write(chunk));
    server.on('data', (chunk: Buffer) => client.write(chunk));
    // the server's end reaches the client; the client's reaches the server only until the cut
    server.once('close', () => client.destroy());
    client.once('close', () => {
      if (clients.has(client)) server.destroy();
    });
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of [...clients, ...servers]) s.destroy();
    relay.close();
  });
  return {
    port: (relay.address() as AddressInfo).port,
    cut() {
      for (const c of clients) {
        clients.delete(c);
        c.destroy();
      }
    },
    refuse: () => void (refusing = true),
    accept: () => void (refusing = false),
    refused: () => refused,
  };
}
