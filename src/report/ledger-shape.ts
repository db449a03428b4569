// What a saved run report (<data>/reports/<run>.json) must hold for `fleetcache report` to
// print it: a file of another shape (edited by hand, another tool's) is named with its first
// wrong field, never a TypeError from deep inside the formatting.
import { Type, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { fieldPath } from '../config/validate.js';
import type { Ledger } from './ledger.js';

// Each schema's description is what the refusal says the field should be.
const str = Type.String({ description: 'a string' });
const num = Type.Number({ description: 'a number' });
const numOrNull = Type.Union([Type.Number(), Type.Null()], { description: 'a number or null' });
const bool = Type.Boolean({ description: 'true or false' });
const record = <P extends Record<string, TSchema>>(properties: P) => Type.Object(properties, { description: 'an object' });
const list = <T extends TSchema>(items: T) => Type.Array(items, { description: 'a list' });

/** The fields `fleetcache report` reads (others may be there: a newer version's). */
const LedgerShape = record({
  run: str,
  project: str,
  machines: num,
  reused: Type.Optional(num),
  links: list(record({ link: str, actualBytes: numOrNull, naiveBytes: num, partial: Type.Optional(bool) })),
  caches: list(record({
    region: str, url: str, reachable: Type.Optional(bool), coverage: Type.Optional(str),
    hits: num, misses: num, collapsed: num, hitRatio: num,
  })),
  originEgress: record({ actual: numOrNull, naive: num }),
  interrupted: Type.Optional(record({ signal: str, abortedJobs: num })),
});

/** `value` as a Ledger, or an error naming its first wrong field (`links[0].naiveBytes: should be a number`). */
export function asLedger(value: unknown): Ledger {
  const first = Value.Errors(LedgerShape, value).First();
  if (first) throw new Error(`${fieldPath(first.path) || 'the report'}: should be ${first.schema.description ?? 'as a run report has it'}`);
  return value as Ledger;
}
