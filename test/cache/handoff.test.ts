// The primary's hand-off of the cache port's connections to its workers (handoff.ts), on
// real loopback connections: who is handed what and when, and that no connection is lost
// with a worker gone before taking it. The processes themselves: worker-restarts.test.ts.
import { connect, createServer, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { ConnectionHandoff } from '../../src/cache/cluster/handoff.js';
import { eventually } from '../helpers/wait.js';

/** A listening server that reads nothing (as the primary's), and a way to open connections to it. */
async function frontDoor(t: Test) {
  const accepted: Socket[] = [];
  const server = createServer({ pauseOnConnect: true }, (s) => accepted.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const clients: Socket[] = [];
  t.teardown(() => {
    for (const c of clients) c.destroy();
    for (const s of accepted) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as { port: number };
  /** Opens a connection; resolves with the server's side of it, and whether the client saw it closed. */
  const open = async (): Promise<{ socket: Socket; closed: () => boolean }> => {
    const before = accepted.length;
    const client = connect(port, '127.0.0.1');
    client.on('error', () => undefined);
    let closed = false;
    client.once('close', () => (closed = true));
    clients.push(client);
    await eventually('accepted', () => accepted.length > before);
    return { socket: accepted[before]!, closed: () => closed };
  };
  return { open };
}

/** A handoff whose workers record what they are handed, by worker id: [conn, socket]. */
function recording(maxWaiting = 100) {
  const handoff = new ConnectionHandoff(maxWaiting);
  const handed = new Map<number, [number, Socket][]>();
  const add = (id: number): void => {
    handed.set(id, []);
    handoff.add(id, (conn, socket) => handed.get(id)!.push([conn, socket]));
  };
  return { handoff, handed, add };
}

t.test('one connection at a time per worker, the next once it took the last; the others wait, oldest first', async (t) => {
  const { open } = await frontDoor(t);
  const { handoff, handed, add } = recording();
  add(1);
  add(2);
  const [a, b, c, d] = [await open(), await open(), await open(), await open()];
  for (const x of [a, b, c, d]) handoff.connection(x.socket);
  t.same(handed.get(1)!.map(([, s]) => s), [a.socket], 'worker 1: the first');
  t.same(handed.get(2)!.map(([, s]) => s), [b.socket], 'worker 2: the second');
  const connA = handed.get(1)![0]![0];
  handoff.took(1, connA + 1000);
  t.equal(handed.get(1)!.length, 1, 'a took of another connection number changes nothing');
  handoff.took(1, connA);
  t.ok(a.socket.destroyed, "once taken, the primary's copy is closed");
  t.same(handed.get(1)!.map(([, s]) => s), [a.socket, c.socket], 'worker 1 is handed the oldest waiting');
  handoff.took(2, handed.get(2)![0]![0]);
  t.same(handed.get(2)!.map(([, s]) => s), [b.socket, d.socket], 'worker 2 the next');
  handoff.took(1, handed.get(1)![1]![0]);
  handoff.took(2, handed.get(2)![1]![0]);
  const e = await open();
  handoff.connection(e.socket);
  t.same(handed.get(1)!.map(([, s]) => s), [a.socket, c.socket, e.socket], 'a free worker is handed a new one at once, the one free longest first');
  t.notOk(e.socket.destroyed, 'kept open until taken');
});

t.test('a worker gone before taking its connection: that one goes to another, before those waiting', async (t) => {
  const { open } = await frontDoor(t);
  const { handoff, handed, add } = recording();
  add(1);
  const [a, b] = [await open(), await open()];
  handoff.connection(a.socket);
  handoff.connection(b.socket);
  handoff.remove(1);
  t.notOk(a.socket.destroyed, 'not closed with the worker');
  add(2);
  t.same(handed.get(2)!.map(([, s]) => s), [a.socket], 'the next worker is handed it first');
  t.equal(handoff.rerouted, 1, 'counted as handed on');
  handoff.took(2, handed.get(2)![0]![0]);
  t.same(handed.get(2)!.map(([, s]) => s), [a.socket, b.socket], 'then the one that waited');
  const c = await open();
  handoff.connection(c.socket);
  t.equal(handed.get(1)!.length, 1, 'the gone worker is handed nothing more');
  handoff.took(1, handed.get(1)![0]![0]);
  t.notOk(b.socket.destroyed, 'a late took from the gone worker closes nothing');
});

t.test('a connection that could not be sent goes to another worker; that worker is handed nothing more', async (t) => {
  const { open } = await frontDoor(t);
  const { handoff, handed, add } = recording();
  add(1);
  const a = await open();
  handoff.connection(a.socket);
  add(2);
  handoff.unsent(1, handed.get(1)![0]![0]);
  t.same(handed.get(2)!.map(([, s]) => s), [a.socket], 'handed to the other');
  t.equal(handoff.rerouted, 1, 'counted as handed on');
  handoff.took(2, handed.get(2)![0]![0]);
  const b = await open();
  handoff.connection(b.socket);
  t.same(handed.get(2)!.map(([, s]) => s), [a.socket, b.socket], 'and the next one too');
  t.equal(handed.get(1)!.length, 1, 'not to the one that failed');
});

t.test('a worker that answers a question asked after it was handed a connection, not having taken it, never got it: the connection goes to another', async (t) => {
  const { open } = await frontDoor(t);
  const { handoff, handed, add } = recording();
  add(1);
  const before = handoff.moment();
  const a = await open();
  handoff.connection(a.socket);
  t.notOk(handoff.answered(1, before), 'nothing handed on');
  t.same(handed.get(1)!.map(([, s]) => s), [a.socket], 'an answer to a question asked before the hand-off says nothing of it');
  add(2);
  t.ok(handoff.answered(1, handoff.moment()), 'handed on');
  t.equal(handoff.rerouted, 1, 'and counted');
  t.same(handed.get(2)!.map(([, s]) => s), [a.socket], 'an answer to one asked after: the connection goes to the other worker');
  const b = await open();
  handoff.connection(b.socket);
  t.same(handed.get(1)!.map(([, s]) => s), [a.socket, b.socket], 'and the worker that answered is free again');
  handoff.took(1, handed.get(1)![0]![0]);
  t.notOk(a.socket.destroyed, 'a took of the lost hand-off closes nothing');
  t.notOk(b.socket.destroyed, "nor the worker's next connection");
});

t.test('at most maxWaiting held while no worker is free; stopping closes those held, and any that comes or comes back', async (t) => {
  const { open } = await frontDoor(t);
  const { handoff, handed, add } = recording(2);
  const [a, b, c] = [await open(), await open(), await open()];
  for (const x of [a, b, c]) handoff.connection(x.socket);
  await eventually('the one past maxWaiting is closed', () => c.closed());
  t.notOk(a.closed() || b.closed(), 'the two held stay open');
  add(1);
  t.same(handed.get(1)!.map(([, s]) => s), [a.socket], 'the oldest handed when a worker comes');
  handoff.close();
  await eventually('the one held is closed', () => b.closed());
  const d = await open();
  handoff.connection(d.socket);
  await eventually('a new one is closed', () => d.closed());
  handoff.remove(1);
  await eventually('the one the gone worker had not taken is closed', () => a.closed());
  t.equal(handoff.rerouted, 0, 'a connection closed because the cache stops is not counted as handed on');
});
