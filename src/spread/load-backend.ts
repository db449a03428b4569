// Decoding of `backends:` and their `systems:` (spread-spec §2, project.go: Load).
import { isCollection, isMap, type Node } from 'yaml';
import { BACKENDS, checkBackend } from '../backends/registry.js';
import { DISABLED_TIMEOUT, type Backend, type LevelScripts, type System, type Timeouts } from './model.js';
import { BACKEND_TYPES, VALID_NAME, invalidSystem, parseGoDuration, parseSize, timeoutMessage } from './values.js';
import { Fields, projectError, type YamlFile } from './yaml.js';
import { errorMessage } from '../errors.js';


export function decodeScripts(y: YamlFile, f: Fields): LevelScripts {
  return {
    prepare: y.script(f.get('prepare')),
    restore: y.script(f.get('restore')),
    debug: y.script(f.get('debug')),
    prepareEach: y.script(f.get('prepare-each')),
    restoreEach: y.script(f.get('restore-each')),
    debugEach: y.script(f.get('debug-each')),
  };
}

function decodeTimeout(y: YamlFile, node: Node | undefined): number | undefined {
  if (node === undefined) return undefined;
  const text = y.str(node);
  const ms = parseGoDuration(text);
  if (ms === undefined) throw y.failField(node, `cannot load ${y.file}: ${timeoutMessage(text)}`);
  // spread's timer fires at once for any other negative value: every script would be killed as it starts
  if (ms < 0 && ms !== DISABLED_TIMEOUT) throw y.failField(node, `cannot load ${y.file}: timeout ${JSON.stringify(text)} is negative (-1 or -1ns: no timeout)`);
  return ms;
}

export function decodeTimeouts(y: YamlFile, f: Fields): Timeouts {
  return { warnTimeout: decodeTimeout(y, f.get('warn-timeout')), killTimeout: decodeTimeout(y, f.get('kill-timeout')) };
}

function decodeSize(y: YamlFile, node: Node | undefined): number {
  try {
    return parseSize(y.str(node));
  } catch (err) {
    throw y.failField(node, `cannot load ${y.file}: ${errorMessage(err)}`);
  }
}

/** An optional non-empty string (fleetcache extensions `region:` and `assets:`). */
export function optionalStr(y: YamlFile, node: Node | undefined): string | undefined {
  const s = y.str(node).trim();
  return s === '' ? undefined : s;
}

function decodeSystem(y: YamlFile, backend: string, node: Node | undefined): System {
  let name: string;
  let f = new Fields('spread.System');
  let at = node;
  if (node !== undefined && isMap(node) && node.items.length > 0) {
    // One-key map `name: {fields}`; with several keys the last wins (Go map order is random).
    const pairs = y.pairs(node, 'spread.System');
    const last = pairs[pairs.length - 1]!;
    name = last.key;
    at = last.keyNode;
    f = y.fields(last.value, 'spread.System');
  } else {
    name = y.str(node);
  }
  const workers = y.int(f.get('workers')) ?? 0;
  if (workers < 0) throw y.fail(at, `backend ${JSON.stringify(backend)} has system ${JSON.stringify(name)} with ${workers} workers`);
  return {
    backend,
    name,
    image: y.str(f.get('image')) || name,
    workers: workers === 0 ? 1 : workers,
    username: y.str(f.get('username')),
    password: y.str(f.get('password')),
    kernel: y.str(f.get('kernel')),
    plan: y.str(f.get('plan')),
    storage: decodeSize(y, f.get('storage')),
    bios: y.str(f.get('bios')),
    cpuFamily: y.str(f.get('cpu-family')),
    secureBoot: y.bool(f.get('secure-boot')),
    environment: y.env(f.get('environment'), `${backend}:${name}`),
    variants: y.list(f.get('variants')),
    priority: y.int(f.get('priority'), 'int64'),
    manual: y.bool(f.get('manual')),
    region: optionalStr(y, f.get('region')),
    origin: y.origin(at),
    at: y.fieldOrigins(f, ['variants', 'environment']),
  };
}

