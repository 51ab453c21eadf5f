import { errors as joseErrors } from "jose";
import { DomainError, type ErrorCode } from "../core/errors.ts";

/**
 * A refusal by jose as the domain's `id_token_*` code (a DomainError passes through); anything
 * jose did not throw is `internal`.
 */
export function fromJose(e: unknown, provider: { name: string }): DomainError {
  if (e instanceof DomainError) return e;
  const reject = (code: ErrorCode, message: string) => new DomainError(code, message, { cause: e });
  if (e instanceof joseErrors.JWTExpired) {
    return e.claim === "iat"
      ? reject("id_token_too_old", "the ID token was issued too long ago; get a fresh one")
      : reject("id_token_expired", "the ID token has expired");
  }
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    switch (e.claim) {
      case "iss":
        return reject("id_token_issuer_mismatch", `the token was not issued by provider "${provider.name}"`);
      case "aud":
        return reject("id_token_audience_mismatch", "the token is not addressed to any of our client IDs");
      case "nbf":
        return reject("id_token_not_yet_valid", "the ID token is not valid yet; check clocks");
      case "iat":
        return e.reason === "check_failed"
          ? reject("id_token_not_yet_valid", "the ID token is issued in the future; check clocks")
          : reject("id_token_claim_invalid", "the token's iat claim is missing or invalid");
      default:
        return reject("id_token_claim_invalid", `the token's ${e.claim} claim is missing or invalid`);
    }
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
    return reject("id_token_signature_invalid", "the ID token's signature is invalid");
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) {
    return reject("id_token_algorithm_not_allowed", "the token's algorithm is not allowed");
  }
  if (e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return reject("id_token_key_not_found", "no signing key of the provider matches the token's kid");
  }
  if (e instanceof joseErrors.JWTInvalid || e instanceof joseErrors.JWSInvalid) {
    return reject("id_token_malformed", "the ID token is malformed");
  }
  if (e instanceof joseErrors.JOSEError) {
    return reject("id_token_invalid", "the ID token was rejected");
  }
  return new DomainError("internal", "ID token verification failed unexpectedly", { cause: e });
}
