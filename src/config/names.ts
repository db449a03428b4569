// Names an operator gives in configuration files: a cache's region and its mirrors, the
// regions of a fleet.
import { Type, type TSchema } from '@sinclair/typebox';

/**
 * A region or mirror name: letters, digits, ".", "_" and "-", starting with a letter or a
 * digit, so that neither "." nor ".." is one (a mirror's name is a path segment,
 * /mirror/{name}/…; a region's is part of a data directory, cache/region-{name}).
 */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]*$';

/**
 * A map keyed by such names. The names are checked by propertyNames: TypeBox turns a key
 * schema's pattern into patternProperties, which lets any other key through unchecked.
 */
export function NamedMap<T extends TSchema>(value: T, options: { default?: Record<string, never> } = {}) {
  return Type.Record(Type.String(), value, { propertyNames: { pattern: NAME_PATTERN }, ...options });
}
