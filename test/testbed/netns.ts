// The multi-region test bed: network namespaces for the origin and each region, joined by
// a bridge in the root namespace on a private /24 (10.213.X.0/24) that exists only on
// these links; the namespaces have no default route, so nothing leaves them. tc netem
// gives the origin's link its latency and rate (origin↔region ~2×originDelay RTT) and
// each region's loopback its in-region latency. The origin runs in its namespace, one
// cache per region in the region's namespace; the controller (this process, in the root
// namespace) reaches all of them over the bridge. Needs root (CI runs as root).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FleetConfig } from '../../src/run/fleet.js';
import { cliArgs, REPO_ROOT, undoAtExit } from '../helpers/processes.js';

const ORIGIN_PORT = 8080;
const CACHE_PORT = 8081;

interface TestBedOptions {
  /** Where the origin's and caches' data and logs go. */
  readonly dataDir: string;
  /** Region names (default region-a, region-b); the namespace suffix is the last character. */
  readonly regions?: readonly string[];
  /** One-way delay on each side of the origin's link (default 20 ms: ~40 ms RTT origin↔region). */
  readonly originDelayMs?: number;
  /** Rate of the origin's link in each direction (default 100 Mbit/s). */
  readonly rateMbit?: number;
  /** Delay on each region's loopback, crossed twice per round trip (default 0.5 ms: 1 ms RTT). */
  readonly regionDelayMs?: number;
  /** Origin write token (default a random one). */
  readonly token?: string;
}

export interface TestBed {
  /** Namespace names by role: "origin" and each region. */
  readonly namespaces: Readonly<Record<string, string>>;
  readonly subnet: string;
  readonly originUrl: string;
  /** Each region's cache URL. */
  readonly caches: Readonly<Record<string, string>>;
  readonly token: string;
  /**
   * Whether latency is emulated: netem is missing from some kernels, and then the bed
   * shapes the origin's rate only (tbf) and says so here.
   */
  readonly latency: boolean;
  /** PIDs of the servers the bed started. */
  readonly pids: readonly number[];
  /** A fleet configuration: machines of each region use its cache (or, direct, the origin). */
  fleet(o?: { direct?: boolean; startupLimit?: number; dispatchDelay?: string }): FleetConfig & { origin: string };
  /** Stops every server by PID and deletes namespaces and links; safe to call twice. */
  close(): Promise<void>;
}

function ip(args: readonly string[], cmd = 'ip'): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

const tc = (args: readonly string[]) => ip(args, 'tc');

/**
 * `ip` commands (one a line, without "ip"), in namespace `ns` if given, run by one `ip
 * -batch` (a process start of this test's size costs more than the command). `force`: go on
 * past a failed line (and say nothing), for a teardown.
 */
