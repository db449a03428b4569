// Test HTTP servers on a free port of 127.0.0.1, and their stop: closed with the
// connections still open (a client left waiting on an answer never sent keeps none up).
// Also a loopback URL that nothing listens on.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';

/** Starts `server` on a free loopback port; its base URL, `http://127.0.0.1:PORT`. */
export async function listenOnLoopback(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A URL nothing listens on: a loopback port bound and released. */
export async function deadUrl(): Promise<string> {
  const server = createServer();
  const url = await listenOnLoopback(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return url;
}

/** Closes `server` and every connection it has, idle or not; resolves once it is closed. */
export async function closeWithConnections(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Starts `server` on a free loopback port, closed with its connections when the test ends; its base URL. */
export async function serveOnLoopback(t: Test, server: Server): Promise<string> {
  const url = await listenOnLoopback(server);
  t.teardown(() => closeWithConnections(server));
  return url;
}
