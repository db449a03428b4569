// The one map from a backend `type:` to its option schema and factory: the same entry
// validates spread.yaml and constructs the provider (spread keeps two switches).
import { Ajv } from 'ajv';
import type { Static, TSchema } from '@sinclair/typebox';
import { ConfigError } from '../errors.js';
import type { BackendContext, Provider } from './backend.js';
import * as adhoc from './adhoc.js';
import * as local from './local.js';
import * as ssh from './ssh.js';

export interface BackendType<S extends TSchema = TSchema> {
  /** Backend-specific fields of the backend's YAML mapping (others pass through). */
  readonly options: S;
  create(name: string, options: Static<S>, ctx: BackendContext): Provider;
}

function entry<S extends TSchema>(options: S, create: (name: string, o: Static<S>, ctx: BackendContext) => Provider): BackendType {
  return { options, create: create as BackendType['create'] };
}

export const BACKENDS: Readonly<Record<string, BackendType>> = {
  local: entry(local.localOptions, local.create),
  adhoc: entry(adhoc.adhocOptions, adhoc.create),
  ssh: entry(ssh.sshOptions, ssh.create),
};

const ajv = new Ajv({ allErrors: false, useDefaults: true, strict: false });
const validators = new Map<string, ReturnType<typeof ajv.compile>>();

/**
 * Checks a backend's fields against its type's schema. Returns null when valid, else
 * "field: message" for the caller to prefix with file and line.
 */
export function checkBackend(type: string, options: unknown): string | null {
  const t = BACKENDS[type];
  if (!t) return `type: unknown backend type "${type}" (known: ${Object.keys(BACKENDS).join(', ')})`;
  let validate = validators.get(type);
  if (!validate) validators.set(type, (validate = ajv.compile(t.options)));
  if (validate(options)) return null;
  const e = validate.errors![0]!;
  const field = e.instancePath.split('/').slice(1).join('.');
  const extra = e.keyword === 'required' ? ` "${String((e.params as { missingProperty: string }).missingProperty)}"` : '';
  return `${field || '(backend)'}: ${e.message ?? 'invalid value'}${extra}`;
}

/** Validates and constructs the provider of one backend. */
export function createProvider(name: string, type: string, options: unknown, ctx: BackendContext): Provider {
  const problem = checkBackend(type, options);
  if (problem) throw new ConfigError(`backend ${name}: ${problem}`);
  try {
    return BACKENDS[type]!.create(name, options, ctx);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`backend ${name}: ${err.message}`);
    throw err;
  }
}