function ipBatch(lines: readonly string[], { ns, force = false }: { ns?: string; force?: boolean } = {}): void {
  const args = [...(ns ? ['-n', ns] : []), ...(force ? ['-force'] : []), '-batch', '-'];
  const r = spawnSync('ip', args, { encoding: 'utf8', input: lines.join('\n') + '\n' });
  if (r.error) throw new Error(`ip ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0 && !force) throw new Error(`ip ${args.join(' ')} failed (exit ${r.status}) on ${JSON.stringify(lines)}: ${r.stderr.trim()}`);
}

/** Whether this kernel has netem (some are built with tbf and htb only); tried on the bed's own loopback. */
function hasNetem(ns: string): boolean {
  const r = spawnSync('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '0ms'], { encoding: 'utf8' });
  if (r.status !== 0) return false;
  tc(['-n', ns, 'qdisc', 'del', 'dev', 'lo', 'root']);
  return true;
}

/** Rate (and, with netem, delay) on the egress of one device; `ns` undefined = root namespace. */
function shape(ns: string | undefined, dev: string, delayMs: number, rateMbit: number, netem: boolean): void {
  const where = ns ? ['-n', ns] : [];
  const qdisc = netem
    ? ['netem', 'delay', `${delayMs}ms`, 'rate', `${rateMbit}mbit`, 'limit', '100000']
    : ['tbf', 'rate', `${rateMbit}mbit`, 'burst', '256kb', 'latency', '200ms'];
  tc([...where, 'qdisc', 'add', 'dev', dev, 'root', ...qdisc]);
}

let beds = 0;

/** Claims a free 10.213.X.0/24 by putting X.1 on the bridge; re-checks so two runs never share one. */
function claimSubnet(bridge: string): number {
  const tried = new Set<number>();
  while (tried.size < 254) {
    const x = 1 + Math.floor(Math.random() * 254);
    if (tried.has(x)) continue;
    tried.add(x);
    const net = `10.213.${x}.0/24`;
    if (ip(['-4', 'route', 'show', net]).trim() !== '') continue;
    ip(['addr', 'add', `10.213.${x}.1/24`, 'dev', bridge]);
    if (ip(['-4', 'route', 'show', net]).trim().split('\n').length === 1) return x;
    ip(['addr', 'del', `10.213.${x}.1/24`, 'dev', bridge]);
  }
  throw new Error('no free 10.213.X.0/24 subnet for the test bed');
}

function waitListening(child: ChildProcess, what: string, logFile: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((done, fail) => {
    let buffered = '';
    const timer = setTimeout(() => finish(new Error(`${what} did not print "listening" within ${timeoutMs} ms (log: ${logFile})`)), timeoutMs);
    const onData = (b: Buffer) => {
      buffered += b.toString('utf8');
      const m = /listening (http:\/\/\S+)/.exec(buffered);
      if (m) finish(undefined, m[1]!);
    };
    const onExit = (code: number | null) => finish(new Error(`${what} exited (${code}) before listening (log: ${logFile})`));
    function finish(err: Error | undefined, url?: string) {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
      child.stdout!.resume(); // keep draining stdout so the server never blocks on it
      if (err) fail(err);
      else done(url!);
    }
    child.stdout!.on('data', onData);
    child.on('exit', onExit);
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

export async function startTestBed(o: TestBedOptions): Promise<TestBed> {
  const regions = o.regions ?? ['region-a', 'region-b'];
  const token = o.token ?? `bed-${randomBytes(12).toString('hex')}`;
  // Interface names are at most 15 characters: "fc" + pid + bed number + a role letter + "_v".
  const prefix = `fc${process.pid}${beds++}`;
  const roles = ['origin', ...regions];
  const suffixOf = (role: string) => (role === 'origin' ? 'o' : role.slice(-1));
  if (new Set(roles.map(suffixOf)).size !== roles.length) throw new Error(`region names must end in distinct characters other than "o": ${regions.join(', ')}`);
  const namespaces = Object.fromEntries(roles.map((r) => [r, `${prefix}${suffixOf(r)}`]));
  const bridge = `${prefix}_br`;
  const children: ChildProcess[] = [];
  let closed = false;

  const teardownSync = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const ns of Object.values(namespaces)) {
      // Anything still in our namespaces (a machine's stray process) is ours to stop.
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
      for (const pid of pids.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    // Deleting our end removes the pair at once; a namespace's deletion would remove it
    // too, but asynchronously, after `ip netns del` has returned. What is not there (a bed
    // half set up, or closed before) is passed over.
    const ends = Object.values(namespaces).flatMap((ns) => [`link del ${ns}_v`, `netns del ${ns}`]);
    ipBatch([...ends, `link del ${bridge}`], { force: true });
  };
  // A crashed, interrupted or timed-out test still leaves no namespace behind.
  const forget = undoAtExit(teardownSync);
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all(children.map(stopProcess));
    teardownSync();
    forget();
  };

  try {
    await mkdir(o.dataDir, { recursive: true });
    ipBatch([`link add ${bridge} type bridge`, `link set ${bridge} up`]);
    const x = claimSubnet(bridge);
    const addr = Object.fromEntries(roles.map((r, i) => [r, `10.213.${x}.${r === 'origin' ? 2 : 10 + i}`]));
    // Each namespace, its veth pair and its end on the bridge; then, inside it, its address.
    ipBatch(roles.flatMap((role) => {
      const ns = namespaces[role]!;
      return [`netns add ${ns}`, `link add ${ns}_v type veth peer name eth0 netns ${ns}`, `link set ${ns}_v master ${bridge} up`];
    }));
    for (const role of roles) ipBatch([`addr add ${addr[role]}/24 dev eth0`, 'link set eth0 up', 'link set lo up'], { ns: namespaces[role]! });
    const netem = hasNetem(namespaces.origin!);
    for (const role of roles) {
      const ns = namespaces[role]!;
      const veth = `${ns}_v`;
      if (role === 'origin') {
        // Both directions of the origin's link: its egress inside, its ingress at the root end.
        shape(ns, 'eth0', o.originDelayMs ?? 20, o.rateMbit ?? 100, netem);
        shape(undefined, veth, o.originDelayMs ?? 20, o.rateMbit ?? 100, netem);
      } else if (netem) {
        tc(['-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', `${o.regionDelayMs ?? 0.5}ms`, 'limit', '100000']);
      }
    }

    const startServer = async (role: string, args: string[]): Promise<string> => {
      const logFile = join(o.dataDir, `${role}.log`);
      const child = spawn('ip', ['netns', 'exec', namespaces[role]!, process.execPath, ...cliArgs(args)], {
        cwd: REPO_ROOT,
        env: { ...process.env, FLEETCACHE_TOKEN: token },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      child.stderr!.pipe(createWriteStream(logFile));
      return waitListening(child, `${role} server in ${namespaces[role]}`, logFile);
    };
    // All at once: a cache needs its upstream only on its first miss.
    const originAt = `http://${addr.origin}:${ORIGIN_PORT}`;
    const [originUrl, ...urls] = await Promise.all([
      startServer('origin', ['origin', '--listen', `${addr.origin}:${ORIGIN_PORT}`, '--data', join(o.dataDir, 'origin')]),
      ...regions.map((r) => startServer(r, ['cache', '--listen', `${addr[r]}:${CACHE_PORT}`, '--upstream', originAt, '--data', join(o.dataDir, r), '--region', r])),
    ]);
    const caches = Object.fromEntries(regions.map((r, i) => [r, urls[i]!]));
    return {
      namespaces,
      subnet: `10.213.${x}.0/24`,
      originUrl: originUrl!,
      caches,
      token,
      latency: netem,
      pids: children.map((c) => c.pid!),
      fleet: (f = {}) => ({
        origin: originUrl!,
        regions: Object.fromEntries(regions.map((r) => [r, { caches: [f.direct ? originUrl! : caches[r]!] }])),
        startupLimit: f.startupLimit ?? 4,
        dispatchDelay: f.dispatchDelay ?? '100ms',
        cacheTimeout: '30s',
      }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * spread.yaml `backends:` for the bed: one local backend per region whose machines run in
 * that region's namespace, named local-<region's last character>, one system each.
 */
export function bedBackends(bed: TestBed, systems: Readonly<Record<string, string>>, workers: number): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(systems).map(([region, system]) => [
      `local-${region.slice(-1)}`,
      { type: 'local', netns: bed.namespaces[region], systems: [{ [system]: { workers, region } }] },
    ]),
  );
}
