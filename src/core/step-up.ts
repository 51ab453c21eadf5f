import { DomainError } from "./errors.ts";
import type { Principal } from "./model.ts";

/**
 * The user's second factors as far as the step-up rule needs them: a confirmed TOTP
 * authenticator, and passkeys that are not flagged (a flagged one answers nothing).
 */
export interface UserFactors {
  totp: boolean;
  passkeys: number;
}

/** Reads the user's factors; called only when the session's second factor is not recent. */
export type FactorReader = () => Promise<UserFactors>;

/**
 * Issue 18 item 3 / issue 21: every change of the user's factors (enrolling, confirming or
 * disabling TOTP, new recovery codes, registering or removing a passkey) needs a second factor
 * completed on this session within `maxAgeSeconds` (`mfa_at`), or, for an account without a
 * factor yet, a sign-in that recent (`auth_time`): a stolen access token alone cannot plant a
 * lasting factor, take the recovery codes, or strip the account of its factors. The refusal,
 * `reauthentication_required`, names the way to step up that this user actually has.
 */
export async function requireStepUp(
  principal: Principal,
  readFactors: FactorReader,
  maxAgeSeconds: number,
  now: Date,
): Promise<void> {
  const maxAgeMs = maxAgeSeconds * 1000;
  const recent = (at: Date | null | undefined) => at != null && now.getTime() - at.getTime() <= maxAgeMs;
  const s = principal.session;
  // A recent second factor allows any change: the factors are read only when it is not.
  if (recent(s?.mfaAt)) return;
  const factors = await readFactors();
  const hasFactor = factors.totp || factors.passkeys > 0;
  if (!hasFactor && recent(s?.authTime)) return;
  const maxAge = String(maxAgeSeconds);
  if (hasFactor) {
    const ways = [
      ...(factors.totp ? ["a current code (method totp or recovery_code)"] : []),
      ...(factors.passkeys > 0
        ? ["a passkey (MfaService.BeginStepUp, POST /auth/mfa/step-up/webauthn/begin, then method webauthn)"]
        : []),
    ];
    const methods = [...(factors.totp ? ["totp", "recovery_code"] : []), ...(factors.passkeys > 0 ? ["webauthn"] : [])];
    throw new DomainError(
      "reauthentication_required",
      `confirm your second factor first: MfaService.StepUp (POST /auth/mfa/step-up) with ${ways.join(" or ")}; it allows factor changes for ${maxAge} s`,
      {
        detail: {
          step_up: "MfaService.StepUp",
          step_up_route: "POST /auth/mfa/step-up",
          step_up_methods: methods.join(","),
          ...(factors.passkeys > 0
            ? { step_up_begin: "MfaService.BeginStepUp", step_up_begin_route: "POST /auth/mfa/step-up/webauthn/begin" }
            : {}),
          max_age_seconds: maxAge,
        },
      },
    );
  }
  throw new DomainError(
    "reauthentication_required",
    `sign in again, then add your second factor within ${maxAge} s of signing in`,
    {
      detail: {
        step_up: "AuthService.SigninWithIdToken",
        step_up_route: "POST /auth/id-token/signin",
        max_age_seconds: maxAge,
      },
    },
  );
}
