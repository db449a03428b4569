// Bearer-token checks. Tokens are compared in constant time and never logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { parseRunToken, runTokenMac } from '../client/run-token.js';
import { FleetError } from '../errors.js';

function digestOf(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** What a request's token allows: everything (a write token), or its run's artifacts (a run token, client/run-token.ts). */
export type Grant = { readonly scope: 'write' } | { readonly scope: 'run'; readonly run: string };

export class TokenCheck {
  readonly #tokens: string[];
  readonly #expected: Buffer[];

  /** Several tokens may be valid at once, so that tokens can be rotated without downtime. */
  constructor(tokens: readonly string[]) {
    this.#tokens = tokens.filter((t) => t.length > 0);
    this.#expected = this.#tokens.map(digestOf);
  }

  /** What the request's bearer token allows; undefined without one, or with one not accepted (an expired run token too). */
  grant(request: FastifyRequest): Grant | undefined {
    const grant = this.#check(request);
    return grant === 'expired' ? undefined : grant;
  }

  #check(request: FastifyRequest): Grant | 'expired' | undefined {
    const token = bearerToken(request.headers.authorization);
    if (!token) return undefined;
    const got = digestOf(token);
    if (this.#expected.some((e) => timingSafeEqual(e, got))) return { scope: 'write' };
    const run = parseRunToken(token);
    if (!run) return undefined;
    const ok = this.#tokens.some((t) => {
      const expected = runTokenMac(t, run.run, run.expires);
      return expected.length === run.mac.length && timingSafeEqual(expected, run.mac);
    });
    if (!ok) return undefined;
    return run.expires * 1000 > Date.now() ? { scope: 'run', run: run.run } : 'expired';
  }

  /** Whether the request carries an accepted token, of either kind: what reads that need one check (no throw). */
  accepts(request: FastifyRequest): boolean {
    return this.grant(request) !== undefined;
  }

  /** A write of anything: throws 401 without credentials, 403 with wrong ones or a run token. */
  require(request: FastifyRequest): void {
    if (this.granted(request).scope !== 'write') throw new FleetError('FC_ERR_FORBIDDEN', 'a run token may only upload its run\'s artifacts');
  }

  /** A write under /artifacts/<run>/: a write token, or that run's token. Returns which. */
  requireArtifacts(request: FastifyRequest, run: string | undefined): Grant {
    const grant = this.granted(request);
    if (grant.scope === 'run' && grant.run !== run) throw new FleetError('FC_ERR_FORBIDDEN', 'a run token may only upload its run\'s artifacts');
    return grant;
  }

  /** What the request's token allows: throws 401 without one (or with another scheme's credentials), 403 with one not accepted. */
  granted(request: FastifyRequest): Grant {
    if (bearerToken(request.headers.authorization) === undefined) throw missingToken();
    const grant = this.#check(request);
    if (grant === 'expired') throw new FleetError('FC_ERR_FORBIDDEN', 'the run token has expired (the runner makes a new one for each command it has a machine run)');
    if (!grant) throw new FleetError('FC_ERR_FORBIDDEN', 'the bearer token is not accepted');
    return grant;
  }
}

/** The 401 of a write (or a token-only read) that brings no token. */
export function missingToken(): FleetError {
  return new FleetError('FC_ERR_UNAUTHORIZED', 'this request needs "Authorization: Bearer <token>"');
}

/** The token of an `Authorization: Bearer <token>` field; undefined for none or another scheme. */
export function bearerToken(header: string | undefined): string | undefined {
  return header === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
}

/** A 401's challenge (RFC 9110 §11.6.1): the scheme the servers take (RFC 6750). */
export const BEARER_CHALLENGE = 'Bearer realm="fleetcache"';
