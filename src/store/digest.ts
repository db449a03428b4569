// Digests as they appear in URLs and records: "<algo>:<hex>" in text, /<algo>/<hex> in paths.
import { FleetError, NotFoundError } from '../errors.js';

export const DIGEST_ALGORITHMS = ['sha256', 'sha512'] as const;
export type DigestAlgorithm = (typeof DIGEST_ALGORITHMS)[number];

/**
 * The fastify route of the tooltool alias /{algo}/{hex}: only the known algorithms match,
 * so any other two-segment path is not found rather than a malformed digest.
 */
export const ALGO_HEX_ROUTE = `/:algo(^(?:${DIGEST_ALGORITHMS.join('|')})$)/:hex`;

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

export interface Digest {
  readonly algo: DigestAlgorithm;
  /** Lowercase hex. */
  readonly hex: string;
}

export function isDigestAlgorithm(value: string): value is DigestAlgorithm {
  return (DIGEST_ALGORITHMS as readonly string[]).includes(value);
}

/** Whether `name` is a digest of `algo` as the stores write it: its whole length, lowercase hex. */
export function isStoredHex(algo: DigestAlgorithm, name: string): boolean {
  return name.length === HEX_LENGTH[algo] && /^[0-9a-f]+$/.test(name);
}

/** Whether `text` is a digest as records hold it and the stores write it: "<algo>:<hex>", lowercase, whole. */
export function isStoredDigest(text: string): boolean {
  const [algo = '', hex = '', ...rest] = text.split(':');
  return rest.length === 0 && isDigestAlgorithm(algo) && isStoredHex(algo, hex);
}

/** Validates an algorithm and hex string from a URL or a record; throws FC_ERR_BAD_DIGEST. */
export function parseDigest(algo: string, hex: string): Digest {
  if (!isDigestAlgorithm(algo)) {
    throw new FleetError('FC_ERR_BAD_DIGEST', `unknown digest algorithm "${algo}" (expected sha256 or sha512)`);
  }
  const want = HEX_LENGTH[algo];
  if (hex.length !== want || !/^[0-9a-fA-F]+$/.test(hex)) {
    throw new FleetError('FC_ERR_BAD_DIGEST', `malformed ${algo} digest: expected ${want} hex characters`);
  }
  return { algo, hex: hex.toLowerCase() };
}

/**
 * parseDigest for the tooltool alias /{algo}/{hex}: a malformed digest there is not found
 * (404), as tooltool's server answers it (its lookup comes first, tooltool.md §4), not a 400,
 * which `mach artifact toolchain` takes for a proxy's hiccup and retries for minutes.
 */
export function parseAliasDigest(algo: string, hex: string): Digest {
  try {
    return parseDigest(algo, hex);
  } catch (err) {
    if (err instanceof FleetError && err.code === 'FC_ERR_BAD_DIGEST') throw new NotFoundError(`no such asset: ${err.message}`);
    throw err;
  }
}

/** Parses "sha256:<hex>". */
export function parseDigestString(text: string): Digest {
  const colon = text.indexOf(':');
  if (colon < 0) throw new FleetError('FC_ERR_BAD_DIGEST', `malformed digest "${text.slice(0, 20)}": expected <algo>:<hex>`);
  return parseDigest(text.slice(0, colon), text.slice(colon + 1));
}

export function formatDigest(d: Digest): string {
  return `${d.algo}:${d.hex}`;
}

export function sameDigest(a: Digest, b: Digest): boolean {
  return a.algo === b.algo && a.hex === b.hex;
}

/** The path of a blob in the shared namespace. */
export function casPath(d: Digest): string {
  return `/cas/${d.algo}/${d.hex}`;
}
