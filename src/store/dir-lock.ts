// One server per data directory. A second origin or cache started on a directory in use
// would empty its tmp/ at start (the first one's uploads and fills in progress) and keep
// an index of its own over the same files (two size budgets evicting each other's objects).
//
// The lock is a listening Unix socket in Linux's abstract namespace, named after the
// directory's real path: the kernel frees it when its process ends, however it ends
// (SIGKILL included), so a stale lock never blocks a restart and a reused PID never
// counts. It answers each connection with its holder's PID, for the message. Elsewhere
// than Linux there is no lock. Abstract sockets are per network namespace: servers in
// different namespaces (containers) sharing one directory are not detected.
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { FleetError } from '../errors.js';

export interface DataDirLock {
  /** Frees the directory (idempotent). */
  release(): Promise<void>;
}

const NO_LOCK: DataDirLock = { release: async () => undefined };

function socketName(dir: string): string {
  return `\0fleetcache-dir-${createHash('sha256').update(realpathSync(dir)).digest('hex').slice(0, 40)}`;
}

/** The PID the holder of `name` answers with, or undefined when it does not answer in time. */
function holderPid(name: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = connect(name);
    let text = '';
    const done = (pid: number | undefined) => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(1000, () => done(undefined));
    socket.on('data', (c: Buffer) => { text += c.toString(); });
    socket.on('end', () => done(Number(text.trim()) || undefined));
    socket.on('error', () => done(undefined));
  });
}

/**
 * Takes `dir` (made if missing) for this process, before anything in it is touched.
 * Throws FC_ERR_DIR_IN_USE when another fleetcache server holds it.
 */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  await mkdir(dir, { recursive: true });
  if (process.platform !== 'linux') return NO_LOCK;
  const name = socketName(dir);
  const server: Server = createServer((socket) => socket.end(`${process.pid}\n`));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(name, () => resolve());
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    const pid = await holderPid(name);
    throw new FleetError('FC_ERR_DIR_IN_USE', `data directory ${dir} is in use by another fleetcache server${pid ? ` (pid ${pid})` : ''}: give each server a directory of its own`, {
      details: { dir, ...(pid ? { pid } : {}) },
    });
  }
  // The lock alone never keeps the process alive.
  server.unref();
  let released: Promise<void> | undefined;
  return {
    release: () => (released ??= new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}
