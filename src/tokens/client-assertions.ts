import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { DomainError } from "../core/errors.ts";
import { CLIENT_ASSERTION_ALGORITHMS, type ClientAssertionCheck } from "../core/oauth.ts";

/** Where a `private_key_jwt` client's public keys are: inline, or at a URL (fetched, cached by jose). */
export type ClientKeys = { jwks: { keys: Record<string, unknown>[] } } | { jwksUri: string };

/** An assertion living longer than this is refused: its `jti` marker must not be kept for long. */
const MAX_LIFETIME_SECONDS = 600;
const CLOCK_TOLERANCE_SECONDS = 30;

/**
 * RFC 7523 §3 client assertions (`private_key_jwt`): signed by a key of the client's JWKS,
 * `iss` = `sub` = client_id, `aud` the token endpoint URL or our issuer, `exp` within ten
 * minutes, and a `jti` the core then marks as used.
 */
export function createClientAssertionCheck(options: {
  keys: ReadonlyMap<string, ClientKeys>;
  /** Accepted `aud` values: the token endpoint URL and the issuer (known once the server listens). */
  audiences: () => string[];
}): ClientAssertionCheck {
  const resolvers = new Map<string, JWTVerifyGetKey>();
  for (const [id, keys] of options.keys) {
    resolvers.set(
      id,
      "jwks" in keys
        ? createLocalJWKSet(keys.jwks as unknown as JSONWebKeySet)
        : createRemoteJWKSet(new URL(keys.jwksUri)),
    );
  }
  return {
    async verify(clientId, assertion, now) {
      const keys = resolvers.get(clientId);
      if (keys === undefined) throw new DomainError("invalid_request", "this client has no keys for private_key_jwt");
      try {
        const { payload } = await jwtVerify(assertion, keys, {
          issuer: clientId,
          subject: clientId,
          audience: options.audiences(),
          algorithms: [...CLIENT_ASSERTION_ALGORITHMS],
          requiredClaims: ["exp", "jti"],
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate: now,
        });
        if (typeof payload.jti !== "string" || payload.jti === "")
          throw new DomainError("invalid_request", "the client assertion has no jti");
        if (payload.exp! - now.getTime() / 1000 > MAX_LIFETIME_SECONDS) {
          throw new DomainError("invalid_request", `the client assertion must expire within ${MAX_LIFETIME_SECONDS} s`);
        }
        return { jti: payload.jti, expiresAt: new Date(payload.exp! * 1000) };
      } catch (e) {
        if (e instanceof DomainError) throw e;
        // A remote JWKS we cannot reach is our outage, not the client's fault.
        if (e instanceof errors.JWKSTimeout)
          throw new DomainError("provider_unavailable", "the client's keys could not be fetched", { cause: e });
        throw new DomainError("invalid_request", "the client assertion is not valid", { cause: e });
      }
    },
  };
}
