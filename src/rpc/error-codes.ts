import { Code } from "@connectrpc/connect";
import type { ErrorCode } from "../core/errors.ts";

/**
 * The one table from domain error codes to Connect/gRPC codes. HTTP statuses follow from the
 * Connect code (the Connect protocol's mapping), for Connect and REST alike; `log` is the level a
 * rejection is logged at (client mistakes are not our errors).
 */
export const ERROR_TABLE: Record<ErrorCode, { code: Code; log: "debug" | "info" | "warn" | "error"; http?: number }> = {
  invalid_request: { code: Code.InvalidArgument, log: "info" },
  invalid_characters: { code: Code.InvalidArgument, log: "info" },
  // HTTP-layer refusals (REST only) keep their specific HTTP statuses.
  request_too_large: { code: Code.ResourceExhausted, log: "info", http: 413 },
  request_timeout: { code: Code.DeadlineExceeded, log: "info", http: 408 },
  unsupported_media_type: { code: Code.InvalidArgument, log: "info", http: 415 },
  id_token_required: { code: Code.InvalidArgument, log: "info" },
  id_token_malformed: { code: Code.InvalidArgument, log: "info" },
  id_token_too_large: { code: Code.InvalidArgument, log: "info" },
  nonce_required: { code: Code.InvalidArgument, log: "info" },
  id_token_invalid: { code: Code.Unauthenticated, log: "info" },
  id_token_signature_invalid: { code: Code.Unauthenticated, log: "warn" },
  id_token_algorithm_not_allowed: { code: Code.Unauthenticated, log: "warn" },
  id_token_type_not_allowed: { code: Code.Unauthenticated, log: "info" },
  id_token_key_not_found: { code: Code.Unauthenticated, log: "info" },
  id_token_expired: { code: Code.Unauthenticated, log: "info" },
  id_token_not_yet_valid: { code: Code.Unauthenticated, log: "info" },
  id_token_too_old: { code: Code.Unauthenticated, log: "info" },
  id_token_issuer_mismatch: { code: Code.Unauthenticated, log: "info" },
  id_token_audience_mismatch: { code: Code.Unauthenticated, log: "info" },
  id_token_claim_invalid: { code: Code.Unauthenticated, log: "info" },
  id_token_nonce_mismatch: { code: Code.Unauthenticated, log: "warn" },
  // The token was already used for a sign-in: a replay (or a client retrying with an old token).
  id_token_replayed: { code: Code.Unauthenticated, log: "warn" },
  // The nonce is not one we issued to this device, or it is spent or expired.
  nonce_invalid: { code: Code.Unauthenticated, log: "info" },
  issuer_untrusted: { code: Code.Unauthenticated, log: "info" },
  id_token_claim_not_allowed: { code: Code.PermissionDenied, log: "info" },
  signup_disabled: { code: Code.PermissionDenied, log: "info" },
  account_exists: { code: Code.AlreadyExists, log: "info" },
  user_disabled: { code: Code.PermissionDenied, log: "info" },
  user_locked: { code: Code.PermissionDenied, log: "info" },
  user_pending: { code: Code.PermissionDenied, log: "info" },
  access_token_required: { code: Code.Unauthenticated, log: "info" },
  access_token_invalid: { code: Code.Unauthenticated, log: "info" },
  access_token_expired: { code: Code.Unauthenticated, log: "info" },
  refresh_token_required: { code: Code.InvalidArgument, log: "info" },
  refresh_token_invalid: { code: Code.Unauthenticated, log: "info" },
  refresh_token_client_mismatch: { code: Code.Unauthenticated, log: "warn" },
  refresh_token_expired: { code: Code.Unauthenticated, log: "info" },
  refresh_token_reused: { code: Code.Unauthenticated, log: "warn" },
  session_revoked: { code: Code.Unauthenticated, log: "info" },
  session_expired: { code: Code.Unauthenticated, log: "info" },
  session_not_found: { code: Code.NotFound, log: "info" },
  current_password_required: { code: Code.InvalidArgument, log: "info" },
  // 403, not 401: the access token is fine; a client must not answer this by refreshing it.
  password_incorrect: { code: Code.PermissionDenied, log: "info" },
  password_too_weak: { code: Code.InvalidArgument, log: "info" },
  password_reused: { code: Code.InvalidArgument, log: "info" },
  // 403: refreshing keeps the old sign-in time; only a new sign-in helps.
  reauthentication_required: { code: Code.PermissionDenied, log: "info" },
  user_not_found: { code: Code.NotFound, log: "info" },
  user_ambiguous: { code: Code.InvalidArgument, log: "info" },
  identity_not_found: { code: Code.NotFound, log: "info" },
  last_identity: { code: Code.FailedPrecondition, log: "info" },
  user_status_conflict: { code: Code.FailedPrecondition, log: "info" },
  password_not_set: { code: Code.FailedPrecondition, log: "info" },
  // AdminService: 403 when no admin key is configured (no credential could help); 401 for a
  // missing or non-admin credential (an access token included); a wrong key is worth a warning.
  admin_disabled: { code: Code.PermissionDenied, log: "info" },
  admin_credential_required: { code: Code.Unauthenticated, log: "info" },
  admin_credential_invalid: { code: Code.Unauthenticated, log: "warn" },
  // MFA: a required second factor the user has not enrolled (policy `deny`).
  mfa_enrollment_required: { code: Code.PermissionDenied, log: "info" },
  challenge_token_required: { code: Code.InvalidArgument, log: "info" },
  // The challenge token is the credential of VerifyMfa: unknown, used, expired or dead is 401.
  challenge_invalid: { code: Code.Unauthenticated, log: "info" },
  challenge_expired: { code: Code.Unauthenticated, log: "info" },
  challenge_exhausted: { code: Code.Unauthenticated, log: "warn" },
  mfa_method_not_available: { code: Code.InvalidArgument, log: "info" },
  mfa_code_required: { code: Code.InvalidArgument, log: "info" },
  // 403, not 401: on MfaService the access token is fine; clients must not answer by refreshing.
  mfa_code_invalid: { code: Code.PermissionDenied, log: "info" },
  totp_already_enrolled: { code: Code.AlreadyExists, log: "info" },
  totp_not_enrolled: { code: Code.FailedPrecondition, log: "info" },
  webauthn_response_malformed: { code: Code.InvalidArgument, log: "info" },
  webauthn_challenge_invalid: { code: Code.FailedPrecondition, log: "info" },
  webauthn_origin_mismatch: { code: Code.PermissionDenied, log: "info" },
  webauthn_rp_id_mismatch: { code: Code.PermissionDenied, log: "info" },
  webauthn_verification_failed: { code: Code.PermissionDenied, log: "info" },
  webauthn_credential_unknown: { code: Code.PermissionDenied, log: "info" },
  webauthn_credential_exists: { code: Code.AlreadyExists, log: "info" },
  webauthn_credential_not_found: { code: Code.NotFound, log: "info" },
  webauthn_counter_regressed: { code: Code.PermissionDenied, log: "warn" },
  provider_unknown: { code: Code.NotFound, log: "info" },
  provider_ambiguous: { code: Code.InvalidArgument, log: "info" },
  provider_unavailable: { code: Code.Unavailable, log: "warn" },
  rate_limited: { code: Code.ResourceExhausted, log: "info" },
  unavailable: { code: Code.Unavailable, log: "error" },
  not_found: { code: Code.NotFound, log: "debug" },
  method_not_allowed: { code: Code.Unimplemented, log: "debug", http: 405 },
  internal: { code: Code.Internal, log: "error" },
};

/**
 * HTTP status implied by a Connect code (connectrpc.com/docs/protocol#error-codes), and the
 * snake_case name of a code (the `status` of a REST error body, the outcome label of an RPC
 * without a domain code): connect-es's own tables, so there is one of each.
 */
export { codeToHttpStatus as httpStatusOf, codeToString as statusName } from "@connectrpc/connect/protocol-connect";
