// What a saved run report (<data>/reports/<run>.json) must hold for `fleetcache report` to
// print it: a file of another shape (edited by hand, another tool's) is named with its first
// wrong field, never a TypeError from deep inside the formatting.
import { isRecord, type Ledger } from './ledger.js';

type Check = (value: unknown) => boolean;

const string: Check = (v) => typeof v === 'string';
const number: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const numberOrNull: Check = (v) => v === null || number(v);
const boolean: Check = (v) => typeof v === 'boolean';

/** Each field a record must have (`?`: may be absent), with its check and what it should be. */
type Fields = Record<string, readonly [Check, string]>;

const LINK: Fields = { link: [string, 'a string'], actualBytes: [numberOrNull, 'a number or null'], naiveBytes: [number, 'a number'], 'partial?': [boolean, 'true or false'] };
const CACHE: Fields = {
  region: [string, 'a string'], url: [string, 'a string'], 'reachable?': [boolean, 'true or false'], 'coverage?': [string, 'a string'],
  hits: [number, 'a number'], misses: [number, 'a number'], collapsed: [number, 'a number'], hitRatio: [number, 'a number'],
};
const EGRESS: Fields = { actual: [numberOrNull, 'a number or null'], naive: [number, 'a number'] };
const INTERRUPTED: Fields = { signal: [string, 'a string'], abortedJobs: [number, 'a number'] };

/** The first field of `value` that `fields` does not take, as `where.field: should be …`; undefined when none. */
function recordError(value: unknown, where: string, fields: Fields): string | undefined {
  if (!isRecord(value)) return `${where || 'the report'}: should be an object`;
  for (const [key, [check, what]] of Object.entries(fields)) {
    const name = key.replace(/\?$/, '');
    const field = value[name];
    if (field === undefined && key.endsWith('?')) continue;
    if (!check(field)) return `${where ? `${where}.` : ''}${name}: should be ${what}`;
  }
  return undefined;
}

function listError(value: unknown, where: string, fields: Fields): string | undefined {
  if (!Array.isArray(value)) return `${where}: should be a list`;
  for (const [i, item] of value.entries()) {
    const error = recordError(item, `${where}[${i}]`, fields);
    if (error) return error;
  }
  return undefined;
}

/** Why `value` is not a run report, naming its first wrong field; undefined when it is one. */
function ledgerShapeError(value: unknown): string | undefined {
  const top = recordError(value, '', {
    run: [string, 'a string'], project: [string, 'a string'], machines: [number, 'a number'], 'reused?': [number, 'a number'],
  });
  if (top) return top;
  const ledger = value as Record<string, unknown>;
  return listError(ledger.links, 'links', LINK)
    ?? listError(ledger.caches, 'caches', CACHE)
    ?? recordError(ledger.originEgress, 'originEgress', EGRESS)
    ?? (ledger.interrupted === undefined ? undefined : recordError(ledger.interrupted, 'interrupted', INTERRUPTED));
}

/** `value` as a Ledger, or the error ledgerShapeError says. */
export function asLedger(value: unknown): Ledger {
  const error = ledgerShapeError(value);
  if (error) throw new Error(error);
  return value as Ledger;
}
