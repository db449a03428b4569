// One schema for a configuration's types and validation (TypeBox + ajv), and its failures in
// words. No YAML here: a start from flags alone checks them without loading the parser (load.ts).
import { Ajv, type ErrorObject } from 'ajv';
import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox';
import { ConfigError, UsageError } from '../errors.js';
import { redactMalformedUrl } from '../redact-url.js';
import { closestName, didYouMean } from './closest-name.js';
import { NAME_PATTERN } from './names.js';
import { MAX_SIZE, MAX_TIMER_MS, durationMs, parseBaseUrl, parseListen, parsePositiveDuration, parsePositiveSize, parseSize, parseTimerDuration, POSITIVE_SIZE_PHRASE } from './units.js';


// verbose: an error carries its schema, whose known fields an unknown one is compared with (closestName).
// validateSchema off: checking our own TypeBox schemas against JSON Schema's meta-schema compiled
// that meta-schema at every start, about a tenth of a second of CPU in each process of a cache
// (test/config/schemas-valid.test.ts checks them once instead).
const ajv = new Ajv({ allErrors: false, useDefaults: true, strict: false, verbose: true, validateSchema: false });
/** Every error of a value at once, for a closer look at a failed one (unknownBesideMissing); it changes nothing. */
const ajvAll = new Ajv({ allErrors: true, strict: false, verbose: true, validateSchema: false });

/**
 * Human units as string formats (`format: 'size'`, `'positive-size'`, `'duration'`, `'listen'`,
 * `'base-url'`): a malformed value is refused with the file, line and field, not later by the
 * parse without them.
 */
const FORMATS: Record<string, { parse: (text: string) => unknown; phrase: string }> = {
  size: { parse: parseSize, phrase: 'a size (e.g. 4096, 512MiB, 50GiB)' },
  // a budget that cannot be empty ("0", "0GiB" and "0.5", which rounds down to 0 bytes, refused)
  'positive-size': { parse: parsePositiveSize, phrase: POSITIVE_SIZE_PHRASE },
  // a well-formed duration, checked before its length so that "1h30" is not told it is too long
  duration: { parse: durationMs, phrase: 'a duration such as 250ms, 30s, 5m' },
  // a timer's (a timeout, an interval): 24 days at most
  'timer-duration': { parse: parseTimerDuration, phrase: 'a duration of at most 24 days (e.g. 250ms, 30s, 5m)' },
  'positive-duration': { parse: parsePositiveDuration, phrase: 'a duration longer than 0 (e.g. 250ms, 30s, 5m)' },
  // an age (how old a thing may get): at most ten years
  age: { parse: parsePositiveDuration, phrase: 'a duration longer than 0 and at most ten years (e.g. 14d, 90d)' },
  listen: { parse: parseListen, phrase: 'HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8081, [::1]:0)' },
  // one requests are made below (units.ts parseBaseUrl)
  'base-url': { parse: parseBaseUrl, phrase: 'an http or https URL with no query or fragment (e.g. http://origin.example:8080)' },
};

/** A size: a number of bytes, or a size string ("4096", "512MiB", "50GiB"). */
export function sizeSchema() {
  return Type.Union([Type.String({ minLength: 1, format: 'size' }), Type.Integer({ minimum: 0, maximum: MAX_SIZE })]);
}

/** What a schema built below may say besides its type: a default, a description. */
type SchemaOptions = { default?: string; description?: string };

/** A duration a timer waits: a number of seconds, or a duration string ("250ms", "30s", "1h30m"); 24 days at most. */
export function durationSchema(options: SchemaOptions = {}) {
  // a number too large is told so ("must be <= …")
  return stringOrSecondsSchema(options, 'timer-duration', { minimum: 0, maximum: MAX_TIMER_MS / 1000 });
}

/** How old something may get: a positive duration, ten years at most (a number is seconds). */
export function ageSchema(options: SchemaOptions = {}) {
  // a number 0 is told "must be > 0"
  return stringOrSecondsSchema(options, 'age', { exclusiveMinimum: 0, maximum: 10 * 365 * 86_400 });
}

/**
 * A duration string of `format` (besides 'duration') or a number of seconds within `bounds`.
 * if/then/else rather than a union: a number out of bounds is told its bound, not "must be
 * string or …".
 */
function stringOrSecondsSchema(options: SchemaOptions, format: string, bounds: Record<string, number>) {
  return Type.Unsafe<string | number>({
    ...options,
    type: ['string', 'number'],
    if: { type: 'string' },
    then: { minLength: 1, allOf: [{ format: 'duration' }, { format }] },
    else: bounds,
  });
}

