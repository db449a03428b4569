// The `ssh` backend's options: their schema and the checks the schema cannot make, apart
// from the provider (ssh.ts), which loads ssh2: a run loads that only when it uses the backend.
import { resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { ConfigError, errorMessage } from '../errors.js';
import { endpointOf } from './endpoint.js';
import { rebootKeys, rebootSettings } from './ssh-reboot.js';

const host = Type.Object(
  {
    address: Type.String({ minLength: 1, description: 'host[:port]' }),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    user: Type.Optional(Type.String({ minLength: 1 })),
    password: Type.Optional(Type.String()),
    /** Private key file, relative to the project root (never packed with the project: keyFiles). */
    key: Type.Optional(Type.String({ minLength: 1 })),
    /** Systems this host can serve (default: any). */
    systems: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  },
  { additionalProperties: false },
);

export const sshOptions = Type.Object(
  {
    hosts: Type.Array(host, { minItems: 1 }),
    'connect-timeout': Type.Optional(Type.Integer({ minimum: 1, description: 'ms per attempt' })),
    'connect-retries': Type.Optional(Type.Integer({ minimum: 0 })),
    ...rebootKeys,
  },
  { additionalProperties: true },
);
export type SshOptions = Static<typeof sshOptions>;
export type Host = Static<typeof host>;

/** The private key files the hosts name (registry.ts keyFiles). */
export function keyFiles(options: SshOptions, projectRoot: string): string[] {
  return options.hosts.flatMap((h) => (h.key ? [resolve(projectRoot, h.key)] : []));
}

/**
 * Refuses two entries of one host however they are written (`h` and `h:22`, `h` with
 * `port: 2222` and `h:2222`, `H` and `h`, `[::1]` and `0:0:0:0:0:0:0:1`: endpoint.ts): each
 * entry is a machine that serves one job at a time, so two would put two of the run's machines
 * on one host at once, each emptying the project path under the other. A name and its address
 * cannot be told apart here (no lookup).
 */
function checkDistinctHosts(hosts: readonly Host[]): void {
  const seen = new Map<string, number>();
  hosts.forEach((h, i) => {
    let endpoint: string;
    try {
      endpoint = endpointOf(h.address, h.port ?? 22);
    } catch (err) {
      throw new ConfigError(errorMessage(err), undefined, undefined, `hosts.${i}.address`);
    }
    const first = seen.get(endpoint);
    if (first !== undefined) throw new ConfigError(`the same host as hosts.${first} (${endpoint}): a host serves one machine at a time; list it once, with every system it serves`, undefined, undefined, `hosts.${i}`);
    seen.set(endpoint, i);
  });
}

export function verify(options: SshOptions): void {
  rebootSettings(options);
  checkDistinctHosts(options.hosts);
}
