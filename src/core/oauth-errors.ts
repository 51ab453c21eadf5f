import { type ErrorCode, isDomainError } from "./errors.ts";

/** How a refusal of the OAuth door reads: RFC 6749 §5.2 errors, and the domain's codes mapped onto them. */

/** RFC 6749 §5.2 error codes, RFC 8693 `invalid_target`, and `mfa_required` (the Auth0/Okta shape). */
export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unauthorized_client"
  | "unsupported_grant_type"
  | "invalid_scope"
  | "invalid_target"
  | "unsupported_token_type"
  | "mfa_required"
  | "rate_limited"
  | "temporarily_unavailable"
  | "server_error";

/** A refusal in the RFC's shape: `error`, `error_description`, the HTTP status, and any extra members. */
export class OAuthError extends Error {
  override readonly name = "OAuthError";
  readonly error: OAuthErrorCode;
  readonly description: string;
  readonly status: number;
  readonly extra: Readonly<Record<string, unknown>>;
  constructor(
    error: OAuthErrorCode,
    description: string,
    status = 400,
    extra: Readonly<Record<string, unknown>> = {},
    options?: { cause?: unknown },
  ) {
    super(description, options);
    this.error = error;
    this.description = description;
    this.status = status;
    this.extra = extra;
  }
}

/** Domain codes a client sends as a request problem rather than a bad grant. */
const REQUEST_PROBLEMS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "invalid_request",
  "invalid_characters",
  "request_too_large",
  "id_token_required",
  "refresh_token_required",
  "challenge_token_required",
  "mfa_code_required",
  "nonce_required",
]);

/**
 * A domain error as the RFC error the token endpoint answers. Everything wrong with the grant
 * itself (the token, the account, the session, a replayed subject token) is `invalid_grant`; the
 * domain code stays in the description's reach for logs, not in `error`.
 */
export function oauthErrorOf(e: unknown): OAuthError {
  if (e instanceof OAuthError) return e;
  if (!isDomainError(e)) return new OAuthError("server_error", "internal error", 500, {}, { cause: e });
  if (e.code === "rate_limited") {
    const retry = e.detail?.["retry_after_seconds"];
    return new OAuthError(
      "rate_limited",
      e.message,
      429,
      retry === undefined ? {} : { retry_after_seconds: Number(retry) },
      { cause: e },
    );
  }
  if (e.code === "provider_unavailable" || e.code === "unavailable")
    return new OAuthError("temporarily_unavailable", e.message, 503, {}, { cause: e });
  if (e.code === "internal") return new OAuthError("server_error", "internal error", 500, {}, { cause: e });
  if (REQUEST_PROBLEMS.has(e.code)) return new OAuthError("invalid_request", e.message, 400, {}, { cause: e });
  return new OAuthError("invalid_grant", e.message, 400, { error_code: e.code }, { cause: e });
}

/** RFC 7009 §2.1: the token presented for revocation was not issued to the client asking. */
export function notThisClients(): OAuthError {
  return new OAuthError("unauthorized_client", "this token was not issued to this client; it was not revoked");
}

export function invalidClient(description: string): OAuthError {
  return new OAuthError("invalid_client", description, 401);
}