/** A timeout: a duration as above, longer than zero (zero would mean no timeout at all). */
export function positiveDurationSchema(options: { default?: string; description?: string } = {}) {
  return Type.Unsafe<string | number>({
    ...options,
    type: ['string', 'number'],
    if: { type: 'string' },
    then: { minLength: 1, allOf: [{ format: 'duration' }, { format: 'timer-duration' }, { format: 'positive-duration' }] },
    else: { exclusiveMinimum: 0, maximum: MAX_TIMER_MS / 1000 },
  });
}

/**
 * A size of at least one byte, for a budget that cannot be empty (an origin's body limits,
 * a cache's disk): a number ≥ 1, or a size string ("0", "0GiB", and "0.5", which rounds
 * down to 0 bytes, refused). if/then/else, so that ajv names the failure of the branch
 * taken: a malformed size as such first, then one below a byte.
 */
export function positiveSizeSchema(byDefault?: string) {
  return Type.Unsafe<string | number>({
    ...(byDefault === undefined ? {} : { default: byDefault }),
    type: ['string', 'integer'],
    if: { type: 'string' },
    then: { minLength: 1, allOf: [{ format: 'size' }, { format: 'positive-size' }] },
    // YAML's 1e400 and .inf are Infinity, which ajv takes for an integer
    else: { minimum: 1, maximum: MAX_SIZE },
  });
}
for (const [name, { parse }] of Object.entries(FORMATS)) {
  for (const instance of [ajv, ajvAll]) instance.addFormat(name, {
    type: 'string',
    validate: (text: string) => {
      try {
        parse(text);
        return true;
      } catch {
        return false;
      }
    },
  });
}

/** Patterns said in words: an operator should not have to read a regular expression. */
const PATTERNS: Record<string, string> = {
  [NAME_PATTERN]: 'letters, digits, ".", "_" and "-", starting with a letter or digit (e.g. eu-west)',
};

/** What a failed check asks for, in words: a unit format's or pattern's phrase, else ajv's message. */
function wanted(e: ErrorObject): string {
  const format = e.keyword === 'format' ? FORMATS[(e.params as { format: string }).format] : undefined;
  const pattern = e.keyword === 'pattern' ? PATTERNS[(e.params as { pattern: string }).pattern] : undefined;
  return format?.phrase ?? pattern ?? (e.message ?? 'valid').replace(/^must be /, '');
}

export function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** JSON pointer "/a/b/0" → field path "a.b[0]". */
export function fieldPath(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), '');
}


/**
 * A value that matches no branch of a union (e.g. a number or "auto"): one message naming
 * every branch, instead of ajv's first ("must be integer").
 */
function describeUnion(errors: readonly ErrorObject[]): string | undefined {
  const union = errors.find((e) => e.keyword === 'anyOf' && e.instancePath === errors[0]!.instancePath);
  if (!union) return undefined;
  // One phrase per branch (anyOf/N/…): its constant when it has one, else its first failure.
  const byBranch = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    if (e === union || e.instancePath !== union.instancePath || !e.schemaPath.startsWith(`${union.schemaPath}/`)) continue;
    const branch = e.schemaPath.slice(union.schemaPath.length + 1).split('/')[0]!;
    byBranch.set(branch, [...(byBranch.get(branch) ?? []), e]);
  }
  const branches = [...byBranch.values()].map((list) => {
    const e = list.find((x) => x.keyword === 'const') ?? list[0]!;
    return e.keyword === 'type' ? String((e.params as { type: string }).type)
      : e.keyword === 'const' ? JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)
      : wanted(e);
  });
  return branches.length > 1 ? `must be ${branches.join(' or ')}` : undefined;
}

/**
 * A required field missing where an unknown one stands (`upstrem:` for `upstream:`): the
 * unknown field, the likelier mistake and the line to fix, rather than the mapping's first
 * line. ajv stops at the first error, and checks `required` first.
 */
function unknownBesideMissing(schema: TSchema, value: unknown, first: ErrorObject): ErrorObject | undefined {
  if (first.keyword !== 'required') return undefined;
  const validateAll = ajvAll.compile(schema);
  validateAll(value);
  return validateAll.errors?.find((e) => e.keyword === 'additionalProperties' && e.instancePath === first.instancePath);
}

