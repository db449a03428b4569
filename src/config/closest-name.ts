// The name a misspelt one most likely meant ("maxSise" for "maxSize"), for an unknown field's message, and how that message says it.
import { distance } from 'fastest-levenshtein';

/**
 * The candidate `name` is likeliest a misspelling of: the nearest, case aside, within two
 * edits and fewer than half its letters (so that "x" does not suggest "data"); else undefined.
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: { name: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const edits = distance(lower, candidate.toLowerCase());
    if (edits <= 2 && edits * 2 < name.length && (!best || edits < best.distance)) best = { name: candidate, distance: edits };
  }
  return best?.name;
}

/** An unknown field's hint: ' (did you mean "a"?)', ' (did you mean "a" or "b"?)', or nothing without a guess. */
export function didYouMean(guesses: readonly string[]): string {
  return guesses.length === 0 ? '' : ` (did you mean ${guesses.map((name) => JSON.stringify(name)).join(' or ')}?)`;
}
