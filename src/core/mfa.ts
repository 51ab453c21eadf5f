import type { AddressLimit } from "./address-limit.ts";
import type { Clock } from "./clock.ts";
import { isDomainError } from "./errors.ts";
import type { ClientInfo, LoginResult, Principal } from "./model.ts";
import { createMfaChecks, METHODS } from "./mfa-checks.ts";
import { createSessionStepUp } from "./mfa-step-up.ts";
import { createTotpFactors } from "./mfa-totp.ts";
import { createChallengeCompletion } from "./mfa-verify.ts";
import type { MfaStore, RecoveryCodes, SecretBox, TotpEngine } from "./ports/mfa.ts";
import type { AttemptBudgetStore } from "./ports/attempt-budget.ts";
import type { AuditLog } from "./ports/audit.ts";
import type { OpaqueTokens } from "./ports/sessions.ts";
import type { AccessTokenIssuer } from "./ports/signing-keys.ts";
import type { PasswordExpiryPolicy } from "./password-policy.ts";
import type { AuthEvents } from "./auth-events.ts";
import type { JsonObject, PasskeyStore, RelyingParty, WebauthnCeremonies } from "./ports/webauthn.ts";

export { MAX_STEP_UPS_PER_SESSION } from "./mfa-step-up.ts";
export { MAX_CEREMONIES_PER_CHALLENGE } from "./mfa-verify.ts";

/** What VerifyMfa needs to take passkeys (method `webauthn`). */
export interface MfaPasskeyDeps {
  store: PasskeyStore;
  ceremonies: WebauthnCeremonies;
  rp: () => RelyingParty;
  /** Life of a ceremony challenge, in seconds (never beyond the MFA challenge's own). */
  ceremonyTtlSeconds: number;
}

export interface MfaServiceDeps {
  /** The per-address limit of VerifyMfa (address-limit.ts). */
  addressLimit?: AddressLimit | undefined;
  clock: Clock;
  store: MfaStore;
  audit: AuditLog;
  totp: TotpEngine;
  secrets: SecretBox;
  recoveryCodes: RecoveryCodes;
  opaqueTokens: OpaqueTokens;
  accessTokens: AccessTokenIssuer;
  /** Absolute lifetime of the session a completed challenge opens, in seconds. */
  sessionTtlSeconds: number;
  /** Verification calls a challenge allows; the one that reaches it without success kills it. */
  maxAttempts: number;
  /** How long the device credential `trust_device` issues is valid, in days (0: never issued). */
  trustedDeviceDays: number;
  /** Recovery codes per set. */
  recoveryCodeCount: number;
  /**
   * Wrong second-factor codes allowed per user in `codeFailureWindowSeconds`, challenges and
   * MfaService calls together. Without a per-user budget, fresh challenges (each with its own
   * attempts) would allow unlimited online guessing of TOTP codes.
   */
  maxCodeFailures: number;
  codeFailureWindowSeconds: number;
  /** Where a guess at a code is reserved before it is checked (the budget above, atomically). */
  budget: AttemptBudgetStore;
  /**
   * Changing factors (enroll, confirm, disable, new recovery codes; passkeys.ts too) needs a
   * second factor completed on this session at most this long ago, in seconds; for an account
   * without a factor yet, a sign-in that recent (`mfa.step_up_max_age_seconds`; step-up.ts).
   */
  stepUpMaxAgeSeconds: number;
  passwordExpiry?: PasswordExpiryPolicy | undefined;
  onAuditFailure?: (error: unknown) => void;
  /** Told how every challenge answer ended (metrics). */
  events?: AuthEvents | undefined;
  /** Passkeys; without them method `webauthn` is not available. */
  passkeys?: MfaPasskeyDeps | undefined;
}

export interface VerifyMfaInput {
  challengeToken: string;
  method: string;
  code: string;
  /** For method `webauthn`: the AuthenticationResponseJSON. */
  assertion?: unknown;
  trustDevice: boolean;
  client: ClientInfo;
}

export interface MfaStatus {
  totpEnabled: boolean;
  totpPending: boolean;
  recoveryCodesLeft: number;
  passkeys: number;
}

export interface TotpEnrollment {
  secret: string;
  uri: string;
  digits: number;
  period: number;
  algorithm: string;
}

export interface StepUpResult {
  /** A new access token of the session, its `amr` with the factor's methods. */
  accessToken: string;
  expiresIn: number;
  /** Factor changes are allowed for this many seconds from now. */
  maxAgeSeconds: number;
}

export interface MfaService {
  /** Completes a sign-in that required MFA; see AuthService.VerifyMfa for the contract. */
  verify(input: VerifyMfaInput): Promise<LoginResult>;
  /**
   * Opens a passkey ceremony for an MFA challenge: the request options for
   * `navigator.credentials.get()`; see AuthService.BeginWebauthnMfa for the contract.
   */
  beginWebauthn(challengeToken: string, client: ClientInfo): Promise<JsonObject>;
  status(principal: Principal): Promise<MfaStatus>;
  enrollTotp(principal: Principal, client: ClientInfo): Promise<TotpEnrollment>;
  /** Activates the pending authenticator; resolves with the recovery codes (shown once). */
  confirmTotp(principal: Principal, code: string, client: ClientInfo): Promise<string[]>;
  disableTotp(principal: Principal, code: string, client: ClientInfo): Promise<void>;
  regenerateRecoveryCodes(principal: Principal, code: string, client: ClientInfo): Promise<string[]>;
  /**
   * Completes a second factor on the signed-in session (a TOTP or recovery code, or a passkey
   * answering beginStepUp): the session's
   * `mfa_at` becomes now, so factor changes are allowed for `stepUpMaxAgeSeconds`.
   */
  stepUp(
    principal: Principal,
    method: string,
    code: string,
    client: ClientInfo,
    assertion?: unknown,
  ): Promise<StepUpResult>;
  /**
   * Opens a passkey ceremony for a step-up of this session: the request options for
   * `navigator.credentials.get()`, answered with stepUp method `webauthn`.
   */
  beginStepUp(principal: Principal): Promise<JsonObject>;
}

/**
 * Second factors: completing challenged sign-ins, and the user's TOTP authenticator and recovery
 * codes. Every verification, right or wrong, is audited; a challenge's attempts are counted in
 * the database, so retries on other replicas count too. The flows live beside this file:
 * `mfa-verify.ts` (VerifyMfa and its passkey ceremonies), `mfa-totp.ts` (the authenticator and
 * recovery codes), `mfa-step-up.ts` (StepUp), over the checks they share (`mfa-checks.ts`).
 */
export function createMfaService(deps: MfaServiceDeps): MfaService {
  const checks = createMfaChecks(deps);
  const service: MfaService = {
    ...createChallengeCompletion(deps, checks),
    ...createTotpFactors(deps, checks),
    ...createSessionStepUp(deps, checks),
  };
  const events = deps.events;
  if (events === undefined) return service;
  return {
    ...service,
    async verify(input) {
      const method = (METHODS as readonly string[]).includes(input.method) ? input.method : "unknown";
      try {
        const result = await service.verify(input);
        events.mfaVerification(method, "success");
        return result;
      } catch (e) {
        events.mfaVerification(method, isDomainError(e) ? e.code : "internal");
        throw e;
      }
    },
  };
}