/**
 * The options of a backend type fleetcache runs, checked against its schema when the project
 * loads (for `list` too, before anything is packed), an error naming the field's line.
 */
function decodeOptions(y: YamlFile, label: string, type: string, keyNode: Node | undefined, value: Node, f: Fields): Record<string, unknown> {
  if (!BACKENDS[type]) return {};
  f.known(Object.keys((BACKENDS[type].options as { properties?: Record<string, unknown> }).properties ?? {}));
  const options = y.js(value) as Record<string, unknown>;
  const problem = checkBackend(type, options);
  if (!problem) return options;
  // the deepest node of the field's path the file has (a missing field: its parent)
  let at: Node | undefined = keyNode;
  let node: unknown = value;
  for (const key of problem.field) {
    node = isCollection(node) ? node.get(key, true) : undefined;
    if (node === undefined) break;
    at = node as Node;
  }
  const field = problem.field.length > 0 ? ` field ${problem.field.join('.')}` : '';
  throw y.fail(at, `${label}${field}: ${problem.message}`);
}

/** Decodes `backends:`; null backends are dropped, as spread does. */
export function decodeBackends(y: YamlFile, node: Node | undefined): Backend[] {
  const backends: Backend[] = [];
  for (const { key: name, keyNode, value } of y.mapPairs(node, 'map[string]*spread.Backend')) {
    if (!VALID_NAME.test(name)) throw y.fail(keyNode, `invalid backend name: ${JSON.stringify(name)}`);
    if (value === undefined) continue;
    const label = `backend ${JSON.stringify(name)}`;
    const f = y.fields(value, 'spread.Backend');
    const type = y.str(f.get('type')) || name;
    if (!BACKEND_TYPES.has(type)) throw y.fail(f.get('type') ?? keyNode, `${label} has unsupported type ${JSON.stringify(type)}`);
    const allocate = y.str(f.get('allocate'));
    const discard = y.str(f.get('discard'));
    if (type !== 'adhoc' && (allocate !== '' || discard !== '')) throw y.fail(f.get('allocate') ?? f.get('discard') ?? keyNode, `${label} cannot use allocate and dispose fields`);
    if (type === 'adhoc' && allocate.trim() === '') throw y.fail(f.get('allocate') ?? keyNode, `${label} requires an allocate field`);

    const byName = new Map<string, System>();
    for (const item of y.items(f.get('systems'), '[]*spread.System')) {
      const system = decodeSystem(y, name, item);
      byName.set(system.name, system);
    }
    const systems = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const environment = y.env(f.get('environment'), label);
    const bad = systems.find((s) => invalidSystem([s.name]) !== undefined);
    if (bad !== undefined) throw projectError(`${label} refers to invalid system name: ${JSON.stringify(bad.name)}`, bad.origin);
    if (systems.length === 0) throw y.fail(f.get('systems') ?? keyNode, `no systems specified for ${label}`);

    backends.push({
      name,
      type,
      key: y.str(f.get('key')),
      allocate,
      discard,
      systems,
      environment,
      variants: y.list(f.get('variants')).sort(),
      ...decodeScripts(y, f),
      ...decodeTimeouts(y, f),
      haltTimeout: decodeTimeout(y, f.get('halt-timeout')),
      priority: y.int(f.get('priority'), 'int64'),
      manual: y.bool(f.get('manual')),
      memory: decodeSize(y, f.get('memory')),
      plan: y.str(f.get('plan')),
      location: y.str(f.get('location')),
      storage: decodeSize(y, f.get('storage')),
      region: optionalStr(y, f.get('region')),
      options: decodeOptions(y, label, type, keyNode, value, f),
      origin: y.origin(keyNode),
      at: y.fieldOrigins(f, ['type', 'systems', 'variants', 'environment']),
    });
  }
  return backends;
}
