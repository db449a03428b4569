// freePort: a port no outgoing connection can take between the check and the listen.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { freePort } from '../../src/http/free-port.js';

t.test('a free port is drawn below the ephemeral range, and can be listened on', async (t) => {
  const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const ports = new Set<number>();
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    t.ok(port >= 20_000 && port < low!, `${port}: below ${low}`);
    ports.add(port);
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  t.ok(ports.size > 1, 'drawn at random');
});

t.test('a port in use is not handed out', async (t) => {
  const held: { server: ReturnType<typeof createServer>; port: number }[] = [];
  t.teardown(() => held.forEach(({ server }) => server.close()));
  for (let i = 0; i < 50; i++) {
    const server = createServer();
    const port = await freePort();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    held.push({ server, port });
  }
  t.equal(new Set(held.map((h) => h.port)).size, 50, 'fifty servers, fifty ports');
});
