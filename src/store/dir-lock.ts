// One server per data directory. A second origin or cache started on a directory in use
// would empty its tmp/ at start (the first one's uploads and fills in progress) and keep
// an index of its own over the same files (two size budgets evicting each other's objects).
//
// The lock is a listening Unix socket in Linux's abstract namespace: the kernel frees it
// when its process ends, however it ends (SIGKILL included), so a stale lock never blocks
// a restart and a reused PID never counts. It answers each connection with its holder's
// PID, for the message. Anyone on the machine may bind any abstract name, so the name is
// made from a random secret kept in the directory (LOCK_ID, readable by its owner only) and
// the directory's real path: another local user cannot take it first and keep the server
// from starting. Elsewhere than Linux there is no lock. Abstract sockets are per network
// namespace: servers in different namespaces (containers) sharing one directory are not
// detected.
import { createHash, randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { FleetError } from '../errors.js';
import { makeDataDir } from '../path-checks.js';
import { readOrCreate } from './create-once.js';

/** The file of the directory's lock secret. */
export const LOCK_ID = '.lock-id';

interface DataDirLock {
  /** Frees the directory (idempotent). */
  release(): Promise<void>;
}

const NO_LOCK: DataDirLock = { release: async () => undefined };

async function socketName(dir: string): Promise<string> {
  let secret: string;
  try {
    secret = readOrCreate(join(dir, LOCK_ID), () => randomBytes(32).toString('hex'), 0o600);
  } catch (err) {
    // another user's directory (verify --remove run as someone else), a read-only disk
    throw new FleetError('FC_ERR_CONFIG', `data directory ${dir}: cannot read or write its lock secret ${LOCK_ID}: ${(err as Error).message}`, { cause: err });
  }
  const hash = createHash('sha256').update(secret).update('\0').update(realpathSync(dir));
  return `\0fleetcache-dir-${hash.digest('hex').slice(0, 40)}`;
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
  makeDataDir(dir);
  if (process.platform !== 'linux') return NO_LOCK;
  const name = await socketName(dir);
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
