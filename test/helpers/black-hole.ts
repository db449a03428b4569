// A cache whose address drops the connection's packets (a black-holed host), within
// loopback: a real process listens with a backlog of 0 and never accepts. Once one
// connection fills its accept queue, Linux drops every further SYN (tcp_abort_on_overflow
// is 0), and a client's connect waits, retrying, until its own timeout: as towards a host
// a firewall drops packets for. A Node server cannot stand in: it accepts every connection.
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import type { Test } from 'tap';
import { stopWithTest } from './processes.js';

const LISTEN_NEVER_ACCEPT = `
import socket, sys, time
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(0)
print(s.getsockname()[1], flush=True)
while True:
    time.sleep(60)
`;

/** The URL of a black-holed host; stopped (by PID) with the test. */
export async function blackHoleUrl(t: Test): Promise<string> {
  const child = spawn('python3', ['-c', LISTEN_NEVER_ACCEPT], { stdio: ['ignore', 'pipe', 'inherit'] });
  stopWithTest(t, child);
  const [line] = (await Promise.race([
    once(child.stdout!, 'data'),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('python3 did not start listening within 10 s')), 10_000).unref()),
  ])) as [Buffer];
  const port = Number(line.toString().trim());
  // the one connection the queue holds: every later one is dropped
  const filler: Socket = connect(port, '127.0.0.1');
  await once(filler, 'connect');
  t.teardown(() => void filler.destroy());
  return `http://127.0.0.1:${port}`;
}
