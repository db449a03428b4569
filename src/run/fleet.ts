// The fleet configuration: where the origin and each region's caches are. Read from a
// `fleetcache:` key in spread.yaml (spread ignores unknown keys) or from --fleet FILE.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { fieldPlace, pairAt, parseConfigDocument, readConfigFile, validateConfig, type ConfigDocument } from '../config/load.js';
import { durationSchema, positiveDurationSchema } from '../config/validate.js';
import { closestName, didYouMean } from '../config/closest-name.js';
import { NamedMap } from '../config/names.js';
import { ConfigError, errorMessage } from '../errors.js';
import { parseKnownHosts } from '../ssh/known-hosts.js';

/**
 * The origin's and the caches' URLs: every request goes below one (its path joined to theirs),
 * so a query or fragment is refused (units.ts parseBaseUrl). Taken, it swallowed every path
 * joined to it, and a token in it was printed with each failed request and log line.
 */
const Url = Type.String({ format: 'base-url', description: 'http(s) URL with no query or fragment' });

export const FleetSchema = Type.Object(
  {
    /** The origin's URL. Absent: the runner starts an embedded origin and cache on loopback. */
    origin: Type.Optional(Url),
    /** File holding the origin's write token (else $FLEETCACHE_TOKEN); relative: to the directory of the file that sets it. */
    tokenFile: Type.Optional(Type.String({ minLength: 1 })),
    /** Regions and their caches, nearest first within a region. */
    regions: NamedMap(Type.Object({ caches: Type.Array(Url, { minItems: 1 }) }, { additionalProperties: false }), { default: {} }),
    /** Region of machines whose backend and system name none: one of `regions` (checked at load), or "auto" (the fastest cache). */
    defaultRegion: Type.Optional(Type.String({ minLength: 1 })),
    /** At most this many machines of one host or backend in start-up at once. */
    startupLimit: Type.Integer({ minimum: 1, default: 4 }),
    /** Pause between two dispatches to the same executor. */
    dispatchDelay: durationSchema({ default: '1s' }),
    /**
     * How long a machine waits for a cache's answer (its headers, then each part of its body)
     * before it tries the next URL, for the project and for each asset. A cache a machine
     * skipped as unreachable is tried last by the run's next machines for a while (nearest.ts
     * UnreachableCaches).
     */
    cacheTimeout: positiveDurationSchema({ default: '30s' }),
    /** 1-minute load average above which a machine gets no new job. */
    loadThreshold: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    /**
     * OpenSSH known_hosts file (relative: to the directory of the file that sets it) every
     * SSH host's key must be listed in. Absent: any host key is accepted, as spread does.
     */
    knownHosts: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

export type FleetConfig = Static<typeof FleetSchema>;

/** The fleet configuration: --fleet FILE, else spread.yaml's `fleetcache:` key, else undefined. */
export function loadFleetConfig(spreadFile: string, fleetFile: string | undefined): FleetConfig | undefined {
  if (fleetFile) return loadFleetFile(fleetFile);
  // spread.yaml is read up to the end of its first YAML document, as spread reads it (spread/yaml.ts)
  const parsed = parseConfigDocument(readFileSync(spreadFile, 'utf8'), { firstDocument: true });
  // the key may come through a merge key (`<<: *defaults`), as spread's own keys may
  if (!pairAt(parsed.doc, ['fleetcache'])) return undefined;
  const at = ['fleetcache'];
  return checkedFleet(validateConfig(FleetSchema, parsed, spreadFile, at), spreadFile, parsed, at);
}

/**
 * The fleet configuration of --fleet FILE, the whole file. Also read where it is not used
 * (`run -list`): a file named on the command line that is missing or invalid is refused by
 * every mode alike.
 */
export function loadFleetFile(fleetFile: string): FleetConfig {
  const parsed = parseConfigDocument(readConfigFile(fleetFile));
  const config = validateConfig(FleetSchema, parsed, fleetFile);
  // asked for by name: an empty one is a mistake, not the embedded default run silently
  if (parsed.doc.contents === null) {
    throw new ConfigError(`${fleetFile}: the fleet configuration is empty (it needs an origin and regions; without --fleet the run uses the embedded default)`, fleetFile);
  }
  return checkedFleet(config, fleetFile, parsed, []);
}

/**
 * `config` checked as a whole and its paths resolved. `file`: the file it was read from, which
 * its errors and relative paths are of; `at`: where it is in that file (the top level of --fleet
 * FILE, spread.yaml's `fleetcache:`).
 */
function checkedFleet(config: FleetConfig, file: string, parsed: ConfigDocument, at: readonly string[]): FleetConfig {
  // Caches without an origin would silently fall back to the embedded default: say so instead.
  if (!config.origin && Object.keys(config.regions).length > 0) {
    throw new ConfigError(`${file}: fleet configuration lists regions but no origin`, file, undefined, 'origin');
  }
  if (!config.origin && config.defaultRegion !== undefined) {
    throw new ConfigError(`${file}: fleet configuration sets defaultRegion but no origin (the embedded default has its own regions)`, file, undefined, 'defaultRegion');
  }
  checkDefaultRegion(config, file, parsed, at);
  // Paths in the file are its own, as knownHosts is (a --fleet file beside its token): not the run's directory's.
  if (config.tokenFile !== undefined) config.tokenFile = resolve(dirname(file), config.tokenFile);
  if (config.knownHosts !== undefined) config.knownHosts = checkedKnownHosts(config.knownHosts, file, fieldPlace(parsed, file, [...at, 'knownHosts']));
  return config;
}

/**
 * defaultRegion names one of the regions the same file lists, or is "auto": any other name is
 * a typo (the regions are listed right there), which would send every machine naming no region
 * through other regions' caches, across the links the caches exist to spare.
 */
function checkDefaultRegion(config: FleetConfig, file: string, parsed: ConfigDocument, at: readonly string[]): void {
  const region = config.defaultRegion;
  const known = Object.keys(config.regions);
  if (region === undefined || region === 'auto' || known.includes(region)) return;
  const { place, line, field } = fieldPlace(parsed, file, [...at, 'defaultRegion']);
  const guess = closestName(region, known);
  throw new ConfigError(
    `${place}: "${region}" is not one of the regions (${known.join(', ') || 'none'})${didYouMean(guess ? [guess] : [])}; name one of them, or "auto" for the fastest cache`,
    file, line, field,
  );
}

/**
 * The knownHosts file's absolute path, once it is read and parsed: a missing or malformed one
 * fails the run before any machine, its error named as a config error is (`file:line: field`,
 * the setting's place), then what is wrong in the file (its own line).
 */
function checkedKnownHosts(path: string, configFile: string, setting: ReturnType<typeof fieldPlace>): string {
  const file = resolve(dirname(configFile), path);
  const refuse = (why: string): ConfigError => new ConfigError(`${setting.place}: ${why}`, configFile, setting.line, setting.field);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw refuse(`cannot read ${file}: ${errorMessage(err)}`);
  }
  try {
    parseKnownHosts(text, file);
  } catch (err) {
    throw refuse(errorMessage(err));
  }
  return file;
}

/**
 * The embedded default's fleet with the scheduling settings of a configuration that names no
 * origin (startupLimit, dispatchDelay, cacheTimeout, loadThreshold, knownHosts apply to any fleet): without this they
 * were silently dropped.
 */
export function withScheduling(embedded: FleetConfig & { origin: string }, configured: FleetConfig | undefined): FleetConfig & { origin: string } {
  if (!configured) return embedded;
  const { startupLimit, dispatchDelay, cacheTimeout, loadThreshold, knownHosts } = configured;
  return { ...embedded, startupLimit, dispatchDelay, cacheTimeout, ...(loadThreshold !== undefined ? { loadThreshold } : {}), ...(knownHosts !== undefined ? { knownHosts } : {}) };
}
