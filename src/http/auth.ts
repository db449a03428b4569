// Bearer-token checks. Tokens are compared in constant time and never logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { FleetError } from '../errors.js';

function digestOf(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export class TokenCheck {
  readonly #expected: Buffer[];

  /** Several tokens may be valid at once, so that tokens can be rotated without downtime. */
  constructor(tokens: readonly string[]) {
    this.#expected = tokens.filter((t) => t.length > 0).map(digestOf);
  }

  /** Whether the request carries an accepted token (no throw). */
  accepts(request: FastifyRequest): boolean {
    const header = request.headers.authorization;
    if (!header) return false;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return false;
    const got = digestOf(m[1]!);
    return this.#expected.some((e) => timingSafeEqual(e, got));
  }

  /** Throws 401 without credentials, 403 with wrong ones. */
  require(request: FastifyRequest): void {
    if (!request.headers.authorization) throw missingToken();
    if (!this.accepts(request)) throw new FleetError('FC_ERR_FORBIDDEN', 'the bearer token is not accepted');
  }
}

/** The 401 of a write (or a token-only read) that brings no token. */
export function missingToken(): FleetError {
  return new FleetError('FC_ERR_UNAUTHORIZED', 'this request needs "Authorization: Bearer <token>"');
}

/** A 401's challenge (RFC 9110 §11.6.1): the scheme the servers take (RFC 6750). */
export const BEARER_CHALLENGE = 'Bearer realm="fleetcache"';
