// The backends' providers of a run, built from the project model's decoded options.
import type { BackendContext, Provider } from '../backends/backend.js';
import { BACKENDS, createProvider } from '../backends/registry.js';
import { levelTimeouts, type Backend, type ResolvedFields } from '../spread/index.js';
import { checkEmbeddedReach } from './embedded.js';

/**
 * One provider per backend, from the options the project model decoded and checked. Its own
 * local scripts (adhoc allocate and discard) get the backend's warn and kill timeouts, else
 * spread's defaults: not the project's (spec §15). With `embedded`, an address learnt at
 * allocation (adhoc) must be reachable from the embedded servers.
 */
export async function createProviders(backends: ReadonlySet<Backend>, fields: ResolvedFields, ctx: BackendContext, embedded = false): Promise<Map<string, Provider>> {
  const providers = new Map<string, Provider>();
  for (const b of backends) {
    const reach = embedded ? { checkAddress: (address: string) => checkEmbeddedReach(b.name, b.type, address) } : {};
    const options = withEvaluatedKey(b.options, fields.keys.get(b.name));
    providers.set(b.name, await createProvider(b.name, b.type, options, { ...ctx, scriptTimeouts: levelTimeouts([b]), ...reach }));
  }
  return providers;
}

/**
 * The credential files the backends' options name (registry.ts keyFiles), their `key` as
 * spread evaluates it: a push never packs them.
 */
export function backendKeyFiles(backends: Iterable<Backend>, fields: ResolvedFields, projectRoot: string): string[] {
  return [...backends].flatMap((b) => BACKENDS[b.type]?.keyFiles?.(withEvaluatedKey(b.options, fields.keys.get(b.name)), projectRoot) ?? []);
}

/**
 * A backend's options with its `key` as spread evaluates it ($(HOST:…) expanded, trimmed).
 * A key that evaluates to nothing is no key, as in spread: the raw text (a file path inside
 * `$(HOST: cat …)`) must not stay, or it would be taken for a missing key file.
 */
export function withEvaluatedKey(options: Readonly<Record<string, unknown>>, key: string | undefined): Readonly<Record<string, unknown>> {
  if (key === undefined) return options;
  const { key: _raw, ...rest } = options;
  return key === '' ? rest : { ...rest, key };
}
