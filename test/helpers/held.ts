// What a server process holds, read from /proc, for the tests that check a load gave back
// everything it took (test/cache/leaks.test.ts, test/origin/leaks.test.ts): files of its
// data directory, TCP connections, connected Unix sockets; and the clients that leave
// such loads half-way.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Test } from 'tap';
import { eventually } from './wait.js';

/** The targets of a process's descriptors (`socket:[inode]`, a path, `pipe:[…]`, `anon_inode:…`). */
function descriptors(pid: number): string[] {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  return fds.flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/${pid}/fd/${fd}`)];
    } catch {
      return []; // closed meanwhile
    }
  });
}

/** Socket inodes of the rows of /proc/net/{tcp,tcp6,unix} matching `keep`, by their columns. */
function socketRows(table: string, inodeColumn: number, keep: (cols: string[]) => boolean): Set<string> {
  let text: string;
  try {
    text = readFileSync(`/proc/net/${table}`, 'utf8');
  } catch {
    return new Set(); // no IPv6 in this kernel
  }
  const rows = text.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  return new Set(rows.filter(keep).map((cols) => cols[inodeColumn]!));
}

interface Held {
  /** Files held open of the directories watched (the data directory, and others a test names). */
  readonly dataFiles: string[];
  /** TCP sockets that are not listening (a client's, or one to upstream). */
  readonly tcp: number;
  /** Connected Unix sockets (a cluster's channels, followers of other workers' fills). */
  readonly unix: number;
}

export function held(pid: number, dirs: readonly string[]): Held {
  const targets = descriptors(pid);
  const inodes = new Set(targets.flatMap((d) => /^socket:\[(\d+)\]$/.exec(d)?.slice(1) ?? []));
  // /proc/net/tcp: st (column 3) 0A is LISTEN; the inode is column 9
  const connectedTcp = (cols: string[]) => cols[3] !== '0A' && inodes.has(cols[9]!);
  const tcp = socketRows('tcp', 9, connectedTcp).size + socketRows('tcp6', 9, connectedTcp).size;
  // /proc/net/unix: St (column 5) 03 is connected; the inode is column 6
  const unix = socketRows('unix', 6, (cols) => cols[5] === '03' && inodes.has(cols[6]!)).size;
  return { dataFiles: targets.filter((d) => dirs.some((dir) => d.startsWith(dir + path.sep))), tcp, unix };
}

/**
 * Which of `pids` holds the server's side of the TCP connection whose client port is
 * `clientPort` (in a multi-process server: the worker a connection went to), if any yet.
 */
export function holderOf(pids: readonly number[], clientPort: number): number | undefined {
  // /proc/net/tcp: rem_address (column 2) is HEXADDR:HEXPORT; the inode is column 9
  const suffix = ':' + clientPort.toString(16).toUpperCase().padStart(4, '0');
  const fromClient = (cols: string[]) => cols[2]!.endsWith(suffix);
  const inodes = new Set([...socketRows('tcp', 9, fromClient), ...socketRows('tcp6', 9, fromClient)].map((i) => `socket:[${i}]`));
  return pids.find((pid) => descriptors(pid).some((d) => inodes.has(d)));
}

/** Names below `dir` of temp files: in a `tmp` directory, or named `.tmp-…` (a cache's fills in progress). */
function tempFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((rel) => path.basename(rel).startsWith('.tmp-') || path.dirname(rel).split(path.sep).includes('tmp'));
}

/**
 * Checks that each of `processes` gave back what a load took, once its clients are gone:
 * files of `dirs` (`dataDir` first) at once (within 3 s: before an idle process collects a
 * FileHandle left open, which closes it), connections once idle (keep-alive ends them
 * within seconds), no temp file in `dataDir`, and nothing left for the garbage collector
 * to close (it warns on `stderr`).
 */
export async function checkReleased(t: Test, processes: ReadonlyMap<number, Held>, dirs: readonly [dataDir: string, ...others: string[]], stderr: () => string): Promise<void> {
  const settled = async (pid: number, what: string, done: (now: Held) => boolean, ms: number): Promise<Held> => {
    let now = held(pid, dirs);
    await eventually(`process ${pid}: ${what}`, () => done((now = held(pid, dirs))), ms).catch(() => undefined);
    return now;
  };
  for (const pid of processes.keys()) {
    const now = await settled(pid, 'files closed', (h) => h.dataFiles.length === 0, 3000);
    t.same(now.dataFiles, [], `process ${pid}: no file of the data directory (or the others watched) open`);
  }
  for (const [pid, start] of processes) {
    const now = await settled(pid, 'connections closed', (h) => h.tcp === 0 && h.unix <= start.unix, 15_000);
    t.equal(now.tcp, 0, `process ${pid}: no TCP connection`);
    t.ok(now.unix <= start.unix, `process ${pid}: ${now.unix} Unix connections, ${start.unix} before the load`);
  }
  t.same(tempFiles(dirs[0]), [], 'no temp file left in the data directory');
  t.notMatch(stderr(), /on garbage collection/, 'no descriptor was left for the garbage collector to close');
}

/** Sends `text` on a new connection, reads until `until` says stop (or the end), then destroys it. */
export async function rawExchange(port: number, text: string | Buffer, until: (got: number) => boolean = () => false, timeoutMs = 5000): Promise<number> {
  const socket = net.connect(port, '127.0.0.1');
  let got = 0;
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      socket.on('data', (c: Buffer) => {
        got += c.length;
        if (until(got)) { clearTimeout(timer); resolve(); }
      });
      socket.on('close', () => { clearTimeout(timer); resolve(); });
      socket.on('error', () => undefined);
      socket.write(text);
    });
  } finally {
    socket.destroy();
  }
  return got;
}

/** Sends `text` on a new connection and reads nothing: the answer stops on a full window; gone after `ms`. */
export async function unreadLeave(port: number, text: string, ms: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
  socket.on('error', () => undefined);
  await new Promise((resolve) => setTimeout(resolve, ms));
  socket.destroy();
}

/** A plain GET's head. */
export const plainGet = (target: string): string => `GET ${target} HTTP/1.1\r\nHost: test\r\n\r\n`;
