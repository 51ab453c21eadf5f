/**
 * The one domain error type. `code` is stable and machine-readable: clients switch on it, so a
 * code is never renamed or reused. `message` is public text for the caller; `cause` is private
 * detail for logs only (it may hold upstream errors, never tokens or secrets).
 */
export type ErrorCode =
  // The request itself is wrong.
  | "invalid_request"
  | "invalid_characters"
  | "request_too_large"
  | "request_timeout"
  | "unsupported_media_type"
  | "id_token_required"
  | "id_token_malformed"
  | "id_token_too_large"
  | "nonce_required"
  // The ID token was read but not accepted.
  | "id_token_invalid"
  | "id_token_signature_invalid"
  | "id_token_algorithm_not_allowed"
  | "id_token_type_not_allowed"
  | "id_token_key_not_found"
  | "id_token_expired"
  | "id_token_not_yet_valid"
  | "id_token_too_old"
  | "id_token_issuer_mismatch"
  | "id_token_audience_mismatch"
  | "id_token_claim_invalid"
  | "id_token_nonce_mismatch"
  | "id_token_replayed"
  | "nonce_invalid"
  | "issuer_untrusted"
  // The token is genuine but policy refuses it.
  | "id_token_claim_not_allowed"
  | "signup_disabled"
  | "account_exists"
  | "user_disabled"
  | "user_locked"
  | "user_pending"
  // Local tokens and sessions.
  | "access_token_required"
  | "access_token_invalid"
  | "access_token_expired"
  | "refresh_token_required"
  | "refresh_token_invalid"
  /** The refresh token is bound to another door or OAuth client (sessions.client_id). */
  | "refresh_token_client_mismatch"
  | "refresh_token_expired"
  | "refresh_token_reused"
  | "session_revoked"
  | "session_expired"
  | "session_not_found"
  // Local passwords.
  | "current_password_required"
  | "password_incorrect"
  | "password_too_weak"
  | "password_reused"
  | "reauthentication_required"
  // Operator actions (admin tool).
  | "user_not_found"
  | "user_ambiguous"
  | "identity_not_found"
  | "last_identity"
  | "user_status_conflict"
  | "password_not_set"
  // Admin API credential (AdminService).
  | "admin_disabled"
  | "admin_credential_required"
  | "admin_credential_invalid"
  // Multi-factor authentication.
  | "mfa_enrollment_required"
  | "challenge_token_required"
  | "challenge_invalid"
  | "challenge_expired"
  | "challenge_exhausted"
  | "mfa_method_not_available"
  | "mfa_code_required"
  | "mfa_code_invalid"
  | "totp_already_enrolled"
  | "totp_not_enrolled"
  // Passkeys (WebAuthn).
  | "webauthn_response_malformed"
  | "webauthn_challenge_invalid"
  | "webauthn_origin_mismatch"
  | "webauthn_rp_id_mismatch"
  | "webauthn_verification_failed"
  | "webauthn_credential_unknown"
  | "webauthn_credential_exists"
  | "webauthn_credential_not_found"
  | "webauthn_counter_regressed"
  // Which provider?
  | "provider_unknown"
  | "provider_ambiguous"
  // Something we depend on is down or busy.
  | "provider_unavailable"
  | "rate_limited"
  | "unavailable"
  // Routing.
  | "not_found"
  | "method_not_allowed"
  // Everything else.
  | "internal";

export class DomainError extends Error {
  override readonly name = "DomainError";
  readonly code: ErrorCode;
  /** Public, non-secret detail the caller may use (e.g. `{ provider: "google" }`). */
  readonly detail: Readonly<Record<string, string>> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; detail?: Record<string, string> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.detail = options?.detail;
  }
}

export function isDomainError(e: unknown, code?: ErrorCode): e is DomainError {
  return e instanceof DomainError && (code === undefined || e.code === code);
}

/**
 * Failures that are not the caller's doing (an upstream or our own outage, and refusals by the
 * limit itself): they never count against an address or a user.
 */
export const NOT_CALLER_FAULTS: readonly ErrorCode[] = [
  "provider_unavailable",
  "unavailable",
  "internal",
  "rate_limited",
];

/** Whether a refusal with `code` counts as the caller's failure (for the per-address limit). */
export function isCallerFault(code: string): boolean {
  return !(NOT_CALLER_FAULTS as readonly string[]).includes(code);
}
