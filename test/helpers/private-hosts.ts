// A name that resolves to the addresses a test gives it, for one server process only: the
// process runs in a mount namespace of its own (unshare --mount: private propagation), in
// which a copy of /etc/hosts with the name added is bound over /etc/hosts. Its resolver
// (getaddrinfo, under node's dns.lookup) reads that file as it reads any; the machine's
// /etc/hosts, and every other process, never see the name.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StartAs } from './processes.js';

/** Why a process cannot be given hosts of its own here (a mount namespace needs root), or undefined when it can. */
export function privateHostsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to bind a hosts file in a mount namespace';
  return spawnSync('unshare', ['--mount', 'true']).status === 0 ? undefined : 'unshare --mount fails here';
}

/** How to start a server process (startServerProcess's `under`) in which `name` resolves to `addresses`; the hosts file is written in `dir`. */
export function underPrivateHosts(dir: string, name: string, addresses: readonly string[]): StartAs {
  const hosts = join(dir, 'hosts');
  writeFileSync(hosts, `${readFileSync('/etc/hosts', 'utf8')}\n${addresses.map((address) => `${address} ${name}`).join('\n')}\n`);
  // sh's $0 is the hosts file, "$@" the server's argv: exec keeps the PID the test stops it by
  return { under: ['unshare', '--mount', '--', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec "$@"', hosts] };
}
