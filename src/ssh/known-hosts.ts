// Host-key verification against an OpenSSH known_hosts file (the fleet's `knownHosts:`):
// plain and `[host]:port` names, comma lists with `*`/`?` wildcards and `!` negation,
// hashed `|1|salt|hash` names, `@revoked` keys refused. `@cert-authority` lines are not
// supported: a host known only through one is refused, and the refusal says why.
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerHostKeyAlgorithm } from 'ssh2';
import { ConfigError, errorMessage, UpstreamError } from '../errors.js';

interface KnownKey {
  line: number;
  marker: 'revoked' | 'cert-authority' | undefined;
  patterns: string;
  type: string;
  key: Buffer;
}

/** A host whose key the known_hosts file does not accept: not worth a second attempt. */
export class HostKeyRefused extends UpstreamError {}

/** The key's type as its SSH wire encoding names it (its first string), or undefined when it has none. */
function blobType(key: Buffer): string | undefined {
  if (key.length < 4) return undefined;
  const length = key.readUInt32BE(0);
  return length > 0 && 4 + length <= key.length ? key.subarray(4, 4 + length).toString('latin1') : undefined;
}

/** A key as `ssh-keygen -lf` names it: `SHA256:` and the unpadded base64 of its SHA-256. */
function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** The keys of a known_hosts file; a line that is not `[@marker] patterns type base64 [comment]` is an error naming it. */
export function parseKnownHosts(text: string, file: string): KnownKey[] {
  const keys: KnownKey[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const fields = raw.trim().split(/\s+/);
    if (fields[0] === '' || fields[0]!.startsWith('#')) return;
    let marker: KnownKey['marker'];
    if (fields[0]!.startsWith('@')) {
      const name = fields.shift()!.slice(1);
      if (name !== 'revoked' && name !== 'cert-authority') throw new ConfigError(`${file}:${line}: unknown marker @${name} (known: @revoked, @cert-authority)`, file, line);
      marker = name;
    }
    const [patterns, type, encoded] = fields;
    if (!patterns || !type || !encoded) throw new ConfigError(`${file}:${line}: expected "host-patterns key-type base64-key" (an OpenSSH known_hosts line)`, file, line);
    const key = Buffer.from(encoded, 'base64');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || blobType(key) !== type) throw new ConfigError(`${file}:${line}: the key is not a base64 ${type} key`, file, line);
    keys.push({ line, marker, patterns, type, key });
  });
  return keys;
}

/** Whether an OpenSSH wildcard pattern (`*`, `?`) matches the whole of `name`, case-insensitively. */
function wildcardMatch(pattern: string, name: string): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, 'i').test(name);
}

/** Whether a `|1|salt|hash` name is the HMAC-SHA1 of `name` under its salt. */
function hashedMatch(entry: string, name: string): boolean {
  const [, , salt, hash] = entry.split('|');
  if (!salt || !hash) return false;
  return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
}

/** Whether a line's host field names `name`: a hashed name, or a comma list where no `!pattern` matches and some pattern does. */
function namesHost(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) return hashedMatch(patterns, name);
  let matched = false;
  for (const pattern of patterns.split(',')) {
    if (pattern.startsWith('!')) {
      if (wildcardMatch(pattern.slice(1), name)) return false;
    } else if (wildcardMatch(pattern, name)) matched = true;
  }
  return matched;
}

/**
 * The name known_hosts lists a host by, as OpenSSH writes (and hashes) it: `host` on port 22,
 * else `[host]:port`, lower case.
 */
function knownName(host: string, port: number): string {
  const name = host.toLowerCase();
  return port === 22 ? name : `[${name}]:${port}`;
}

/** The host-key algorithms of ssh2 this checks keys for, by key type: an RSA key signs with SHA-2 too. */
const ALGORITHMS = new Map<string, ServerHostKeyAlgorithm[]>([
  ['ssh-ed25519', ['ssh-ed25519']],
  ['ecdsa-sha2-nistp256', ['ecdsa-sha2-nistp256']],
  ['ecdsa-sha2-nistp384', ['ecdsa-sha2-nistp384']],
  ['ecdsa-sha2-nistp521', ['ecdsa-sha2-nistp521']],
  ['ssh-rsa', ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']],
]);

interface HostKeyCheck {
  /**
   * The host-key algorithms to offer (those of the keys listed for the host, so that a host
   * with several keys shows the listed one), or undefined when none is listed.
   */
  algorithms: ServerHostKeyAlgorithm[] | undefined;
  /** ssh2's `hostVerifier`: whether the key is accepted, keeping why not for `failure`. */
  verify(key: Buffer): boolean;
  /**
   * What a failed handshake is to tell: why `verify` refused the key, or that the host
   * offered no key of the types listed for it (ssh2's "no matching host key format"), else `err`.
   */
  failure(err: Error): Error;
}

/**
 * The check of `host:port`'s key against the known_hosts file, read now: a file an adhoc
 * allocate script appended to is read with that line.
 */
export function hostKeyCheck(file: string, host: string, port: number): HostKeyCheck {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the known_hosts file ${file} (knownHosts): ${errorMessage(err)}`, file, undefined, 'knownHosts');
  }
  const name = knownName(host, port);
  const entries = parseKnownHosts(text, file).filter((k) => namesHost(k.patterns, name));
  const listed = entries.filter((k) => k.marker === undefined);
  const algorithms = [...new Set(listed.flatMap((k) => ALGORITHMS.get(k.type) ?? []))];
  let refused: HostKeyRefused | undefined;
  return {
    algorithms: algorithms.length > 0 ? algorithms : undefined,
    verify(key) {
      const same = (k: KnownKey): boolean => k.key.equals(key);
      const shown = `${blobType(key) ?? 'unknown'} key ${fingerprint(key)}`;
      const revoked = entries.find((k) => k.marker === 'revoked' && same(k));
      if (revoked) refused = new HostKeyRefused(`host key verification failed: host ${name} presented the ${shown}, which ${file}:${revoked.line} marks @revoked`);
      else if (listed.some(same)) refused = undefined;
      else if (listed.length > 0) {
        const known = listed.map((k) => `${k.type} ${fingerprint(k.key)} (line ${k.line})`).join(', ');
        refused = new HostKeyRefused(`host key verification failed: host ${name} presented the ${shown}, but ${file} lists ${known} for it; the host's key changed, or someone is intercepting the connection`);
      } else {
        const authority = entries.some((k) => k.marker === 'cert-authority') ? ' (its @cert-authority line is not supported: list the host\'s own key)' : '';
        refused = new HostKeyRefused(`host key verification failed: host ${name} presented the ${shown}, which ${file} does not list for ${name}${authority}; if that is the host's key, add it to ${file}`);
      }
      return refused === undefined;
    },
    failure(err) {
      if (refused) return refused;
      if (!/no matching host key format/.test(err.message)) return err;
      const known = listed.map((k) => `${k.type} (line ${k.line})`).join(', ');
      return new HostKeyRefused(`host key verification failed: host ${name} offers no key of the types ${file} lists for it: ${known}`);
    },
  };
}