/** A schema's own fields, by name (none for a schema that is not an object's). */
export function propertiesOf(schema: unknown): Record<string, unknown> {
  return (schema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
}

/**
 * Whether `schema` has the field `name`: one of its own, or of one of its shapes (a one-of
 * setting's branches, if/then/else or anyOf/oneOf: the origin's `storage:`, s3's `bucket`).
 */
function hasField(schema: unknown, name: string): boolean {
  if (Object.hasOwn(propertiesOf(schema), name)) return true;
  const { then, else: otherwise, anyOf = [], oneOf = [] } = (schema ?? {}) as { then?: unknown; else?: unknown; anyOf?: unknown[]; oneOf?: unknown[] };
  return [then, otherwise, ...anyOf, ...oneOf].some((shape) => shape !== undefined && hasField(shape, name));
}

/**
 * The known fields an unknown one likely means: the same name one level down (`connect` for
 * `timeouts.connect`, `bucket` for `storage.bucket`; exact names only: a near name there
 * would be a guess twice over), else a misspelling of a field beside it (closestName); none
 * when nothing is near.
 */
function guessFields(extra: string, schema: unknown): string[] {
  const known = propertiesOf(schema);
  const nested = Object.entries(known).filter(([, child]) => hasField(child, extra)).map(([name]) => `${name}.${extra}`);
  const misspelt = closestName(extra, Object.keys(known));
  return nested.length > 0 ? nested : misspelt === undefined ? [] : [misspelt];
}

/** `suggest`: an unknown field's message names the known one it likely means, if any. */
function describe(e: ErrorObject, { suggest = true } = {}): { pointer: string; message: string } {
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty);
    const guesses = suggest ? guessFields(extra, e.parentSchema) : [];
    return { pointer: `${e.instancePath}/${extra}`, message: `unknown field "${extra}"${didYouMean(guesses)}` };
  }
  if (e.keyword === 'required') {
    const missing = String((e.params as { missingProperty: string }).missingProperty);
    return { pointer: e.instancePath, message: `missing required field "${missing}"` };
  }
  // several types in one schema (positiveSizeSchema): "string or integer", not ajv's "string,integer"
  const types = e.keyword === 'type' ? (e.params as { type: string | string[] }).type : undefined;
  const words = e.keyword === 'format' || e.keyword === 'pattern' ? `must be ${wanted(e)}` : Array.isArray(types) ? `must be ${types.join(' or ')}` : e.message;
  if (e.propertyName !== undefined) {
    // a key that fails the map's propertyNames schema: name the key, not just the map
    return { pointer: `${e.instancePath}/${escapePointer(e.propertyName)}`, message: `name ${JSON.stringify(e.propertyName)} ${words ?? 'is invalid'}` };
  }
  return { pointer: e.instancePath, message: words ?? 'invalid value' };
}

/**
 * The JSON pointer of the first number in `value` that is not finite (YAML's `.inf`, `.nan`,
 * `1e400`), if any: ajv takes Infinity for an integer, so a count without a maximum
 * (`upstreamConnections: .inf`) passed the schema and failed later, far from its line.
 */
function nonFinitePointer(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : '';
  if (value === null || typeof value !== 'object') return undefined;
  for (const [key, item] of Object.entries(value)) {
    const below = nonFinitePointer(item);
    if (below !== undefined) return `/${escapePointer(key)}${below}`;
  }
  return undefined;
}

/**
 * What is wrong with `value` against `schema` (its defaults filled in): the JSON pointer of
 * the field and the message, the first failure only; undefined when nothing is.
 */
export function schemaProblem(schema: TSchema, value: unknown): { pointer: string; message: string } | undefined {
  const validate = ajv.compile(schema);
  if (!validate(value)) {
    const first = validate.errors![0]!;
    const typo = unknownBesideMissing(schema, value, first);
    const described = typo ? describe(typo, { suggest: false }) : describe(first);
    const message = typo ? `${described.message} (a misspelling of the required field ${JSON.stringify((first.params as { missingProperty: string }).missingProperty)}?)` : describeUnion(validate.errors!) ?? described.message;
    return { pointer: described.pointer, message };
  }
  const infinite = nonFinitePointer(value);
  return infinite === undefined ? undefined : { pointer: infinite, message: 'must be a finite number' };
}

/** The configuration of no file: `{}` with the defaults `schema` fills in, no YAML parsed for it. */
export function defaultsOf<S extends TSchema>(schema: S): Static<S> {
  const value = {};
  const problem = schemaProblem(schema, value);
  // a schema with a required field has no defaults-only configuration
  if (problem) throw new ConfigError(`(defaults): ${fieldPath(problem.pointer) || '(top level)'}: ${problem.message}`);
  return value as Static<S>;
}

/**
 * Checks command-line values against the fields of the schema they override, so a flag
 * meets the same rules as the file: `flags` maps a field to [flag name, value given].
 * Throws UsageError("--flag: message, not \"value\"").
 */
export function checkFlags(schema: TObject, flags: Record<string, readonly [flag: string, value: unknown]>): void {
  for (const [field, [flag, value]] of Object.entries(flags)) {
    const property = schema.properties[field];
    if (value === undefined || property === undefined) continue;
    const validate = ajv.compile(property);
    if (validate(value)) continue;
    // A flag is always text: say what the text should look like, not the union's other branches,
    // and which text was given (as parseSizeFlag does), with any credentials of a URL hidden.
    const errors = validate.errors!;
    const refused = describe(errors.find((e) => e.keyword === 'format' || e.keyword === 'pattern') ?? errors[0]!).message;
    throw new UsageError(`${flag}: ${refused}, not ${JSON.stringify(redactMalformedUrl(String(value)))}`);
  }
}
