// The one map from a backend `type:` to its option schema and factory: the same entry
// validates spread.yaml and constructs the provider (spread keeps two switches).
import { Ajv } from 'ajv';
import type { Static, TSchema } from '@sinclair/typebox';
import { closestName, didYouMean } from '../config/closest-name.js';
import { propertiesOf } from '../config/validate.js';
import { ConfigError } from '../errors.js';
import type { BackendContext, Provider } from './backend.js';
import * as adhoc from './adhoc-options.js';
import * as local from './local.js';
import * as ssh from './ssh-options.js';

interface BackendType<S extends TSchema = TSchema> {
  /** Backend-specific fields of the backend's YAML mapping (others pass through). */
  readonly options: S;
  /** Checks the schema cannot make (durations); throws a ConfigError naming the field. */
  readonly verify?: (options: Static<S>) => void;
  /**
   * The files its options name that hold credentials (SSH private keys, `key` relative to the
   * project root): never packed with the project, which goes to every machine and the origin.
   */
  readonly keyFiles?: (options: Static<S>, projectRoot: string) => string[];
  create(name: string, options: Static<S>, ctx: BackendContext): Promise<Provider>;
}

/** A backend module's factory of providers. */
interface Factory<S extends TSchema> {
  create(name: string, o: Static<S>, ctx: BackendContext): Provider;
}

/**
 * `load` gives the module that makes the providers. Those of the ssh and adhoc backends load
 * ssh2 (about 14 MB of RSS, its poly1305 wasm included): they are imported only when a backend
 * of theirs is created, as the runner forks itself for every script, at a cost that grows with
 * its RSS. Their options (*-options.ts) load none of it: `list` and a local run check them.
 */
function entry<S extends TSchema>(
  options: S,
  load: () => Promise<Factory<S>>,
  verify?: (o: Static<S>) => void,
  keyFiles?: (o: Static<S>, projectRoot: string) => string[],
): BackendType {
  const create = async (name: string, o: Static<S>, ctx: BackendContext): Promise<Provider> => (await load()).create(name, o, ctx);
  return {
    options,
    create: create as BackendType['create'],
    ...(verify ? { verify: verify as BackendType['verify'] } : {}),
    ...(keyFiles ? { keyFiles: keyFiles as BackendType['keyFiles'] } : {}),
  };
}

export const BACKENDS: Readonly<Record<string, BackendType>> = {
  local: entry(local.localOptions, () => Promise.resolve({ create: local.create })),
  adhoc: entry(adhoc.adhocOptions, () => import('./adhoc.js'), adhoc.verify, adhoc.keyFiles),
  ssh: entry(ssh.sshOptions, () => import('./ssh.js'), ssh.verify, ssh.keyFiles),
};

/** What is wrong with a backend's options: the path to the field (empty: the backend itself) and why. */
interface BackendProblem {
  readonly field: readonly string[];
  readonly message: string;
}

const describe = (p: BackendProblem): string => `${p.field.join('.') || '(backend)'}: ${p.message}`;

// verbose: an error carries its schema, whose known fields an unknown one is compared with (closestName);
// validateSchema off as in src/config/load.ts (test/config/schemas-valid.test.ts checks the schemas)
const ajv = new Ajv({ allErrors: false, useDefaults: true, strict: false, verbose: true, validateSchema: false });
const validators = new Map<string, ReturnType<typeof ajv.compile>>();

/**
 * Checks a backend's fields against its type's schema and verify (defaults are filled in).
 * Returns null when valid, else the field and message for the caller to place.
 */
export function checkBackend(type: string, options: unknown): BackendProblem | null {
  const t = BACKENDS[type];
  if (!t) return { field: ['type'], message: `unknown backend type "${type}" (known: ${Object.keys(BACKENDS).join(', ')})` };
  let validate = validators.get(type);
  if (!validate) validators.set(type, (validate = ajv.compile(t.options)));
  if (!validate(options)) {
    const e = validate.errors![0]!;
    const field = e.instancePath.split('/').slice(1);
    if (e.keyword === 'required') return { field, message: `missing field "${String((e.params as { missingProperty: string }).missingProperty)}"` };
    if (e.keyword === 'additionalProperties') {
      const extra = String((e.params as { additionalProperty: string }).additionalProperty);
      const known = Object.keys(propertiesOf(e.parentSchema));
      const guess = closestName(extra, known);
      return { field: [...field, extra], message: `unknown field${didYouMean(guess === undefined ? [] : [guess])}` };
    }
    return { field, message: e.message ?? 'invalid value' };
  }
  try {
    t.verify?.(options);
  } catch (err) {
    if (err instanceof ConfigError) return { field: err.field ? err.field.split('.') : [], message: err.message };
    throw err;
  }
  return null;
}

/** Validates and constructs the provider of one backend (loading its module: see entry). */
export async function createProvider(name: string, type: string, options: unknown, ctx: BackendContext): Promise<Provider> {
  const problem = checkBackend(type, options);
  if (problem) throw new ConfigError(`backend ${name}: ${describe(problem)}`);
  try {
    return await BACKENDS[type]!.create(name, options, ctx);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`backend ${name}: ${err.field ? `${err.field}: ` : ''}${err.message}`);
    throw err;
  }
}
