// When push stops an encode against a candidate base: once the candidate can no longer be
// chosen, whatever the rest of its VCDIFF compresses to. Each stop rule is a predicate of its
// own. All are sound as the encode goes on because `size` and `counted` only grow; a raw size
// alone bounds nothing (a VCDIFF of many MB can compress to a few KB), so past the re-base
// bound the rules look at the fast pass.

/** A candidate ranked already, the one an encode is weighed against. */
interface Rival {
  /** The bytes it sends over the slow links. */
  readonly cost: number;
  readonly vcdiffSize: number;
}

/** An encode against a candidate, so far. */
interface EncodeSoFar {
  /** Its base's cost to the regions whose cache lacks it (the compressed base, once each). */
  readonly fetches: number;
  /** Bytes of raw VCDIFF written (0: not started). */
  readonly size: number;
  /** Bytes of its fast pass so far: a lower bound of the fast pass's final size. */
  readonly counted: number;
}

/** Where the push stands. */
interface Standing {
  /** The re-base bound, once the tar's gzip ended (unknown before: no rule that needs it stops an encode). */
  readonly bound: number | undefined;
  /** The cheapest choosable candidate, ranked by its fast pass or as 0. */
  readonly best: Rival | undefined;
  /** The cheapest candidate ranked 0 (raw VCDIFF under the bound: a delta for sure). */
  readonly sure: Rival | undefined;
  /** Times a delta crosses the slow links: once up, once down to each region. */
  readonly slowLinks: number;
}

/** At the least `least` bytes, with a VCDIFF of at least `size`: `rival` wins, by cost, or at the same cost by a smaller VCDIFF (push's tie rule). */
function losesTo(least: number, size: number, rival: Rival | undefined): boolean {
  return rival !== undefined && (least > rival.cost || (least === rival.cost && size > rival.vcdiffSize));
}

/**
 * The re-base bound: a raw VCDIFF past it ranks by its fast pass, no longer as 0. Under it,
 * or while the bound is unknown, the candidate may yet rank 0.
 */
function pastBound(encode: EncodeSoFar, standing: Standing): boolean {
  return standing.bound !== undefined && encode.size > standing.bound;
}

/** Past the bound, a fast pass past 2 × the bound: no delta is chosen above it (a new base is made). */
function pastTwiceBound(encode: EncodeSoFar, standing: Standing): boolean {
  return pastBound(encode, standing) && encode.counted > 2 * (standing.bound ?? Infinity);
}

/**
 * Under the bound, it costs at least its fetches (it may rank 0): past the sure candidate's
 * cost, it cannot be chosen. Not weighed against the best: its slow pass may yet leave it past
 * the bound, a new base then, where this one may end a delta for sure.
 */
function pastSure(encode: EncodeSoFar, standing: Standing): boolean {
  return !pastBound(encode, standing) && losesTo(encode.fetches, encode.size, standing.sure);
}

/** Past the bound, it costs at least its fetches plus its fast pass so far over each slow link: past the best's cost, it cannot be chosen. */
function pastBest(encode: EncodeSoFar, standing: Standing): boolean {
  return pastBound(encode, standing) && losesTo(encode.fetches + encode.counted * standing.slowLinks, encode.size, standing.best);
}

/** Whether the candidate of `encode` can no longer be chosen: its encode stops there (or, at 0 bytes, is not started). */
export function cannotBeChosen(encode: EncodeSoFar, standing: Standing): boolean {
  return pastTwiceBound(encode, standing) || pastSure(encode, standing) || pastBest(encode, standing);
}
